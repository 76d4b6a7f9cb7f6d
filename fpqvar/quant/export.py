"""Packed quantized checkpoints (safetensors): real low-bit weights, not fake-quantized floats.

File layout (format version 1):

- every QuantLinear with a quantized weight stores ``<name>.weight_codes`` PACKED along in_features: 4-bit and
  narrower codes two per byte (``formats.pack_int4``), 5/6-bit codes four per three bytes (``pack_int6``), 7/8-bit
  codes one per byte; plus ``<name>.weight_scale`` (float32) and, for asymmetric INT, ``<name>.weight_zero_point``;
  static activation scales ``<name>.act_scale``; the online rotation ``<name>.rotation.Q_bb`` (one GHT block or the
  full Hadamard; the seed is in the metadata too); ``<name>.input_lambda``, the GALT / SmoothQuant lambda for
  inspection (it is already fused into ada_lin; shared-AdaLN models multiply it online: ``input_scale.lam_C``);
- every other tensor of the model's state_dict as is: embeddings, head, ada_lin (with GALT / SmoothQuant scales
  already fused into it), biases, unquantized linears, buffers. The VQVAE is not stored: the loader takes it from
  the named model (``default``: the shipped assets) or from ``vae=`` / ``vae_path=``;
- metadata (strings): ``fpqvar.format`` = ``fpqvar-quantized``, ``fpqvar.format_version``, ``recipe`` (JSON),
  ``model_config`` / ``vae_config`` (JSON), ``model_name``, ``layers`` (per module: shape, specs, packing,
  rotation), ``kv``, ``hadamard`` (kind, block, seed).

``load_quantized`` rebuilds the float skeleton from ``model_config``, installs the same QuantLinear structure (no
calibration), unpacks the codes and loads every tensor strictly: its outputs equal the in-memory quantized
model's exactly. A file that does not match (config, recipe, layer shapes, keys) is refused naming the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from fpqvar.formats import pack_int4, pack_int6, unpack_int4, unpack_int6
from fpqvar.io_utils import atomic_save_safetensors
from fpqvar.quant.kv import install_kv_quantizers
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.recipes import Recipe, load_recipe
from fpqvar.quant.spec import QuantSpec

FORMAT_NAME = "fpqvar-quantized"
FORMAT_VERSION = 1

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "QuantFileError", "save_quantized", "load_quantized", "read_header"]


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
    from fpqvar.model.zoo import MODELS

    for name, spec in MODELS.items():
        if spec.var.to_dict() == cfg_dict:
            return name
    return None


def save_quantized(model: nn.Module, recipe: Recipe | str, path: str | os.PathLike, *,
                   model_name: str | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` (quantized in place by ``quantize_``) with packed low-bit weights; atomic."""
    recipe = load_recipe(recipe)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    layers: dict[str, dict] = {}
    for name, m in model.named_modules():
        if not isinstance(m, QuantLinear):
            continue
        info = {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None,
                "weight": None if m.weight_spec is None else m.weight_spec.to_dict(),
                "act": None if m.act_spec is None else m.act_spec.to_dict(), "packing": None, "rotation": None}
        if m.weight_spec is not None:
            info["packing"] = _packing(m.weight_spec.bits)
            key = f"{name}.weight_codes"
            sd[key] = _pack(sd[key].contiguous(), info["packing"])
        if m.rotation is not None:
            info["rotation"] = {"block": int(m.rotation.block), "width": m.rotation.width}
        info["input_scale"] = m.input_scale is not None
        info["input_lambda"] = m.input_lambda is not None
        layers[name] = info
    cfg = model.config.to_dict()
    vae = getattr(model, "vae", None)
    kv = None
    for b in model.blocks:
        q = b.attn.kv_quantizer
        if q is not None:
            kv = q.spec.to_dict()
    meta = {
        "fpqvar.format": FORMAT_NAME,
        "fpqvar.format_version": str(FORMAT_VERSION),
        "recipe": recipe.to_json(),
        "model_config": json.dumps(cfg, sort_keys=True),
        "vae_config": json.dumps(None if vae is None else vae.config.to_dict(), sort_keys=True),
        "model_name": json.dumps(model_name or _infer_model_name(cfg)),
        "layers": json.dumps(layers, sort_keys=True),
        "kv": json.dumps(kv),
        "hadamard": json.dumps({"kind": recipe.rotation, "block": recipe.ght_block if recipe.ght else None,
                                "seed": recipe.hadamard_seed}),
    }
    from fpqvar import __version__

    meta["fpqvar.version"] = __version__
    if metadata:
        meta.update({k: str(v) for k, v in metadata.items()})
    return atomic_save_safetensors(path, sd, meta)


