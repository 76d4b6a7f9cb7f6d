"""Packed quantized checkpoints (safetensors): real low-bit weights, not fake-quantized floats.

File layout (format version 2):

- every QuantLinear with a quantized weight stores ``<name>.weight_codes`` PACKED along in_features: 4-bit and
  narrower codes two per byte (``formats.pack_int4``), 5/6-bit codes four per three bytes (``pack_int6``), 7/8-bit
  codes one per byte; plus ``<name>.weight_scale`` and, for asymmetric INT, ``<name>.weight_zero_point``; static
  activation scales ``<name>.act_scale``; ``<name>.input_lambda`` (the GALT / SmoothQuant lambda, for
  inspection: it is already fused into the modulation; where there is none it is multiplied online:
  ``input_scale.lam_C``). Quantization state is stored losslessly. Block formats (MX / NVFP4) are stored in
  torchao's layout instead (``block_storage.py``: scale bytes as the format stores them, NVFP4's float32
  ``<name>.weight_tensor_scale``), and the layer's header entry says so (``packing`` ``"torchao:<fmt>"``,
  ``storage``).
- every other tensor of the model's state_dict in ``float_dtype``: ``"auto"`` (default) stores each tensor in the
  narrowest of float16 / bfloat16 / float32 that holds it exactly (the shipped fp16 model's untouched parameters
  go back to fp16; an ada_lin with GALT's lambda fused in stays float32), so loading gives exactly the in-memory
  model; ``"float16"`` / ``"bfloat16"`` round the model's float parameters (smaller files, outputs equal the
  in-memory model with those parameters rounded); ``"float32"`` keeps them.
- NOT stored, because the loader derives them: the attention mask, the level indices and the zero k bias (rebuilt
  from the config), the dequantized weight copies, and rotations that the recipe defines (GHT / full Hadamard
  from kind, block and seed). A rotation applied by hand (``transform_site_`` before ``quantize_``) is stored.
- metadata: ONE key ``fpqvar`` holding sorted JSON (safetensors writes a metadata map in hash order, so several
  keys would make identical files differ byte for byte): format name and version, recipe, model / VQVAE
  configs, model name, per-layer specs and packing, operand / KV quantizers, float dtype, size summary and the
  caller's ``metadata``.

``load_quantized`` rebuilds the float skeleton from the config, installs the same structure (no calibration),
unpacks the codes and checks, naming file and key: dtypes, shapes, finite positive scales, codes inside the
format's code range, and that every layer's specs equal what the file's recipe gives that site. Version-1 files
(one metadata key per field) are still read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from fpqvar.formats import pack_int4, pack_int6, unpack_int4, unpack_int6
from fpqvar.io_utils import atomic_save_safetensors
from fpqvar.model.zoo import MODELS
from fpqvar.quant.block_storage import pack_block_layer
from fpqvar.quant.operands import operand_specs
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.recipes import Recipe, load_recipe
from fpqvar.transforms.hadamard import block_hadamard_matrix, random_hadamard

FORMAT_NAME = "fpqvar-quantized"
FORMAT_VERSION = 2
FLOAT_DTYPES = {"auto": None, "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# buffers the float model builds from its config (var.py): never stored
DERIVED_BUFFERS = ("attn_bias_for_masking", "lvl_1L", "zero_k_bias")
_QUANT_STATE = ("weight_codes", "weight_scale", "weight_zero_point", "weight_tensor_scale", "act_scale",
                "act_zero_point", "input_lambda", "lam_C", "lowrank_up", "lowrank_down")
_WEIGHT_STATE = ("weight_codes", "weight_scale", "weight_zero_point", "weight_tensor_scale", "lowrank_up",
                 "lowrank_down")

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "FLOAT_DTYPES", "QuantFileError", "save_quantized",
           "read_header", "size_summary"]


class QuantFileError(ValueError):
    pass


def _packing(bits: int) -> str:
    return "int4" if bits <= 4 else "int6" if bits <= 6 else "uint8"


def _pack(codes: torch.Tensor, packing: str) -> torch.Tensor:
    return pack_int4(codes) if packing == "int4" else pack_int6(codes) if packing == "int6" else codes


def _unpack(packed: torch.Tensor, packing: str, n: int) -> torch.Tensor:
    return unpack_int4(packed, n) if packing == "int4" else unpack_int6(packed, n) if packing == "int6" else packed


def _packed_shape(O: int, I: int, packing: str) -> tuple[int, int]:
    return (O, I // 2) if packing == "int4" else (O, 3 * I // 4) if packing == "int6" else (O, I)


def _infer_model_name(cfg_dict: dict) -> str | None:
    for name, spec in MODELS.items():
        if spec.var.to_dict() == cfg_dict:
            return name
    return None


def _derived(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in DERIVED_BUFFERS


def _narrowest(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the narrowest of float16 / bfloat16 that round-trips it exactly, else float32 (lossless)."""
    if not t.is_floating_point():
        return t
    t32 = t.to(torch.float32)
    for dt in (torch.float16, torch.bfloat16):
        n = t32.to(dt)
        if torch.equal(n.to(torch.float32), t32) and bool(torch.isfinite(n).all() == torch.isfinite(t32).all()):
            return n
    return t32


