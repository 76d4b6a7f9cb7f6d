"""Shared by the benchmarks: run a benchmark as it is and under ISA caps that imitate an AVX2-only CPU
(environment.md section 0), each in its own child process (the caps act at library load), and say what they did."""

from __future__ import annotations

import os
import subprocess
import sys
import time

ISA_CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
MODES = {"none": {}, "avx2": ISA_CAPS}


def header() -> str:
    import torch

    caps = {k: os.environ[k] for k in ISA_CAPS if k in os.environ}
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return (f"cpu capability {torch.backends.cpu.get_cpu_capability()}, ISA caps {caps or 'none'}, torch "
            f"{torch.__version__}, threads {torch.get_num_threads()}, load average {load}")


def mode_names(modes: str) -> list[str]:
    """``"both"`` -> ``["none", "avx2"]``, else the one mode."""
    return ["none", "avx2"] if modes == "both" else [modes]


def mode_env(mode: str) -> dict[str, str]:
    """This process's environment without any ISA cap, plus the caps of ``mode``."""
    env = {k: v for k, v in os.environ.items() if k not in ISA_CAPS}
    env.update(MODES[mode])
    return env


def without_isa_caps(argv: list[str]) -> list[str]:
    """``argv`` without its ``--isa-caps X`` / ``--isa-caps=X``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--isa-caps":
            skip = True
        elif not a.startswith("--isa-caps="):
            out.append(a)
    return out


def run_modes(argv: list[str], modes: str) -> None:
    """Re-run this script (``argv``, its ``--isa-caps`` dropped) once per mode in ``modes`` ("none", "avx2",
    "both")."""
    for name in mode_names(modes):
        print(f"\n===== ISA caps: {name} {MODES[name] or ''} =====", flush=True)
        subprocess.run([sys.executable, *without_isa_caps(argv), "--isa-caps", "child"], env=mode_env(name),
                       check=True)


def main_in_modes(ap, measure) -> None:
    """Parse ``ap`` with an ``--isa-caps both|none|avx2`` option added; run ``measure(args)`` in this process when it
    is a child of :func:`run_modes` (``child``), else re-run this script once per mode."""
    ap.add_argument("--isa-caps", default="both", choices=["both", "none", "avx2", "child"])
    args = ap.parse_args()
    if args.isa_caps == "child":
        measure(args)
    else:
        run_modes(sys.argv, args.isa_caps)


def best_times(fns: dict, rounds: int, clock=time.process_time) -> dict:
    """The best time of each callable of ``fns`` over ``rounds`` rounds, each round running all of them in turn
    (side by side, so that a noisy spell on a shared machine touches every contender)."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = clock()
            f()
            best[k] = min(best[k], clock() - t0)
    return best


def run_measured(cmd: list[str], env: dict[str, str], log_stem: str, tail: int = 3000):
    """Run ``cmd`` to completion: ``(stdout, wall seconds, the child's rusage)`` (its own CPU time and peak
    RSS); its stdout / stderr go to ``log_stem.out`` / ``.err``. A failure raises with the end of stderr."""
    t0 = time.perf_counter()
    with open(f"{log_stem}.out", "w+") as fo, open(f"{log_stem}.err", "w+") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err[-tail:]}")
    return out, wall, ru
