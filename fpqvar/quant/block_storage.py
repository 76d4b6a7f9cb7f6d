"""Packed-file storage of block-format (MX / NVFP4) weights: torchao's layout, recorded in the header (issue 14).

A layer whose weight spec is a block format (``QuantSpec.block``) is written with ``formats.pack_block``:

- ``<name>.weight_codes``: E2M1 two per byte, element ``2i`` in the low nibble (torchao ``float4_e2m1fn_x2``,
  ``(O, I / 2)``); FP6 four codes in three bytes (``pack_int6``, ``(O, 3 I / 4)``; torchao keeps FP6 one per
  byte); E4M3 one byte per value (``float8_e4m3fn`` bits, ``(O, I)``);
- ``<name>.weight_scale``: one byte per block, unswizzled ``(O, I / block)``: E8M0 biased exponents
  (``float8_e8m0fnu`` bits) for MX, E4M3 bits for NVFP4;
- ``<name>.weight_tensor_scale``: NVFP4's float32 per-tensor scale, 0-d, kept float32.

The header's layer entry says ``"packing": "torchao:<fmt>"`` and, under ``"storage"``, what each key holds.
The loader refuses, naming the key: wrong dtypes / shapes, element codes that decode to NaN (E4M3 0x7F / 0xFF),
E8M0 scale byte 255 (NaN), E4M3 scale bytes that are not finite and > 0, a tensor scale outside
``formats.block_scales.NVFP4_TENSOR_SCALE_RANGE``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fpqvar.formats import decode, pack_block, unpack_block
from fpqvar.formats.block_scales import check_nvfp4_tensor_scale
from fpqvar.quant.block_linear import block_quantized
from fpqvar.quant.spec import QuantSpec

__all__ = ["STORAGE_PREFIX", "is_block_packing", "block_packing", "storage_note", "pack_block_layer",
           "unpack_block_layer"]

STORAGE_PREFIX = "torchao:"
_E8M0_NAN = 255


def is_block_packing(packing) -> bool:
    return isinstance(packing, str) and packing.startswith(STORAGE_PREFIX)


def block_packing(spec: QuantSpec) -> str:
    return STORAGE_PREFIX + spec.fmt


def storage_note(spec: QuantSpec) -> dict:
    """What each stored tensor of a block-format layer holds (written into the header)."""
    b = spec.block
    bits = b.element_bits
    codes = {4: "E2M1 two per byte, element 2i in the low nibble (torchao float4_e2m1fn_x2)",
             6: f"{b.element.name.upper()} four codes in three bytes (fpqvar pack_int6; torchao keeps FP6 one per "
                "byte)",
             8: f"{b.element.name.upper()} one byte per value (torchao float8_e4m3fn bits)"}[bits]
    scale = "E8M0 biased exponent (torchao float8_e8m0fnu bits)" if b.scale_kind == "e8m0" else \
        "E4M3 bits (torchao float8_e4m3fn)"
    note = {"layout": "torchao.prototype.mx_formats (unswizzled scales)", "format": b.name,
            "block_size": b.block_size, "axis": "in_features", "weight_codes": codes,
            "weight_scale": f"{scale}, one byte per block of {b.block_size}, shape (O, I / {b.block_size})"}
    if b.scale_kind == "e8m0":
        note["scale_rule"] = spec.scale_rule
    if b.tensor_scale:
        note["weight_tensor_scale"] = "float32 per-tensor scale, 0-d"
    return note


def pack_block_layer(sd: dict, name: str, m) -> tuple[str, dict]:
    """Replace ``name``'s weight tensors in ``sd`` by their packed storage; ``(packing, storage note)``."""
    spec = m.weight_spec
    ts = sd.get(f"{name}.weight_tensor_scale")
    q = block_quantized(sd[f"{name}.weight_codes"].contiguous(), sd[f"{name}.weight_scale"].contiguous(), ts, spec)
    t = pack_block(q)
    sd[f"{name}.weight_codes"], sd[f"{name}.weight_scale"] = t["codes"], t["scales"]
    if "tensor_scale" in t:
        sd[f"{name}.weight_tensor_scale"] = t["tensor_scale"].to(torch.float32).reshape(())
    return block_packing(spec), storage_note(spec)


def _fail(path: Path, msg: str):
    from fpqvar.quant.export import QuantFileError

    raise QuantFileError(f"{path}: {msg}")


def unpack_block_layer(path: Path, sd: dict, name: str, info: dict, spec: QuantSpec) -> None:
    """Check and unpack ``name``'s stored weight in place (``sd[...weight_codes]`` becomes ``(O, I)`` codes)."""
    b = spec.block
    if b is None or info.get("packing") != block_packing(spec):
        _fail(path, f"layer {name!r}: packing {info.get('packing')!r} does not fit its weight spec {spec.short()} "
                    f"(expected {block_packing(spec) if b is not None else 'a plain code packing'})")
    O, I = int(info["out_features"]), int(info["in_features"])
    keys = {"codes": f"{name}.weight_codes", "scales": f"{name}.weight_scale"}
    if b.tensor_scale:
        keys["tensor_scale"] = f"{name}.weight_tensor_scale"
    for k in keys.values():
        if k not in sd:
            _fail(path, f"missing key {k!r}")
    bits = b.element_bits
    want = {"codes": (O, I // 2 if bits == 4 else 3 * I // 4 if bits == 6 else I), "scales": (O, I // b.block_size),
            "tensor_scale": ()}
    for role, k in keys.items():
        t = sd[k]
        dt = torch.float32 if role == "tensor_scale" else torch.uint8
        if t.dtype != dt or tuple(t.shape) != want[role]:
            _fail(path, f"key {k!r} has {t.dtype} {tuple(t.shape)}, expected {dt} {want[role]} ({b.name} storage "
                        f"of a ({O}, {I}) weight)")
    scales = sd[keys["scales"]]
    if b.scale_kind == "e8m0":
        bad = scales == _E8M0_NAN
        what = "E8M0 byte 255 (NaN)"
    else:
        v = decode(scales, "e4m3")
        bad = ~(torch.isfinite(v) & (v > 0))
        what = "E4M3 bytes that are not a finite scale > 0"
    if bool(bad.any()):
        i = int(bad.flatten().nonzero()[0])
        _fail(path, f"key {keys['scales']!r}: {int(bad.sum())} {what} (first: byte {int(scales.flatten()[i])})")
    if b.tensor_scale:
        try:
            check_nvfp4_tensor_scale(sd[keys["tensor_scale"]], torch.device("cpu"))
        except ValueError as e:
            _fail(path, f"key {keys['tensor_scale']!r}: {e}")
    q = unpack_block({"codes": sd[keys["codes"]], "scales": scales,
                      **({"tensor_scale": sd[keys["tensor_scale"]]} if b.tensor_scale else {})},
                     b, (O, I), axis=1, scale_rule=spec.scale_rule or "floor")
    vals = decode(q.codes, b.element)
    bad = ~torch.isfinite(vals)
    if bool(bad.any()):
        i = int(bad.flatten().nonzero()[0])
        _fail(path, f"key {keys['codes']!r}: code {int(q.codes.flatten()[i])} is a NaN code of {b.element.name}, not "
                    f"on the {b.name} element grid ({int(bad.sum())} such codes)")
    sd[keys["codes"]] = q.codes
