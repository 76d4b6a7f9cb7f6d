"""Question: what do the FP4 / DFQ LUT multipliers, the PEs and the FHT-128 unit cost in LUTs and FFs,
next to the INT4 baseline?

Synthesizes every generated unit with Yosys ``synth_xilinx -family xcup -nodsp -noiopad -flatten``
(``fpqvar.hw.synth``; UltraScale+ LUT6 fabric as the Versal proxy, hardware.md section 6), prints the table
and the LUT ratios, and writes ``area.json`` / ``area.md`` (``--out``, default ``out/bench_synth_area``).
Takes a few minutes (the PEs and the FHT take ~20-90 s each).

    python benchmarks/bench_synth_area.py [--out DIR] [--units fp4_mul,int4_mul,...]
"""

from __future__ import annotations

import argparse
import sys
import time

from fpqvar.hw import synth as sy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/bench_synth_area")
    p.add_argument("--units", default=",".join(sy.AREA_UNITS))
    args = p.parse_args(argv)
    if sy.find_yosys() is None:
        print(sy.YOSYS_INSTALL_HINT, file=sys.stderr)
        return 2
    units = tuple(u for u in args.units.split(",") if u)
    t0 = time.perf_counter()
    table = sy.area_table(units, progress=lambda u: print(f"synthesizing {u} ...", file=sys.stderr, flush=True))
    json_path, md_path = sy.write_area_table(table, args.out)
    print(md_path.read_text())
    by = {r["unit"]: r for r in table["rows"]}
    if {"fp4_mul", "int4_mul", "dfq_mul"} <= set(by):
        print("LUTs + MUXF (a MUXF uses no LUT but is a fabric resource):")
        for u in ("int4_mul", "fp4_mul", "fp4_mul_twos", "dfq_mul"):
            if u in by:
                print(f"  {u:13s} {by[u]['luts']:4d} LUTs + {by[u]['muxf']:3d} MUXF + {by[u]['carry']} CARRY")
    if "pe_fp4" in by:
        print(f"per lane (PE / 128): pe_fp4 {by['pe_fp4']['luts'] / 128:.1f} LUTs, "
              + (f"pe_int4 {by['pe_int4']['luts'] / 128:.1f}, " if "pe_int4" in by else "")
              + (f"pe_dfq {by['pe_dfq']['luts'] / 128:.1f}" if "pe_dfq" in by else ""))
    print(f"wrote {json_path} and {md_path} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
