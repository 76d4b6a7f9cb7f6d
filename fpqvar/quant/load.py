"""Load a packed quantized checkpoint (written by ``export.save_quantized``), checking everything it says.

``load_quantized`` rebuilds the float skeleton from the file's config (or takes a float ``model`` of the same
config), installs the QuantLinear structure and the operand / KV quantizers the file records, unpacks the codes
and loads every tensor strictly. Refused, naming the file and the key (issue 16, item 4):

- a layer spec or an operand quantizer that differs from what the file's own recipe gives that site (a file whose
  per-layer metadata would decode codes on the wrong grid); searched formats (FormatSearch) must be candidates;
- integer tensors where the model has float parameters, float tensors where it has codes, wrong shapes;
- non-finite float parameters; scales that are not finite and > 0; codes that decode outside the format's grid
  (a special NaN / Inf code, or an INT code beyond the symmetric range); zero points outside the code range.

Its outputs then equal the in-memory quantized model's exactly (``float_dtype="auto"`` files).
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import torch
import torch.nn as nn

from fpqvar.formats import decode, get_format
from fpqvar.model import build_var, build_vqvae
from fpqvar.model.checkpoints import CheckpointError, check_state_dict, load_vqvae_weights, official_checkpoint
from fpqvar.model.default import default_paths
from fpqvar.model.sites import model_sites
from fpqvar.model.zoo import VARConfig, VQVAEConfig, get_model_spec
from fpqvar.quant.block_storage import is_block_packing, unpack_block_layer
from fpqvar.quant.export import DERIVED_BUFFERS, QuantFileError, _packed_shape, _recipe_rotation, _unpack, read_header
from fpqvar.quant.operands import install_operand_quantizers
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.quantize import is_quantized, resolve_rules
from fpqvar.quant.recipe import Recipe
from fpqvar.quant.spec import QuantSpec
from fpqvar.transforms.fuse import OnlineScale
from fpqvar.transforms.hadamard import OnlineRotation
from fpqvar.transforms.sites import set_module

__all__ = ["load_quantized", "config_diff"]


def config_diff(owner: str, file_cfg: dict, model_cfg: dict) -> list[str]:
    keys = sorted(set(file_cfg) | set(model_cfg))
    return [f"{owner}.{k}: file {file_cfg.get(k)!r} vs model {model_cfg.get(k)!r}" for k in keys
            if _norm(file_cfg.get(k)) != _norm(model_cfg.get(k))]


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _resolve_vae(path: Path, header: dict, vae, vae_path):
    if vae is not None:
        return vae
    vcfg = header["vae_config"]
    name = header["model_name"]
    if vae_path is None:
        if name is None:
            raise QuantFileError(f"{path}: the file's model is not a named model; pass the VQVAE (vae= / --vae)")
        if name == "default":
            vae_path = default_paths().vae
        else:
            vae_path = official_checkpoint(get_model_spec(name).vae_ckpt)
    cfg = VQVAEConfig.from_dict(vcfg) if vcfg is not None else get_model_spec(name).vae
    return load_vqvae_weights(build_vqvae(cfg), vae_path).eval().requires_grad_(False)


def _spec(d, path: Path, where: str) -> QuantSpec | None:
    if d is None:
        return None
    try:
        return QuantSpec.from_dict(d)
    except (ValueError, TypeError) as e:
        raise QuantFileError(f"{path}: {where} is not a valid spec ({e})") from None


def _check_against_recipe(path: Path, recipe: Recipe, sites, layers: dict, operands: dict) -> None:
    """Each stored spec must be what the recipe's first matching rule gives that site (formats may differ only
    where a FormatSearch step selects the site, and then only to one of its candidates)."""

    try:
        expected = resolve_rules(recipe, sites)
    except ValueError as e:
        raise QuantFileError(f"{path}: the file's recipe does not fit its model ({e})") from None
    kinds = {s.name: s.kind for s in sites}
    searched: dict[str, tuple[str, ...]] = {}
    for t in recipe.transforms:
        if t.KIND == "format_search":
            for s in sites:
                if s.kind == "linear" and any(fnmatch.fnmatchcase(s.name, p) for p in t.sites):
                    searched.setdefault(s.name, t.candidates)

    def same(site, what, got: QuantSpec | None, want: QuantSpec | None) -> None:
        if got == want:
            return
        cands = searched.get(site)
        if got is not None and want is not None and cands and got.fmt in cands and got.with_fmt(want.fmt) == want:
            return
        raise QuantFileError(f"{path}: layer {site!r} {what} spec {None if got is None else got.short()} disagrees "
                             f"with the file's recipe {recipe.name!r} ({None if want is None else want.short()})")

    site_of = {s.module: s.name for s in sites if s.kind == "linear"}  # the file keys layers by module path
    seen = set()
    for mod_name, info in layers.items():
        name = site_of.get(mod_name, mod_name)
        if kinds.get(name) != "linear":
            raise QuantFileError(f"{path}: layer {mod_name!r} of the file is not a linear site of the model")
        seen.add(name)
        w_want, a_want = expected.get(name, (None, None))
        same(name, "weight", _spec(info["weight"], path, f"layer {name!r} weight"), w_want)
        same(name, "act", _spec(info["act"], path, f"layer {name!r} act"), a_want)
    for name, (w, a) in expected.items():
        if kinds[name] == "linear" and (w is not None or a is not None) and name not in seen:
            raise QuantFileError(f"{path}: the recipe quantizes {name!r} but the file has no such layer")
    for name, d in operands.items():
        if kinds.get(name) not in ("operand", "kv"):
            raise QuantFileError(f"{path}: operand quantizer {name!r} is not an attention operand / KV site")
        same(name, "operand", _spec(d, path, f"operand {name!r}"), expected.get(name, (None, None))[1])
    for name, (_, a) in expected.items():
        if kinds[name] in ("operand", "kv") and a is not None and name not in operands:
            raise QuantFileError(f"{path}: the recipe quantizes {name!r} but the file records no quantizer there")


def _install_structure(var: nn.Module, recipe: Recipe, layers: dict, path: Path) -> None:
    for name, info in layers.items():
        mpath = name  # the file keys layers by module path (checked against the site table before)
        lin = var.get_submodule(mpath)
        if not isinstance(lin, nn.Linear):
            raise QuantFileError(f"{path}: {name!r} is a {type(lin).__name__} in the model, expected nn.Linear")
        shape_f = (info["out_features"], info["in_features"])
        if tuple(lin.weight.shape) != shape_f:
            raise QuantFileError(f"{path}: layer {name!r}: file shape {shape_f} vs model {tuple(lin.weight.shape)}")
        rot = scale = None
        if info.get("input_scale"):
            scale = OnlineScale(torch.ones(lin.in_features))
        r = info.get("rotation")
        if r:
            Q = _recipe_rotation(recipe, lin.in_features) if r.get("derived") else None
            if r.get("derived") and (Q is None or Q.shape[0] != int(r["block"])):
                raise QuantFileError(f"{path}: layer {name!r}: the rotation is marked derived from the recipe, which "
                                     f"defines {'none' if Q is None else Q.shape[0]} (block {r['block']})")
            rot = OnlineRotation(torch.eye(int(r["block"])) if Q is None else Q, width=r.get("width"))
        lr = info.get("lowrank") or {}
        lr_dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
        if lr and (lr.get("dtype") not in lr_dtypes or type(lr.get("rank")) is not int or lr["rank"] < 1):
            raise QuantFileError(f"{path}: layer {name!r}: bad low-rank entry {lr!r} (rank >= 1, dtype one of "
                                 f"{tuple(lr_dtypes)})")
        q = QuantLinear(lin.in_features, lin.out_features, bias=bool(info["bias"]),
                        weight_spec=_spec(info["weight"], path, name), act_spec=_spec(info["act"], path, name),
                        rotation=rot, input_scale=scale, dtype=lin.weight.dtype, device=lin.weight.device,
                        lowrank_rank=lr.get("rank", 0), lowrank_dtype=lr_dtypes.get(lr.get("dtype"), torch.float16),
                        patch_nums=tuple(var.patch_nums))
        if info.get("input_lambda"):
            q.set_input_lambda(torch.ones(lin.in_features))  # placeholder, loaded with the state_dict
        set_module(var, mpath, q)


def _check_codes(path: Path, key: str, codes: torch.Tensor, spec: QuantSpec) -> None:
    fmt = get_format(spec.fmt)
    if spec.asymmetric:
        return  # every stored code 0 .. 2^k - 1 is on the asymmetric grid (the byte range is checked by unpacking)
    vals = decode(codes, fmt)
    grid = torch.as_tensor(fmt.grid, dtype=torch.float32)
    bad = ~torch.isin(vals, grid)
    if bool(bad.any()):
        i = int(bad.flatten().nonzero()[0])
        raise QuantFileError(f"{path}: key {key!r}: code {int(codes.flatten()[i])} decodes to "
                             f"{float(vals.flatten()[i])!r}, not on the {fmt.name} grid ({int(bad.sum())} such codes)")


def _check_tensors(path: Path, sd: dict, own: dict, layers: dict, derived: set) -> None:
    for k, t in sd.items():
        if k not in own or k in derived:
            continue  # unknown keys: reported by the strict key check; derived ones come from the model
        o = own[k]
        if o.is_floating_point() != t.is_floating_point():
            raise QuantFileError(f"{path}: key {k!r} is {t.dtype}, the model holds {o.dtype} there (integer and "
                                 "float tensors never convert silently)")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            raise QuantFileError(f"{path}: key {k!r} has {n} non-finite values (NaN / Inf)")
    for name, info in layers.items():
        for suffix in ("weight_scale", "act_scale"):
            if suffix == "weight_scale" and is_block_packing(info.get("packing")):
                continue  # scale bytes, checked by block_storage.unpack_block_layer
            s = sd.get(f"{name}.{suffix}")
            if s is not None and not bool((s > 0).all()):
                raise QuantFileError(f"{path}: key {name}.{suffix!s} has scales <= 0 (min {float(s.min())!r}); "
                                     "scales must be finite and > 0")
        azp = sd.get(f"{name}.act_zero_point")
        if azp is not None and not bool((torch.isfinite(azp) & (azp == torch.round(azp))).all()):
            raise QuantFileError(f"{path}: key {name}.act_zero_point holds non-integer or non-finite values")
        zp = sd.get(f"{name}.weight_zero_point")
        if zp is not None and info["weight"] is not None:
            # min-max zero points are integers (qmin - round(min / s)); outside 0..qmax when a row does not
            # straddle zero (e.g. all-positive word_embed rows), so only integrality and finiteness are checked
            if not bool((torch.isfinite(zp) & (zp == torch.round(zp))).all()):
                raise QuantFileError(f"{path}: key {name}.weight_zero_point holds non-integer or non-finite values")


def load_quantized(path: str | os.PathLike, *, model: nn.Module | None = None, device: str | torch.device = "cpu",
                   vae: nn.Module | None = None, vae_path: str | os.PathLike | None = None,
                   expect_recipe: str | None = None) -> nn.Module:
    """A quantized VAR from ``path``: into ``model`` (a float VAR of the same config, modified in place) or a
    fresh model built from the file's config (VQVAE from ``vae`` / ``vae_path`` / the named model)."""
    from safetensors.torch import load_file


    path = Path(path)
    header = read_header(path)
    try:
        recipe = Recipe.from_dict(header["recipe"])
    except (ValueError, TypeError) as e:
        raise QuantFileError(f"{path}: header 'recipe' is invalid ({e})") from None
    if expect_recipe is not None and recipe.name != expect_recipe:
        raise QuantFileError(f"{path}: recipe is {recipe.name!r}, expected {expect_recipe!r}")
    try:
        cfg = VARConfig.from_dict(header["model_config"])
    except (ValueError, TypeError) as e:
        raise QuantFileError(f"{path}: header 'model_config' is invalid ({e})") from None
    if model is not None:
        diff = config_diff("model_config", cfg.to_dict(), model.config.to_dict())
        if diff:
            raise QuantFileError(f"{path}: does not match the model: " + "; ".join(diff))
        if is_quantized(model):
            raise QuantFileError(f"{path}: load_quantized needs a float model, the given one is already quantized")
        var = model
    else:
        v = _resolve_vae(path, header, vae, vae_path)
        if header["vae_config"] is not None:
            diff = config_diff("vae_config", header["vae_config"], v.config.to_dict())
            if diff:
                raise QuantFileError(f"{path}: the VQVAE does not match the file: " + "; ".join(diff))
        var = build_var(v, cfg)
    layers, operands = header["layers"], header["operands"]
    sites = model_sites(var)
    _check_against_recipe(path, recipe, sites, layers, operands)
    _install_structure(var, recipe, layers, path)
    try:
        sd = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise QuantFileError(f"{path}: tensors unreadable ({e})") from None
    own = var.state_dict()
    for name, info in layers.items():
        if info["weight"] is None:
            continue
        spec = _spec(info["weight"], path, f"layer {name!r} weight")
        if spec.block is not None or is_block_packing(info.get("packing")):  # MX / NVFP4: torchao's layout
            unpack_block_layer(path, sd, name, info, spec)
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
        _check_codes(path, key, sd[key], QuantSpec.from_dict(info["weight"]))
    derived = set()
    for k, t in own.items():  # buffers the model derives from its config, and recipe-defined rotations
        if k.rsplit(".", 1)[-1] in DERIVED_BUFFERS:  # always the model's own (version-1 files stored them)
            sd[k] = t
            derived.add(k)
        elif k not in sd and (k.rsplit(".", 1)[-1] in DERIVED_BUFFERS or k.endswith("rotation.Q_bb")):
            name = k[: -len(".rotation.Q_bb")] if k.endswith("rotation.Q_bb") else None
            if name is None or (layers.get(name, {}).get("rotation") or {}).get("derived"):
                sd[k] = t
                derived.add(k)
    _check_tensors(path, sd, own, layers, derived)
    try:
        check_state_dict(var, sd, str(path))
    except CheckpointError as e:
        raise QuantFileError(str(e)) from None
    var.load_state_dict(sd, strict=True)
    install_operand_quantizers(var, {n: QuantSpec.from_dict(d) for n, d in operands.items()})
    var.to(device).eval().requires_grad_(False)
    var.vae.to(device).eval()
    return var
