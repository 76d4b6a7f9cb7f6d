"""Wall time of ``fpqvar demo`` (the whole mission on the embedded default model), as the machine is and with
oneDNN / MKL / ATen capped at AVX2 (an AVX2-only CPU, benchmarks/_isa.py), each in a fresh output folder.

Each run is the real command, ``python -m fpqvar demo --out <fresh dir> --json --no-progress`` (threads: the
measured default, as a user gets it), in a child process; printed: wall time, the child's CPU time (user + sys,
from ``os.wait4``: on a machine shared with other work the wall time also counts their load), the load average
before and after, the kernels the demo chose, and its per-recipe table.

    python benchmarks/bench_demo.py [--isa-caps both|none|avx2] [--per-class 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _isa import MODES, mode_env, mode_names, run_measured  # noqa: E402


def _load() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def run_demo(env: dict, per_class: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "fpqvar", "demo", "--out", f"{tmp}/demo", "--json", "--no-progress",
               "--per-class", str(per_class), "--threads", str(threads)]
        load0 = _load()
        out, wall, ru = run_measured(cmd, env, f"{tmp}/demo-log")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "load_before": load0, "load_after": _load(),
            "table": json.loads(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa-caps", default="both", choices=["both", "none", "avx2"])
    ap.add_argument("--per-class", type=int, default=50, help="the demo's default: 50 (500 images per recipe)")
    ap.add_argument("--threads", type=int, default=0, help="0: the demo's measured default")
    a = ap.parse_args()
    rows = []
    for mode in mode_names(a.isa_caps):
        r = run_demo(mode_env(mode), a.per_class, a.threads)
        k = r["table"].get("kernels", {})
        print(f"\n===== ISA caps: {mode} {MODES[mode] or ''} =====")
        print(f"cpu capability {k.get('cpu_capability')}; wall {r['wall_s']:.1f} s ({r['wall_s'] / 60:.2f} min, "
              f"target <= 5 min), process CPU {r['cpu_s']:.1f} s; load average before {r['load_before']}, "
              f"after {r['load_after']}")
        print("kernels: " + ", ".join(f"{c['op']}={c['name']}" for c in k.get("choices", [])))
        for row in r["table"].get("rows", []):
            print("  " + json.dumps({kk: row[kk] for kk in row if not isinstance(row[kk], (dict, list))}))
        rows.append((mode, r["wall_s"], r["cpu_s"]))
    if len(rows) == 2:
        print(f"\ncapped / as-is: wall {rows[1][1] / rows[0][1]:.2f}x, CPU {rows[1][2] / rows[0][2]:.2f}x")


if __name__ == "__main__":
    main()
