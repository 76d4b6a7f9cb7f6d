"""Checkpoint I/O in the official layout: strict, code-free loading; saving; official downloads.

Loading never executes code: ``torch.load(weights_only=True)`` for .pth, safetensors otherwise. Every loaded
tensor is checked against the model before it is copied in (``check_state_dict``): keys, shapes, the kind of
dtype (an integer or bool tensor never lands in a float parameter, nor a float in an integer buffer: ``copy_``
would cast it silently) and finiteness (one NaN weight otherwise surfaces as a ``torch.multinomial`` error during
sampling, naming no file). Errors name the file and the first offending keys.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn as nn

from fpqvar.io_utils import atomic_save_safetensors, atomic_torch_save

HF_REPO = "FoundationVision/var"
_MAX_LISTED = 8


class CheckpointError(ValueError):
    pass


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A flat {key: tensor} dict from a .pth/.pt (weights only) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for truncated / foreign files
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message goes on to explain how to load the file unsafely; fpqvar never does, so it is not repeated
        raise CheckpointError(f"{path}: not a readable weights-only torch checkpoint: the file is damaged, or holds "
                              "pickled objects other than tensors (code or classes), which is refused: fpqvar loads "
                              "weights only and never runs code from a checkpoint") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable weights-only torch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    # User checkpoints from upstream train.py nest the weights under trainer -> var_wo_ddp / vae_wo_ddp.
    if isinstance(obj, dict) and "trainer" in obj and isinstance(obj["trainer"], dict):
        for k in ("var_wo_ddp", "vae_wo_ddp"):
            if k in obj["trainer"]:
                obj = obj["trainer"][k]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state_dict (expected a flat dict of tensors, got "
                              f"{type(obj).__name__})")
    return {(k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k): v for k, v in obj.items()}


def _listing(items: list[str]) -> str:
    more = f" ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _kind(t: torch.Tensor) -> str:
    return "float" if t.is_floating_point() else "complex" if t.is_complex() else "bool" if t.dtype == torch.bool \
        else "integer"


def _non_finite(k: str, t: torch.Tensor, allow_inf: bool = False) -> str | None:
    if not t.is_floating_point():
        return None
    bad = torch.isnan(t) if allow_inf else ~torch.isfinite(t)
    if not bad.any():
        return None
    n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
    what = ", ".join(p for p in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} inf" if n_inf else "") if p)
    return f"{k} ({what}; first at flat index {int(bad.flatten().nonzero()[0])})"


def check_tensors(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], source: str,
                  params: set[str] | None = None) -> None:
    """Dtype kind and finiteness of the file's tensors that the model has (CheckpointError naming file and keys).

    Float widths may differ (the default model ships float16 into float32 modules); integer or bool data never
    goes into a float tensor and vice versa. ``params``: the keys that are parameters (None: every key); they
    must be finite. Other keys are buffers, where -inf is legitimate (the additive attention mask
    ``attn_bias_for_masking``) and only NaN is refused."""
    bad_dtype = [f"{k}: file {str(sd[k].dtype).replace('torch.', '')} vs model "
                 f"{str(own[k].dtype).replace('torch.', '')}" for k in own if k in sd and _kind(sd[k]) != _kind(own[k])]
    if bad_dtype:
        raise CheckpointError(f"{source}: tensors of the wrong dtype kind ({len(bad_dtype)}): {_listing(bad_dtype)}")
    non_finite = [m for m in (_non_finite(k, sd[k], allow_inf=params is not None and k not in params)
                              for k in own if k in sd) if m]
    if non_finite:
        raise CheckpointError(f"{source}: non-finite weights in {len(non_finite)} tensor(s): {_listing(non_finite)}")


def check_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming the first missing / unexpected keys, shape mismatches, tensors of the wrong
    dtype kind and non-finite values (see ``check_tensors``)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad_shape = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in sd and sd[k].shape != own[k].shape]
    if not (missing or unexpected or bad_shape):
        check_tensors(own, sd, source, params={k for k, _ in model.named_parameters()})
        return
    msg = [f"{source}: does not match the model"]
    n_file = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    n_model = len({k.split(".")[1] for k in own if k.startswith("blocks.")})
    if n_file and n_model and n_file != n_model:
        msg.append(f"depth mismatch: file has {n_file} blocks, model has {n_model}")
    if missing:
        msg.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        msg.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if bad_shape:
        msg.append(f"shape mismatches ({len(bad_shape)}): {_listing(bad_shape)}")
    raise CheckpointError("; ".join(msg))


def load_vqvae_weights(vae: nn.Module, path: str | os.PathLike) -> nn.Module:
    sd = read_state_dict(path)
    # Upstream fix-up: the usage statistic's stored shape may differ; the model keeps its own buffer.
    key = "quantize.ema_vocab_hit_SV"
    own = vae.state_dict()
    if key in sd and key in own and sd[key].shape[0] != own[key].shape[0]:
        sd[key] = own[key]
    check_state_dict(vae, sd, str(path))
    vae.load_state_dict(sd, strict=True)
    return vae


def load_var_weights(var: nn.Module, path: str | os.PathLike) -> nn.Module:
    sd = read_state_dict(path)
    check_state_dict(var, sd, str(path))
    var.load_state_dict(sd, strict=True)
    return var


def detect_attn_l2_norm(sd: dict[str, torch.Tensor]) -> bool:
    """Older checkpoints lack ``scale_mul_1H11``: they use plain attention with scale 1/32 (spec 3.13)."""
    return "blocks.0.attn.scale_mul_1H11" in sd


def save_state_dict(module: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Official layout: a plain dict of tensors (.pth) or safetensors; written atomically."""
    path = Path(path)
    sd = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        return atomic_save_safetensors(path, sd, metadata)
    return atomic_torch_save(path, sd)


def official_checkpoint(filename: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path to an official checkpoint: a local file if present, else a download from the Hugging Face hub.

    Offline, the error says which file to place where.
    """
    local = Path(cache_dir or os.environ.get("FPQVAR_CKPT_DIR", "checkpoints")) / filename
    if local.is_file():
        return local
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=HF_REPO, filename=filename, local_dir=str(local.parent)))
    except Exception as e:
        raise CheckpointError(
            f"official checkpoint {filename!r} is not available locally and could not be downloaded "
            f"({type(e).__name__}). Download https://huggingface.co/{HF_REPO}/resolve/main/{filename} on a machine "
            f"with network access and place it at {local.resolve()} (or set FPQVAR_CKPT_DIR, or pass the path "
            f"with --ckpt / --vae)."
        ) from None
