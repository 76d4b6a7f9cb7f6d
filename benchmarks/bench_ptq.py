"""How long does the whole FPQVAR W4A4 PTQ (calibration + GALT + quantization) take, and how much memory?

Each configuration runs in a fresh child process (so ``ru_maxrss`` is that configuration's own peak), side by
side in one invocation, on the default model (or a random model of the default config when its weights are not
installed; the run says so):

- ``load``: load the float model only (the memory baseline);
- ``fp4-rtn``: no calibration, weights quantized at conversion;
- ``fpqvar-w6a6``: GHT + DFQ, no calibration;
- ``fpqvar-w4a4``: calibration (100 samples: 10 per class, cfg 1.5, top-k 900, top-p 0.96) + GALT (50 epochs,
  AdamW lr 1e-2) + GHT + DFQ + quantization, with the SQNR report.

Prints wall time per phase, peak RSS, and ratios against ``fp4-rtn`` / ``load``. ``--galt-layers`` adds the issue's
second question: GALT time per layer for var-d16- and var-d30-sized qkv / fc1 on random calibration tensors
(10 scales, 100 samples x 2 CFG halves, capped at GALTConfig.max_tokens_per_scale rows per scale), measured
over ``--galt-epochs-measured`` epochs and extrapolated linearly to 50.

Run: ``python benchmarks/bench_ptq.py [--num-calib 100] [--galt-epochs 50] [--threads 2] [--galt-layers]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _load(threads: int):
    import torch

    torch.set_num_threads(threads)
    from fpqvar.model import build_var, build_vqvae, load_model
    from fpqvar.model.zoo import DEFAULT_VAE, DEFAULT_VAR

    try:
        return load_model("default"), "default (shipped weights)"
    except FileNotFoundError:
        torch.manual_seed(0)
        vae = build_vqvae(DEFAULT_VAE).eval()
        var = build_var(vae, DEFAULT_VAR)
        var.init_weights(generator=torch.Generator().manual_seed(0), init_adaln_gamma=0.5, init_head=1.0)
        return var.eval().requires_grad_(False), "RANDOM model of the default config (assets not installed)"


def child(recipe: str, num_calib: int, galt_epochs: int, threads: int) -> dict:
    import dataclasses

    t0 = time.perf_counter()
    var, which = _load(threads)
    out = {"recipe": recipe, "model": which, "load_s": time.perf_counter() - t0}
    if recipe != "load":
        from fpqvar.quant import CalibConfig, calibrate, quantize_
        from fpqvar.quant.recipes import get_recipe

        r = get_recipe(recipe)
        if r.galt is not None:
            from fpqvar.quant.steps import GALT, galt_defaults_for

            ts = tuple(GALT(sites=t.sites, config=dataclasses.replace(t.config or galt_defaults_for(var),
                                                                       epochs=galt_epochs))
                       if t.KIND == "galt" else t for t in r.transforms)
            r = dataclasses.replace(r, transforms=ts)
        calib = None
        if r.needs_calibration:
            t = time.perf_counter()
            calib = calibrate(var, CalibConfig(num_samples=num_calib), progress=False)
            out["calibration_s"] = time.perf_counter() - t
        t = time.perf_counter()
        rep = quantize_(var, r, calib, progress=False)
        out["quantize_s"] = time.perf_counter() - t
        out["galt_s"] = rep.timings_s.get("galt_s", 0.0)
        out["mean_sqnr_db"] = rep.summary()["mean_sqnr_db"]
    out["total_s"] = time.perf_counter() - t0
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


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
    ap.add_argument("--num-calib", type=int, default=100)
    ap.add_argument("--galt-epochs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)  # 1: the shared 2-core box oversubscribes at 2 (6x slower)
    ap.add_argument("--galt-layers", action="store_true")
    ap.add_argument("--galt-epochs-measured", type=int, default=1)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.num_calib, a.galt_epochs, a.threads)))
        return
    res = {}
    print(f"threads {a.threads}; calibration {a.num_calib} samples; GALT {a.galt_epochs} epochs", flush=True)
    print(f"{'config':<13} {'calib s':>8} {'GALT s':>8} {'quant s':>8} {'total s':>8} {'peak MiB':>9}", flush=True)
    for recipe in ("load", "fp4-rtn", "fpqvar-w6a6", "fpqvar-w4a4"):
        p = subprocess.run([sys.executable, __file__, "--child", recipe, "--num-calib", str(a.num_calib),
                            "--galt-epochs", str(a.galt_epochs), "--threads", str(a.threads)],
                           capture_output=True, text=True, check=True)
        r = res[recipe] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{recipe:<13} {r.get('calibration_s', 0):8.2f} {r.get('galt_s', 0):8.2f} "
              f"{r.get('quantize_s', 0):8.2f} {r['total_s']:8.2f} {r['peak_rss_mib']:9.1f}", flush=True)
    print(f"model: {res['load']['model']}")
    w4, rtn, ld = res["fpqvar-w4a4"], res["fp4-rtn"], res["load"]
    print(f"fpqvar-w4a4 PTQ (calibration + quantize_) / fp4-rtn quantize_: "
          f"{(w4['calibration_s'] + w4['quantize_s']) / rtn['quantize_s']:.1f}x; GALT share of the PTQ: "
          f"{w4['galt_s'] / (w4['calibration_s'] + w4['quantize_s']):.0%}; peak RSS / model-load RSS: "
          f"{w4['peak_rss_mib'] / ld['peak_rss_mib']:.2f}x")
    print(f"mean layer-output SQNR (dB, calibration rows): {json.dumps(w4['mean_sqnr_db'])}")
    if a.galt_layers:
        print(f"\nGALT per layer on random calibration tensors ({a.galt_epochs_measured} epoch(s) measured, "
              "extrapolated to 50; 10 scales; rows per scale min(200 pn^2, 2048)):")
        galt_layers(a.threads, a.galt_epochs_measured)


if __name__ == "__main__":
    main()