def _recipe_rotation(recipe: Recipe, width: int) -> torch.Tensor | None:
    if recipe.ght:
        return block_hadamard_matrix(recipe.ght_block, recipe.hadamard_seed).float()
    if recipe.rotation == "full":
        return random_hadamard(width, recipe.hadamard_seed).float()
    return None


def size_summary(sd: dict[str, torch.Tensor], layers: dict) -> dict:
    """Bytes in the file and bits per quantized weight (codes + scales + zero points + SVDQuant's low-rank
    factors), per the stored tensors."""
    total = sum(t.numel() * t.element_size() for t in sd.values())
    n_w = q_bytes = lr_bytes = 0
    for name, info in layers.items():
        lr = sum(sd[k].numel() * sd[k].element_size() for k in (f"{name}.lowrank_up", f"{name}.lowrank_down")
                 if k in sd)
        lr_bytes += lr
        if info["weight"] is None:
            continue
        n_w += info["out_features"] * info["in_features"]
        q_bytes += sum(sd[k].numel() * sd[k].element_size() for k in
                       (f"{name}.{s}" for s in _WEIGHT_STATE) if k in sd)
    float_params = sum(t.numel() for k, t in sd.items() if t.is_floating_point() and
                       not any(k.endswith("." + s) for s in _QUANT_STATE))
    return {"file_tensor_bytes": total, "quantized_weights": n_w,
            "bits_per_quantized_weight": (8.0 * q_bytes / n_w) if n_w else None,
            "lowrank_bytes": lr_bytes,
            "float_params": float_params}


def save_quantized(model: nn.Module, recipe: Recipe | str, path: str | os.PathLike, *,
                   model_name: str | None = None, metadata: dict[str, str] | None = None,
                   float_dtype: str = "auto") -> Path:
    """Write ``model`` (quantized in place by ``quantize_``) with packed low-bit weights; atomic, byte-stable."""
    if float_dtype not in FLOAT_DTYPES:
        raise ValueError(f"save_quantized: float_dtype must be one of {tuple(FLOAT_DTYPES)}, got {float_dtype!r}")
    recipe = load_recipe(recipe)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items() if not _derived(k)}
    layers: dict[str, dict] = {}
    for name, m in model.named_modules():
        if not isinstance(m, QuantLinear):
            continue
        info = {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None,
                "weight": None if m.weight_spec is None else m.weight_spec.to_dict(),
                "act": None if m.act_spec is None else m.act_spec.to_dict(), "packing": None, "rotation": None}
        if m.weight_spec is not None and m.weight_spec.block is not None:
            info["packing"], info["storage"] = pack_block_layer(sd, name, m)
        elif m.weight_spec is not None:
            info["packing"] = _packing(m.weight_spec.bits)
            key = f"{name}.weight_codes"
            sd[key] = _pack(sd[key].contiguous(), info["packing"])
        if m.rotation is not None:
            Q = _recipe_rotation(recipe, m.in_features)
            derived = Q is not None and tuple(Q.shape) == tuple(m.rotation.Q_bb.shape) and \
                torch.equal(Q, m.rotation.Q_bb.cpu())
            info["rotation"] = {"block": int(m.rotation.block), "width": m.rotation.width, "derived": derived}
            if derived:
                del sd[f"{name}.rotation.Q_bb"]
        info["input_scale"] = m.input_scale is not None
        if m.lowrank_up is not None:  # SVDQuant's branch: its rank and storage dtype (the loader rebuilds it)
            info["lowrank"] = {"rank": int(m.lowrank_up.shape[1]), "dtype": str(m.lowrank_up.dtype).split(".")[-1]}
        info["input_lambda"] = m.input_lambda is not None
        layers[name] = info
    target = FLOAT_DTYPES[float_dtype]
    for k, t in sd.items():
        if not t.is_floating_point() or k.endswith(".weight_tensor_scale"):  # NVFP4's tensor scale stays float32
            continue
        quant_state = any(k.endswith("." + s) for s in _QUANT_STATE)
        sd[k] = _narrowest(t) if (target is None or quant_state) else t.to(target)
    cfg = model.config.to_dict()
    vae = getattr(model, "vae", None)
    from fpqvar import __version__

    header = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "fpqvar_version": __version__,
        "recipe": recipe.to_dict(), "model_config": cfg,
        "vae_config": None if vae is None else vae.config.to_dict(),
        "model_name": model_name or _infer_model_name(cfg), "layers": layers, "operands": operand_specs(model),
        "hadamard": {"kind": recipe.rotation, "block": recipe.ght_block, "seed": recipe.hadamard_seed},
        "float_dtype": float_dtype, "size": size_summary(sd, layers),
        "metadata": {k: str(v) for k, v in (metadata or {}).items()},
    }
    return atomic_save_safetensors(path, sd, {"fpqvar": json.dumps(header, sort_keys=True, default=str)})


