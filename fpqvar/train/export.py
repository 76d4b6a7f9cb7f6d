"""Export trained runs to the shipped default assets: float16 safetensors, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from fpqvar.io_utils import atomic_save_safetensors
from fpqvar.model.checkpoints import read_state_dict


def export_fp16(src: str | Path, dst: str | Path, metadata: dict | None = None) -> Path:
    """Float tensors -> float16 (buffers of other dtypes kept); the shipped file is the model."""
    sd = read_state_dict(src)
    out = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    meta = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in (metadata or {}).items()}
    return atomic_save_safetensors(dst, out, meta)


def max_abs_fp16_error(src: str | Path) -> float:
    sd = read_state_dict(src)
    return max(float((v - v.half().float()).abs().max()) for v in sd.values() if v.is_floating_point())

