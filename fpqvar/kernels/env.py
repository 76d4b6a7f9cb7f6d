"""What this process runs on: CPU model and ISA flags, torch build, threads (for ``fpqvar doctor`` and reports).

Only torch and the standard library: the optional-tool checks (Yosys, checkpoints, ...) live in the CLI, which may
import the higher layers that know those paths.
"""

from __future__ import annotations

import os
import re

import torch

from fpqvar.kernels.ops import affinity_count
from fpqvar.kernels.select import machine_key

__all__ = ["cpu_flags", "torch_build", "machine_info"]

# ISA extensions that decide which kernels are fast (environment.md section 0)
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_flags() -> dict[str, bool]:
    """The ISA flags in :data:`_FLAGS` as /proc/cpuinfo lists them (empty where it is unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return {k: k in have for k in _FLAGS}
    except OSError:
        pass
    return {}


def _versions(config: str) -> dict[str, str]:
    out = {}
    for key, pat in (("mkl", r"Math Kernel Library Version ([\w.\-]+)"), ("onednn", r"MKL-DNN (v[\d.]+)"),
                     ("openmp", r"OpenMP (\d+)")):
        m = re.search(pat, config)
        if m:
            out[key] = m.group(1)
    return out


def torch_build() -> dict:
    """torch version, CUDA build, math libraries (from ``torch.__config__.show()``)."""
    return {"version": torch.__version__, "cuda_build": torch.version.cuda, "debug": bool(torch.version.debug),
            **_versions(torch.__config__.show()), "mkldnn": torch.backends.mkldnn.is_available()}


def machine_info() -> dict:
    """CPU, devices and threads of this process (JSON-ready)."""
    cuda = torch.cuda.is_available()
    return {
        **machine_key(),
        "cpu_flags": cpu_flags(),
        "torch_build": torch_build(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "affinity_cpus": affinity_count(),
        "os_cpu_count": os.cpu_count(),
        "cuda_available": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
