"""What produced each artefact of an evaluation folder, as data and as a short digest (issue 16.2).

Every cached artefact is keyed by everything that produced it, so a rerun never reuses a result made from
something else: the quantized file by (float weights, recipe CONTENT, calibration settings, threads); the sample
set by (that, or the bytes of a --quantized file; sampler settings; threads; device type; kernel choice); the
metrics by (the packed set's bytes, the feature network and reference files, the bootstrap settings).
``run_fingerprint`` is the one function that assembles these records; a kernel-selection report plugs in at
``kernel_choice``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from fpqvar.eval.reference import file_sha256
from fpqvar.io_utils import json_default
from fpqvar.quant.recipes import load_recipe

FINGERPRINT_VERSION = 1
_FULL_HASH_MAX_BYTES = 1 << 30
_PARTIAL_BYTES = 64 << 20


def canonical_sha256(obj) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no whitespace): equal data, equal digest."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def recipe_sha256(recipe) -> str:
    """Digest of a recipe's content (name, rules, transforms): a recipe JSON edited under the same file name
    gets another digest."""
    return canonical_sha256(load_recipe(recipe).to_dict())


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of the file; above 1 GiB (official checkpoints) of its size + first and last 64 MiB."""
    path = Path(path)
    size = path.stat().st_size
    if size <= _FULL_HASH_MAX_BYTES:
        return file_sha256(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_PARTIAL_BYTES))
        f.seek(size - _PARTIAL_BYTES)
        h.update(f.read(_PARTIAL_BYTES))
    return "partial:" + h.hexdigest()


def kernel_choice(backend: str | None) -> dict:
    """The kernels that compute the quantized layers: today the QuantLinear backend named by the plan. Where a
    kernel-selection report exists (per layer: dtype, kernel, CPU capability), it belongs here."""
    return {"backend": backend}


def run_fingerprint(stage: str, *, float_model: str, settings: dict, recipe_sha: str | None = None,
                    quantized_sha: str | None = None, upstream: str | None = None, backend: str | None = None,
                    threads: int | None = None, device: str | None = None) -> dict:
    """The record of what produces one stage's artefact, plus its digest under ``"sha"`` (16 hex digits).

    ``stage``: ``quantize`` or ``sample``. ``float_model``: digest of the float weight files; ``recipe_sha``:
    of the recipe content; ``quantized_sha``: of a --quantized file's bytes; ``upstream``: the digest of the
    stage this one consumes (the sample set of a recipe consumes its quantized file's record); ``threads``:
    torch CPU threads (default: ``torch.get_num_threads()`` now); ``device``: device type.
    """
    parts = {"version": FINGERPRINT_VERSION, "stage": stage, "float_model": float_model, "recipe": recipe_sha,
             "quantized_file": quantized_sha, "upstream": upstream, "settings": dict(settings),
             "threads": torch.get_num_threads() if threads is None else int(threads), "device": device,
             "kernels": kernel_choice(backend)}
    return {**parts, "sha": canonical_sha256(parts)[:16]}


def fingerprint_diff(old: dict, new: dict) -> list[str]:
    """Human-readable differences of two run_fingerprint records (ignoring the digest itself)."""
    names = {"float_model": "float weights", "recipe": "recipe content", "quantized_file": "quantized file bytes",
             "upstream": "quantized model", "settings": "settings", "threads": "CPU threads", "device": "device",
             "kernels": "kernels", "stage": "stage", "version": "fingerprint version"}
    out = []
    for k in sorted((set(old) | set(new)) - {"sha"}):
        if old.get(k) != new.get(k):
            if k == "settings" and isinstance(old.get(k), dict) and isinstance(new.get(k), dict):
                a, b = old[k], new[k]
                out += [f"{s}: {a.get(s)!r} -> {b.get(s)!r}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
            else:
                out.append(f"{names.get(k, k)}: {old.get(k)!r} -> {new.get(k)!r}")
    return out
