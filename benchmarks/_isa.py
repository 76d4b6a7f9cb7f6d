"""Shared by the benchmarks: run a benchmark as it is and under ISA caps that imitate an AVX2-only CPU
(environment.md section 0), each in its own child process (the caps act at library load), and say what they did."""

from __future__ import annotations

import os
import subprocess
import sys

ISA_CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
MODES = {"none": {}, "avx2": ISA_CAPS}


def header() -> str:
    import torch

    caps = {k: os.environ[k] for k in ISA_CAPS if k in os.environ}
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return (f"cpu capability {torch.backends.cpu.get_cpu_capability()}, ISA caps {caps or 'none'}, torch "
            f"{torch.__version__}, threads {torch.get_num_threads()}, load average {load}")


def run_modes(argv: list[str], modes: str) -> None:
    """Re-run this script (``argv`` without ``--isa-caps``) once per mode in ``modes`` ("none", "avx2", "both")."""
    names = ["none", "avx2"] if modes == "both" else [modes]
    for name in names:
        env = {k: v for k, v in os.environ.items() if k not in ISA_CAPS}
        env.update(MODES[name])
        print(f"\n===== ISA caps: {name} {MODES[name] or ''} =====", flush=True)
        subprocess.run([sys.executable, *argv, "--isa-caps", "child"], env=env, check=True)