def read_header(path: str | os.PathLike) -> dict:
    """The parsed metadata of a quantized file (JSON fields decoded); refuses foreign / newer files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise QuantFileError(f"{path}: quantized model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise QuantFileError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("fpqvar.format") != FORMAT_NAME:
        raise QuantFileError(f"{path}: not an fpqvar quantized model (metadata 'fpqvar.format' is "
                             f"{meta.get('fpqvar.format')!r}, expected {FORMAT_NAME!r})")
    try:
        ver = int(meta.get("fpqvar.format_version", "0"))
    except ValueError:
        ver = -1
    if not 1 <= ver <= FORMAT_VERSION:
        raise QuantFileError(f"{path}: format version {meta.get('fpqvar.format_version')!r} is not supported "
                             f"(this fpqvar reads 1..{FORMAT_VERSION})")
    out = {"format_version": ver, "fpqvar_version": meta.get("fpqvar.version")}
    for k in ("recipe", "model_config", "vae_config", "model_name", "layers", "kv", "hadamard"):
        if k not in meta:
            raise QuantFileError(f"{path}: metadata key {k!r} is missing")
        try:
            out[k] = json.loads(meta[k])
        except json.JSONDecodeError as e:
            raise QuantFileError(f"{path}: metadata key {k!r} is not valid JSON ({e})") from None
    return out


def _config_diff(owner: str, file_cfg: dict, model_cfg: dict) -> list[str]:
    keys = sorted(set(file_cfg) | set(model_cfg))
    return [f"{owner}.{k}: file {file_cfg.get(k)!r} vs model {model_cfg.get(k)!r}" for k in keys
            if _norm(file_cfg.get(k)) != _norm(model_cfg.get(k))]


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _resolve_vae(path: Path, header: dict, vae, vae_path):
    from fpqvar.model import build_vqvae
    from fpqvar.model.checkpoints import load_vqvae_weights
    from fpqvar.model.zoo import VQVAEConfig, get_model_spec

    if vae is not None:
        return vae
    vcfg = header["vae_config"]
    name = header["model_name"]
    if vae_path is None:
        if name is None:
            raise QuantFileError(f"{path}: the file's model is not a named model; pass the VQVAE (vae= / --vae)")
        if name == "default":
            from fpqvar.model.default import default_paths

            vae_path = default_paths().vae
        else:
            from fpqvar.model.checkpoints import official_checkpoint

            vae_path = official_checkpoint(get_model_spec(name).vae_ckpt)
    cfg = VQVAEConfig.from_dict(vcfg) if vcfg is not None else get_model_spec(name).vae
    return load_vqvae_weights(build_vqvae(cfg), vae_path).eval().requires_grad_(False)


def _install_structure(var: nn.Module, layers: dict, path: Path) -> None:
    from fpqvar.transforms.hadamard import OnlineRotation

    for name, info in layers.items():
        try:
            lin = var.get_submodule(name)
        except AttributeError:
            raise QuantFileError(f"{path}: layer {name!r} of the file does not exist in the model") from None
        if not isinstance(lin, nn.Linear):
            raise QuantFileError(f"{path}: {name!r} is a {type(lin).__name__} in the model, expected nn.Linear")
        shape_f = (info["out_features"], info["in_features"])
        if tuple(lin.weight.shape) != shape_f:
            raise QuantFileError(f"{path}: layer {name!r}: file shape {shape_f} vs model "
                                 f"{tuple(lin.weight.shape)}")
        rot = scale = None
        if info.get("input_scale"):
            from fpqvar.transforms.fuse import OnlineScale

            scale = OnlineScale(torch.ones(lin.in_features))
        if info.get("rotation"):
            b = int(info["rotation"]["block"])
            rot = OnlineRotation(torch.eye(b), width=info["rotation"].get("width"))
        ws = None if info["weight"] is None else QuantSpec.from_dict(info["weight"])
        as_ = None if info["act"] is None else QuantSpec.from_dict(info["act"])
        q = QuantLinear(lin.in_features, lin.out_features, bias=bool(info["bias"]), weight_spec=ws, act_spec=as_,
                        rotation=rot, input_scale=scale, dtype=lin.weight.dtype, device=lin.weight.device)
        if info.get("input_lambda"):
            q.set_input_lambda(torch.ones(lin.in_features))  # placeholder, loaded with the state_dict
        parent, child = name.rsplit(".", 1)
        setattr(var.get_submodule(parent), child, q)


def load_quantized(path: str | os.PathLike, *, model: nn.Module | None = None, device: str | torch.device = "cpu",
                   vae: nn.Module | None = None, vae_path: str | os.PathLike | None = None,
                   expect_recipe: str | None = None) -> nn.Module:
    """A quantized VAR from ``path``: into ``model`` (a float VAR of the same config, modified in place) or a
    fresh model built from the file's config (VQVAE from ``vae`` / ``vae_path`` / the named model)."""
    from safetensors.torch import load_file

    from fpqvar.model import build_var
    from fpqvar.model.checkpoints import CheckpointError, check_state_dict
    from fpqvar.model.zoo import VARConfig
    from fpqvar.quant.quantize import is_quantized

    path = Path(path)
    header = read_header(path)
    try:
        recipe = Recipe.from_dict(header["recipe"])
    except (ValueError, TypeError) as e:
        raise QuantFileError(f"{path}: metadata 'recipe' is invalid ({e})") from None
    if expect_recipe is not None and recipe.name != expect_recipe:
        raise QuantFileError(f"{path}: recipe is {recipe.name!r}, expected {expect_recipe!r}")
    try:
        cfg = VARConfig.from_dict(header["model_config"])
    except (ValueError, TypeError) as e:
        raise QuantFileError(f"{path}: metadata 'model_config' is invalid ({e})") from None
    if model is not None:
        diff = _config_diff("model_config", cfg.to_dict(), model.config.to_dict())
        if diff:
            raise QuantFileError(f"{path}: does not match the model: " + "; ".join(diff))
        if is_quantized(model):
            raise QuantFileError(f"{path}: load_quantized needs a float model, the given one is already quantized")
        var = model
    else:
        v = _resolve_vae(path, header, vae, vae_path)
        if header["vae_config"] is not None:
            diff = _config_diff("vae_config", header["vae_config"], v.config.to_dict())
            if diff:
                raise QuantFileError(f"{path}: the VQVAE does not match the file: " + "; ".join(diff))
        var = build_var(v, cfg)
    _install_structure(var, header["layers"], path)
    sd = load_file(str(path))
    for name, info in header["layers"].items():
        if info["weight"] is None:
            continue
        key = f"{name}.weight_codes"
        if key not in sd:
            raise QuantFileError(f"{path}: missing key {key!r}")
        O, I = info["out_features"], info["in_features"]
        want = _packed_shape(O, I, info["packing"])
        if tuple(sd[key].shape) != want or sd[key].dtype != torch.uint8:
            raise QuantFileError(f"{path}: key {key!r} has {sd[key].dtype} {tuple(sd[key].shape)}, expected "
                                 f"uint8 {want} ({info['packing']} packing of ({O}, {I}))")
        sd[key] = _unpack(sd[key], info["packing"], I)
    try:
        check_state_dict(var, sd, str(path))
    except CheckpointError as e:
        raise QuantFileError(str(e)) from None
    var.load_state_dict(sd, strict=True)
    if header["kv"] is not None:
        install_kv_quantizers(var, QuantSpec.from_dict(header["kv"]))
    var.to(device).eval().requires_grad_(False)
    var.vae.to(device).eval()
    return var
