"""Does the paper's ordering hold on the default model? Reads the table of an `fpqvar eval --recipes ...` output
folder and prints the recipes ranked by the damage against the float model's own samples (same seeds: FID to
float, PSNR to float, token agreement; computed by the eval pipeline, fpqvar.eval.paired), next to the domain
metrics against real digits, each with its bootstrap interval.

    fpqvar eval --model default --recipes fp16,int4-rtn,fp4-rtn,fpqvar-w4a4,fpqvar-w6a6,... --per-class 100 --out DIR
    python benchmarks/quant_ordering.py DIR [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _ci(r: dict, k: str, nd: int, scale: float = 1.0) -> str:
    v, ci = r.get(k), r.get(f"{k}_ci")
    if v is None:
        return "-"
    return f"{scale * v:.{nd}f}" + ("" if not ci else f" [{scale * ci[0]:.{nd}f}, {scale * ci[1]:.{nd}f}]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    table = json.loads((args.eval_dir / "table.json").read_text())
    rows = [r for r in table["rows"] if r.get("fid_to_float") is not None]
    if not rows:
        raise SystemExit(f"{args.eval_dir}/table.json has no damage metrics: rerun `fpqvar eval` with fp16 in "
                         f"--recipes (or without --no-paired)")
    rows.sort(key=lambda r: r["fid_to_float"])
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'recipe':18s} {'FID->float':>22s} {'PSNR->float':>20s} {'tokens=float %':>20s} | {'FID real':>22s}")
    for r in rows:
        print(f"{r['method']:18s} {_ci(r, 'fid_to_float', 2):>22s} {_ci(r, 'psnr_to_float_db', 2):>20s} "
              f"{_ci(r, 'token_agreement', 1, 100):>20s} | {_ci(r, 'fid', 2):>22s}")


if __name__ == "__main__":
    main()
