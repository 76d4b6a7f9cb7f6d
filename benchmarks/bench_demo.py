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
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _isa import ISA_CAPS, MODES  # noqa: E402


def _load() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def run_demo(env: dict, per_class: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "fpqvar", "demo", "--out", f"{tmp}/demo", "--json", "--no-progress",
               "--per-class", str(per_class), "--threads", str(threads)]
        load0, t0 = _load(), time.perf_counter()
        with open(f"{tmp}/out.txt", "w+") as fo, open(f"{tmp}/err.txt", "w+") as fe:
            p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            fo.seek(0)
            fe.seek(0)
            out, err = fo.read(), fe.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {err[-3000:]}")
    table = json.loads(out)
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "load_before": load0, "load_after": _load(),
            "table": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa-caps", default="both", choices=["both", "none", "avx2"])
    ap.add_argument("--per-class", type=int, default=50, help="the demo's default: 50 (500 images per recipe)")
    ap.add_argument("--threads", type=int, default=0, help="0: the demo's measured default")
    a = ap.parse_args()
    rows = []
    for mode in (["none", "avx2"] if a.isa_caps == "both" else [a.isa_caps]):
        env = {k: v for k, v in os.environ.items() if k not in ISA_CAPS}
        env.update(MODES[mode])
        r = run_demo(env, a.per_class, a.threads)
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