def read_header(path: str | os.PathLike) -> dict:
    """The parsed header of a quantized file (version 1 files converted); refuses foreign / newer files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise QuantFileError(f"{path}: quantized model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file
        raise QuantFileError(f"{path}: not a readable safetensors file ({e})") from None
    if "fpqvar" in meta:
        try:
            h = json.loads(meta["fpqvar"])
        except json.JSONDecodeError as e:
            raise QuantFileError(f"{path}: metadata 'fpqvar' is not valid JSON ({e})") from None
        if not isinstance(h, dict) or h.get("format") != FORMAT_NAME:
            raise QuantFileError(f"{path}: not an fpqvar quantized model (metadata 'fpqvar' has format "
                                 f"{h.get('format') if isinstance(h, dict) else h!r}, expected {FORMAT_NAME!r})")
        ver = h.get("format_version")
        if type(ver) is not int or not 2 <= ver <= FORMAT_VERSION:
            raise QuantFileError(f"{path}: format version {ver!r} is not supported (this fpqvar reads 1.."
                                 f"{FORMAT_VERSION})")
        need = ("recipe", "model_config", "vae_config", "model_name", "layers", "operands", "hadamard")
        missing = [k for k in need if k not in h]
        if missing:
            raise QuantFileError(f"{path}: header keys {missing} are missing")
        if not isinstance(h["layers"], dict) or not isinstance(h["operands"], dict):
            raise QuantFileError(f"{path}: header 'layers' / 'operands' must be JSON objects")
        h.setdefault("metadata", {})
        return h
    return _read_header_v1(path, meta)


def _read_header_v1(path: Path, meta: dict) -> dict:
    if meta.get("fpqvar.format") != FORMAT_NAME:
        raise QuantFileError(f"{path}: not an fpqvar quantized model (metadata 'fpqvar.format' is "
                             f"{meta.get('fpqvar.format')!r}, expected {FORMAT_NAME!r})")
    if meta.get("fpqvar.format_version") != "1":
        raise QuantFileError(f"{path}: format version {meta.get('fpqvar.format_version')!r} is not supported "
                             f"(this fpqvar reads 1..{FORMAT_VERSION})")
    out = {"format_version": 1, "fpqvar_version": meta.get("fpqvar.version"), "float_dtype": "float32"}
    for k in ("recipe", "model_config", "vae_config", "model_name", "layers", "kv", "hadamard"):
        if k not in meta:
            raise QuantFileError(f"{path}: metadata key {k!r} is missing")
        try:
            out[k] = json.loads(meta[k])
        except json.JSONDecodeError as e:
            raise QuantFileError(f"{path}: metadata key {k!r} is not valid JSON ({e})") from None
    kv = out.pop("kv")
    cfg = out["model_config"]
    depth = cfg.get("depth", 0) if isinstance(cfg, dict) else 0
    out["operands"] = {} if kv is None else {f"blocks.{i}.attn.kv": kv for i in range(depth)}
    known = {"fpqvar.format", "fpqvar.format_version", "fpqvar.version", "recipe", "model_config", "vae_config",
             "model_name", "layers", "kv", "hadamard"}
    out["metadata"] = {k: v for k, v in meta.items() if k not in known}
    return out
