"""Sample-set throughput of the default model: images per second, float vs a quantized recipe, 1 vs 2 processes.

    python benchmarks/bench_eval_throughput.py [--images 40] [--batch 10] [--recipe fpqvar-w4a4]
        [--backend reference] [--random]

Every configuration runs the real sharded path (fpqvar.eval.sample_set.generate_units on a gloo process group,
torch.multiprocessing spawn) into a fresh folder. One process uses all cores' threads (torch default); two
processes use cores // 2 threads each. The timed span is sampling + decoding + unit writes between two barriers
(model loading, quantization and process start excluded; reported separately as wall). ``--configs`` lists
processes x threads per process (default 1x1, 1x<cores>, 2x<cores/2>): one process with one thread separates the
effect of threads from that of processes. ``--random``: a random model of the default config (before the shipped
weights exist; same cost per image).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _float_model(random_dir: str | None):
    if random_dir is None:
        from fpqvar.model import load_model

        return load_model("default")
    from fpqvar.model import build_var, build_vqvae
    from fpqvar.model.zoo import DEFAULT_VAE, DEFAULT_VAR

    vae = build_vqvae(DEFAULT_VAE)
    vae.load_state_dict(torch.load(Path(random_dir) / "vae.pt", weights_only=True))
    var = build_var(vae, DEFAULT_VAR)
    var.load_state_dict(torch.load(Path(random_dir) / "var.pt", weights_only=True))
    vae.eval().requires_grad_(False)
    return var.eval().requires_grad_(False)


def _model(random_dir: str | None, qpath: str | None, backend: str):
    var = _float_model(random_dir)
    if qpath is None:
        return var
    from fpqvar.quant.load import load_quantized
    from fpqvar.quant.quantize import set_backend

    var = load_quantized(qpath, model=var)
    if backend != "reference":
        set_backend(var, backend)
    return var


def _worker(rank, world, threads, init_file, out_dir, config_dict, random_dir, qpath, backend, result_file):
    from fpqvar.eval import sample_set as ss

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        config = ss.SampleSetConfig.from_dict(config_dict)
        if rank == 0:
            ss.prepare_dir(out_dir, config)
        var = _model(random_dir, qpath, backend)
        dist.barrier()
        if rank != 0:
            ss.prepare_dir(out_dir, config, write=False)
        t0 = time.perf_counter()
        ss.generate_units(var, config, out_dir, rank=rank, world=world, progress=False)
        dist.barrier()
        if rank == 0:
            Path(result_file).write_text(json.dumps({"sample_s": time.perf_counter() - t0}))
    finally:
        dist.destroy_process_group()


def run(config, world: int, threads: int, random_dir, qpath, backend, tmp: Path, tag: str) -> dict:
    key = f"{tag}_{world}x{threads}"
    out, res = tmp / f"out_{key}", tmp / f"res_{key}.json"
    t = time.perf_counter()
    mp.spawn(_worker, args=(world, threads, str(tmp / f"pg_{key}"), str(out), config.to_dict(), random_dir,
                            qpath, backend, str(res)), nprocs=world, join=True)
    wall = time.perf_counter() - t
    sample_s = json.loads(res.read_text())["sample_s"]
    return {"variant": tag, "procs": world, "threads_per_proc": threads, "images": config.num_images,
            "sample_s": sample_s, "images_per_s": config.num_images / sample_s, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40, help="total images (spread over the 10 classes)")
    ap.add_argument("--batch", type=int, default=10, help="images per work unit")
    ap.add_argument("--recipe", default="fpqvar-w4a4")
    ap.add_argument("--backend", default="reference", help="QuantLinear forward: reference or exact")
    ap.add_argument("--calib-samples", type=int, default=20)
    ap.add_argument("--random", action="store_true", help="random weights of the default config")
    cores = os.cpu_count() or 2
    ap.add_argument("--configs", default=f"1x1,1x{cores},2x{max(1, cores // 2)}", help="procs x threads, ...")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from fpqvar.eval.sample_set import SampleSetConfig
    from fpqvar.quant.calibrate import CalibConfig
    from fpqvar.quant.export import save_quantized
    from fpqvar.quant.quantize import quantize_
    from fpqvar.quant.recipes import get_recipe

    with tempfile.TemporaryDirectory(prefix="bench_eval_") as d:
        tmp = Path(d)
        random_dir = None
        if args.random:
            from fpqvar.model import build_var, build_vqvae
            from fpqvar.model.zoo import DEFAULT_VAE, DEFAULT_VAR

            torch.manual_seed(0)  # benchmark-local: random weights of the default config
            vae = build_vqvae(DEFAULT_VAE)
            var = build_var(vae, DEFAULT_VAR)
            var.init_weights(generator=torch.Generator().manual_seed(0), init_adaln_gamma=0.3)
            torch.save(vae.state_dict(), tmp / "vae.pt")
            torch.save(var.state_dict(), tmp / "var.pt")
            random_dir = str(tmp)
        recipe = get_recipe(args.recipe)
        var = _float_model(random_dir)
        t = time.perf_counter()
        calib = CalibConfig(num_samples=args.calib_samples, batch_size=10) if recipe.needs_calibration else None
        quantize_(var, recipe, calib, progress=False, report=False)
        ptq_s = time.perf_counter() - t
        qpath = str(save_quantized(var, recipe, tmp / "q.safetensors", model_name="default"))
        per_class = max(1, args.images // 10)
        config = SampleSetConfig(classes=tuple(range(10)), per_class=per_class, chunk_size=min(args.batch, per_class))
        configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
        rows = []
        for tag, q in (("float", None), (args.recipe, qpath)):
            for world, threads in configs:
                rows.append(run(config, world, threads, random_dir, q, args.backend, tmp, tag))
    base = rows[0]["images_per_s"]
    for r in rows:
        r["vs_first"] = r["images_per_s"] / base
    if args.json:
        print(json.dumps({"rows": rows, "ptq_s": ptq_s, "backend": args.backend, "random": args.random}, indent=2))
        return
    print(f"default model{' (random weights)' if args.random else ''}; {config.num_images} images, units of "
          f"{config.chunk_size}; {args.recipe} backend={args.backend}; PTQ {ptq_s:.1f} s (excluded)")
    print(f"{'variant':<16}{'procs':>6}{'threads':>8}{'img/s':>9}{'x first':>9}{'sample s':>10}{'wall s':>9}")
    for r in rows:
        print(f"{r['variant']:<16}{r['procs']:>6}{r['threads_per_proc']:>8}{r['images_per_s']:>9.2f}"
              f"{r['vs_first']:>9.2f}{r['sample_s']:>10.1f}{r['wall_s']:>9.1f}")
    n = len(rows) // 2
    for i in range(n):
        f, q = rows[i], rows[n + i]
        ratio = q["images_per_s"] / f["images_per_s"]
        print(f"{f['procs']}x{f['threads_per_proc']}: {args.recipe} / float = {ratio:.2f}x")


if __name__ == "__main__":
    main()
