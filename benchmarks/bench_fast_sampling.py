"""End-to-end sampling time: float model vs fpqvar-w4a4 on the fast path, same dtype, side by side
(what ``fpqvar sample --quantized q.safetensors --backend exact`` vs ``fpqvar sample`` spends in sampling).

Models: ``default`` (the shipped weights if present in fpqvar/assets/default, else a random model of the default
config, said in the output) and a random ``var-d16`` (256 px; ``--d16-scales`` keeps only the first scales to cut
the time, said in the output). The W4A4 model is fpqvar-w4a4's run-time layer set: GHT (online 128 x 128 rotation)
at qkv / fc1, DFQ at the fc2 input, E2M1 per group of 128 everywhere. GALT is left out because its lambda is fused
into AdaLN offline (zero run-time cost) and needs calibration data; so is the KV cache (not in fpqvar-w4a4).
Each configuration samples ``--rounds`` times in turn; best time kept (process CPU time by default: the machine
is shared; ``--clock wall`` for wall-clock). Also printed: the W4A4 model with each integer GEMM forced, with the
few-row path (``fpqvar.quant.fast_lean``) off (``-general``), with the PyTorch ops instead of the C kernels
(``-torchops``: selector operations ``lean`` and ``int_sums``), the
reference backend (fake quantization + float GEMM), how many sampled tokens the fast and reference backends
share, and the kernels the selector chose. ``--isa-caps both`` (default) repeats everything in a child process
with oneDNN / MKL / ATen capped at AVX2 (benchmarks/_isa.py).

    python benchmarks/bench_fast_sampling.py [--batch 1] [--rounds 2] [--models default,var-d16] [--isa-caps both]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time

import torch

from fpqvar import kernels
from fpqvar.model import build_var, build_vqvae, get_model_spec
from fpqvar.model.sampling import sample_tokens
from fpqvar.model.zoo import VARConfig, VQVAEConfig
from fpqvar.quant import (
    Recipe,
    get_recipe,
    kernels_gemm,  # noqa: F401  (registers the int_gemm operations with the selector)
    quantize_,
    set_backend,
)
from fpqvar.quant import fast_lean as FL

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _isa import header, main_in_modes  # noqa: E402


def _w4a4_runtime_recipe() -> Recipe:
    import dataclasses

    r = get_recipe("fpqvar-w4a4")
    return dataclasses.replace(r, name="fpqvar-w4a4-runtime", description="fpqvar-w4a4's run-time layers (no GALT)",
                               transforms=tuple(t for t in r.transforms if t.KIND != "galt"))


def _default_model():
    try:
        from fpqvar.model import load_model

        return load_model("default"), "shipped weights"
    except (FileNotFoundError, OSError, ValueError) as e:
        spec = get_model_spec("default")
        var = _random(spec.var, spec.vae)
        return var, f"random weights (shipped ones unavailable: {type(e).__name__})"


def _random(var_cfg: VARConfig, vae_cfg: VQVAEConfig):
    torch.manual_seed(0)  # benchmark-local: module construction draws from the global generator
    vae = build_vqvae(vae_cfg).eval()
    var = build_var(vae, var_cfg).eval()
    var.init_weights(generator=torch.Generator().manual_seed(0))
    return var


CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}


def _time(var, batch: int, dtype, clock=time.process_time) -> tuple[float, list[torch.Tensor]]:
    t0 = clock()
    labels = [i % var.num_classes for i in range(batch)]  # batches larger than the class count cycle
    res = sample_tokens(var, batch, labels, seed=0, cfg=1.5, top_k=900, top_p=0.96, dtype=dtype)
    return clock() - t0, res.idx_list


def _bench(name: str, var, batch: int, rounds: int, backend: str, dtype, clock) -> None:
    q = copy.deepcopy(var)
    quantize_(q, _w4a4_runtime_recipe(), progress=False, report=False)
    keys = ("float", f"w4a4-{backend}", f"w4a4-{backend}-int8", f"w4a4-{backend}-float32", f"w4a4-{backend}-general",
            f"w4a4-{backend}-torchops", "w4a4-reference")
    best = dict.fromkeys(keys, float("inf"))
    toks = {}
    set_backend(q, backend)
    _time(q, batch, dtype)  # warm-up: the kernel selection, the weight caches (and compiling, for "compile")
    for _ in range(rounds):
        for key in keys:
            if key == "float":
                t, toks[key] = _time(var, batch, dtype, clock)
                best[key] = min(best[key], t)
                continue
            parts = key.split("-")
            set_backend(q, parts[1])
            general = parts[-1] == "general"  # the few-row path off: what it saves
            torchops = parts[-1] == "torchops"  # the PyTorch ops instead of the C kernels: what those save
            gemm = parts[2] if parts[2:] and not (general or torchops) else "auto"
            ops = {"lean": "torch", "int_sums": "torch"} if torchops else {}
            with kernels.override(int_gemm=gemm, **ops), (FL.disabled() if general else contextlib.nullcontext()):
                t, toks[key] = _time(q, batch, dtype, clock)
            best[key] = min(best[key], t)
    fast, ref = toks["w4a4-" + backend], toks["w4a4-reference"]
    same = sum(int((a == b).sum()) for a, b in zip(fast, ref))
    total = sum(a.numel() for a in fast)
    f = best["float"]
    print(f"{name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()))
    print(f"  ratio w4a4-{backend} (selected GEMM) / float = {best['w4a4-' + backend] / f:.2f}x (target <= 1.2x); "
          + ", ".join(f"{k} / float = {best[k] / f:.2f}x" for k in keys[2:])
          + f"; tokens equal fast vs reference: {same}/{total}", flush=True)


def measure(args) -> None:
    kernels.apply_default_threads(args.threads)
    dtype = kernels.resolve_dtype("autocast", args.dtype)
    print(header())
    print(f"batch {args.batch} (x2 CFG), dtype {args.dtype} -> {dtype}, best of {args.rounds}, clock {args.clock}")
    clock = CLOCK[args.clock]
    models = args.models.split(",")
    if "default" in models:
        var, how = _default_model()
        _bench(f"default ({how})", var, args.batch, args.rounds, args.backend, dtype, clock)
    if "var-d16" in models:
        spec = get_model_spec("var-d16")
        pn = spec.vae.patch_nums[: args.d16_scales]
        vae_cfg = VQVAEConfig.from_dict({**spec.vae.to_dict(), "patch_nums": list(pn)})
        var_cfg = VARConfig.from_dict({**spec.var.to_dict(), "patch_nums": list(pn)})
        var = _random(var_cfg, vae_cfg)
        _bench(f"var-d16 random, scales {tuple(pn)}", var, args.batch, args.rounds, args.backend, dtype, clock)
    print(f"kernels: {kernels.summary_line()}")
    print(header())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backend", default="exact")
    ap.add_argument("--d16-scales", type=int, default=10, help="keep the first N of var-d16's 10 scales")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: the measured default)")
    ap.add_argument("--models", default="default,var-d16")
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                    help="cpu: process CPU time (robust on a shared machine), wall: perf_counter")
    main_in_modes(ap, measure)


if __name__ == "__main__":
    main()
