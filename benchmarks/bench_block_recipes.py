"""How much do the MX / NVFP4 recipes (issue 14) change the shipped default model's output, next to FPQVAR's FP4?

Logit SQNR = 10 log10(sum y^2 / sum (y - y_hat)^2) in dB of each quantized model against the float model,
teacher-forced on 8 token maps the float model sampled (classes 0..7, seed 0, cfg 1.5); calibration: 16 samples.
GALT runs ``--galt-epochs`` epochs (upstream's 50 are too slow for a quick comparison: say which you ran). A
tensor-level proxy of image quality, not FID / IS (``fpqvar eval`` measures those).

    python benchmarks/bench_block_recipes.py [--galt-epochs 5] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

RECIPES = ["fp4-rtn", "mxfp4-rtn", "nvfp4-rtn", "mxfp4-rtn-all", "nvfp4-rtn-all", "mxfp6-rtn", "mxfp8-rtn",
           "fpqvar-w4a4", "fpqvar-mxfp4", "fpqvar-nvfp4"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--galt-epochs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from fpqvar.model import load_model
    from fpqvar.model.sampling import sample_tokens
    from fpqvar.quant import CalibConfig, calibrate, quantize_
    from fpqvar.quant.recipes import get_recipe
    from fpqvar.quant.report import sqnr_db
    from fpqvar.quant.steps import GALT
    from fpqvar.transforms.galt import GALTConfig

    ref = load_model("default").eval()
    labels = (torch.arange(8) % ref.num_classes).tolist()
    res = sample_tokens(ref, 8, labels, seed=0, cfg=1.5, top_k=900, top_p=0.96)
    with torch.no_grad():
        x = ref.vae.idx_to_var_input(res.idx_list)
        y0 = ref(res.labels, x)
    cal = calibrate(ref, CalibConfig(num_samples=16, batch_size=8, max_tokens_per_scale=256), progress=False)
    rows = []
    for name in RECIPES:
        r = get_recipe(name)
        ts = tuple(GALT(sites=t.sites, config=GALTConfig(epochs=args.galt_epochs)) if t.KIND == "galt" else t
                   for t in r.transforms)
        var = load_model("default").eval()
        quantize_(var, dataclasses.replace(r, transforms=ts), cal, progress=False, report=False)
        with torch.no_grad():
            rows.append({"recipe": name, "logit_sqnr_db": sqnr_db(y0, var(res.labels, x))})
    cap = torch.backends.cpu.get_cpu_capability()
    if args.json:
        print(json.dumps({"cpu_capability": cap, "galt_epochs": args.galt_epochs, "rows": rows}, indent=2))
        return
    print(f"cpu capability: {cap}; GALT epochs: {args.galt_epochs}")
    for row in rows:
        print(f"{row['recipe']:<16} logit SQNR {row['logit_sqnr_db']:6.2f} dB")


if __name__ == "__main__":
    main()
