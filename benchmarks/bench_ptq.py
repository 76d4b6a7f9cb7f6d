"""How long does ``fpqvar quantize`` take on the default model, fpqvar-w4a4 (calibration + GALT + GHT + DFQ) vs
fp4-rtn, and how much memory / CPU?

Each configuration is the real command line, ``python -m fpqvar quantize --model default --recipe R --out ...
--json --threads N``, in its own process (its wall time, process CPU time and peak RSS come from ``os.wait4``),
side by side in one invocation: ``fp4-rtn`` (no calibration), ``fpqvar-w6a6`` (GHT + DFQ, no calibration),
``fpqvar-w4a4`` (calibration: 100 samples, 10 per class, cfg 1.5, top-k 900, top-p 0.96; GALT: 50 epochs, AdamW
lr 1e-2, backward dtype ``grad_dtype="auto"``; GHT + DFQ). The phases come from the command's ``--json``
(``timings_s``), the kernels it used from its ``kernels`` field. ``--isa-caps both`` (default) runs everything
again with oneDNN / MKL / ATen capped at AVX2 (benchmarks/_isa.py: an AVX2-only CPU, where bf16 GEMMs are hundreds
of times slower). The machine is shared: compare the CPU-time column when the load average is high.

``--galt-layers`` adds GALT time per layer for var-d16- and var-d30-sized qkv / fc1 on random calibration tensors
(10 scales, 100 samples x 2 CFG halves, capped at GALTConfig.max_tokens_per_scale rows per scale), measured over
``--galt-epochs-measured`` epochs and extrapolated linearly to 50.

Run: ``python benchmarks/bench_ptq.py [--threads 1] [--galt-layers] [--isa-caps both|none|avx2]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _isa import MODES, mode_env, mode_names, run_measured  # noqa: E402


def run_cli(recipe: str, threads: int, env: dict, out_dir: str) -> dict:
    """``fpqvar quantize`` for ``recipe`` in a child process: its JSON summary plus wall / CPU time and peak RSS."""
    cmd = [sys.executable, "-m", "fpqvar", "quantize", "--model", "default", "--recipe", recipe, "--out",
           f"{out_dir}/{recipe}.safetensors", "--no-progress", "--json", "--threads", str(threads)]
    out, wall, ru = run_measured(cmd, env, f"{out_dir}/{recipe}", tail=2000)  # the child's own CPU time, peak RSS
    res = json.loads(out)
    res["wall_s"], res["cpu_s"], res["peak_rss_mib"] = wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024
    return res


def galt_layers(threads: int, epochs_measured: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    from fpqvar.transforms.galt import GALTConfig, learn_galt_lambda
    from fpqvar.transforms.hadamard import block_hadamard_matrix

    Q = block_hadamard_matrix().float()
    cfg = GALTConfig(epochs=epochs_measured, keep="final")
    rows = []
    pns = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    for name, C in (("var-d16", 1024), ("var-d30", 1920)):
        for site, O in (("mat_qkv", 3 * C), ("fc1", 4 * C)):
            g = torch.Generator().manual_seed(0)
            cap = cfg.max_tokens_per_scale
            xs = [torch.randn(min(200 * p * p, cap), C, generator=g) for p in pns]
            w = torch.randn(O, C, generator=g) / C**0.5
            t = time.perf_counter()
            learn_galt_lambda(xs, w, Q_block=Q, config=cfg)
            dt = time.perf_counter() - t
            r = {"model": name, "site": site, "C": C, "O": O, "epochs_measured": epochs_measured,
                 "s_per_epoch": dt / epochs_measured, "s_for_50_epochs": dt / epochs_measured * 50}
            print(f"  {r['model']} {r['site']:<8} ({r['C']}->{r['O']}): {r['s_per_epoch']:7.2f} s/epoch, "
                  f"{r['s_for_50_epochs'] / 60:6.1f} min for 50 epochs", flush=True)
            rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)  # 1: the shared 2-core box oversubscribes at 2 (6x slower)
    ap.add_argument("--galt-layers", action="store_true")
    ap.add_argument("--galt-epochs-measured", type=int, default=1)
    ap.add_argument("--isa-caps", default="both", choices=["both", "none", "avx2"])
    a = ap.parse_args()
    for mode in mode_names(a.isa_caps):
        env = mode_env(mode)
        res = {}
        print(f"\n===== ISA caps: {mode} {MODES[mode] or ''} =====", flush=True)
        print(f"fpqvar quantize --model default, threads {a.threads}", flush=True)
        print(f"{'recipe':<13} {'calib s':>8} {'GALT s':>8} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for recipe in ("fp4-rtn", "fpqvar-w6a6", "fpqvar-w4a4"):
                r = res[recipe] = run_cli(recipe, a.threads, env, tmp)
                t = r["timings_s"]
                print(f"{recipe:<13} {t.get('calibration_s', 0):8.2f} {t.get('galt_s', 0):8.2f} {r['wall_s']:8.2f} "
                      f"{r['cpu_s']:8.2f} {r['peak_rss_mib']:9.1f}", flush=True)
        w4, rtn = res["fpqvar-w4a4"], res["fp4-rtn"]
        k = w4["kernels"]
        print(f"cpu capability {k['cpu_capability']}, ISA env {k['isa_env'] or 'none'}; kernels of the fpqvar-w4a4 "
              "run: " + ", ".join(f"{c['op']}={c['name']}" for c in k["choices"]))
        print(f"fpqvar-w4a4 / fp4-rtn: wall {w4['wall_s'] / rtn['wall_s']:.1f}x, cpu "
              f"{w4['cpu_s'] / rtn['cpu_s']:.1f}x; GALT share of fpqvar-w4a4's wall time "
              f"{w4['timings_s'].get('galt_s', 0) / w4['wall_s']:.0%}")
        print(f"mean layer-output SQNR (dB): {json.dumps(w4['mean_sqnr_db'])}", flush=True)
    if a.galt_layers:
        print(f"\nGALT per layer on random calibration tensors ({a.galt_epochs_measured} epoch(s) measured, "
              "extrapolated to 50; 10 scales; rows per scale min(200 pn^2, 2048)):")
        galt_layers(a.threads, a.galt_epochs_measured)


if __name__ == "__main__":
    main()
