"""Does the paper's ordering hold on the default model? Reads an `fpqvar eval --recipes ...` output folder and
prints, per recipe, the domain metrics against real digits and the damage against the float model's own samples
(same seeds): FID to float, PSNR to float, identical images.

    fpqvar eval --model default --recipes fp16,int4-rtn,fp4-rtn,fpqvar-w4a4,fpqvar-w6a6,... --per-class 100 --out DIR
    python benchmarks/quant_ordering.py DIR [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fpqvar.eval.paired import paired_metrics
from fpqvar.eval.reference import load_digit_net


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--float-recipe", default="fp16")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    net = load_digit_net()
    ref = np.load(args.eval_dir / args.float_recipe / "samples.npz")
    rows = []
    for d in sorted(p for p in args.eval_dir.iterdir() if (p / "samples.npz").is_file()):
        s = np.load(d / "samples.npz")
        if not np.array_equal(s["arr_1"], ref["arr_1"]):
            raise ValueError(f"{d}: labels differ from {args.float_recipe}: not the same seeds / protocol")
        m = json.loads((d / "metrics.json").read_text())
        m = m.get("row", m)
        row = {"recipe": d.name, **{k: m.get(k) for k in ("fid", "is", "precision", "recall", "class_accuracy")},
               **paired_metrics(s["arr_0"], ref["arr_0"], net)}
        rows.append(row)
    rows.sort(key=lambda r: r["fid_to_float"])
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'recipe':18s} {'FID->float':>10s} {'PSNR->float':>11s} {'same img':>8s} | {'FID real':>8s} "
          f"{'IS':>5s} {'prec':>5s} {'rec':>5s} {'acc':>6s}")
    for r in rows:
        print(f"{r['recipe']:18s} {r['fid_to_float']:10.2f} {r['psnr_to_float_db']:11.2f} {r['identical_images']:8.3f} | "
              f"{r['fid']:8.2f} {r['is']:5.2f} {r['precision']:5.3f} {r['recall']:5.3f} {r['class_accuracy']:6.3f}")


if __name__ == "__main__":
    main()
