"""Human- and machine-readable views of the formats: value tables and quantization error on a seeded tensor.

Used by ``fpqvar formats`` and by the demo. Values that JSON cannot hold (NaN, +-Inf) are strings.
"""

from __future__ import annotations

import math

import torch

from fpqvar.formats.dfq import dfq_fake_quantize
from fpqvar.formats.grid import decode
from fpqvar.formats.quantizer import fake_quantize
from fpqvar.formats.spec import FORMATS, FloatFormat, Format, get_format

__all__ = ["format_summary", "block_format_summary", "value_table", "format_error_table", "sqnr_db"]


def _json_float(v: float) -> float | str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def format_summary(fmt: str | Format) -> dict:
    """Definition of one format (what the value table is derived from)."""
    f = get_format(fmt)
    if isinstance(f, FloatFormat):
        d = {"name": f.name, "kind": "float", "bits": f.bits, "ebits": f.ebits, "mbits": f.mbits,
             "bias": f.bias, "special": f.special, "min_subnormal": f.min_subnormal}
    else:
        d = {"name": f.name, "kind": "int", "bits": f.bits, "symmetric": f.symmetric, "qmin": f.qmin,
             "qmax": f.qmax}
    d["max_value"] = f.max_value
    d["num_values"] = int(len(f.grid))  # distinct finite values quantization can produce
    return d


def block_format_summary(name: str) -> dict:
    """Definition of one block-scaled format (MX / NVFP4, ``block_formats.py``); its element codes are the
    element format's value table."""
    from fpqvar.formats.block_formats import bits_per_value, get_block_format

    b = get_block_format(name)
    return {"name": b.name, "kind": "block", "element": b.element.name, "block_size": b.block_size,
            "block_scale": b.scale_kind, "tensor_scale": "float32" if b.tensor_scale else None,
            "bits_per_value": bits_per_value(b)}


def value_table(fmt: str | Format) -> list[dict]:
    """``[{code, bits, value}]``. Minifloats: every code (NaN / Inf codes included, as strings; -0 listed).
    INT grids: the codes of the grid values (two's complement; unused codes such as int4's -8 omitted)."""
    f = get_format(fmt)
    codes = torch.arange(1 << f.bits, dtype=torch.int64)
    vals = decode(codes, f).tolist()
    rows = []
    for c, v in zip(codes.tolist(), vals):
        if f.kind == "int" and not (f.qmin <= v <= f.qmax):
            continue
        rows.append({"code": c, "bits": format(c, f"0{f.bits}b"), "value": _json_float(v)})
    if f.kind == "int":
        rows.sort(key=lambda r: r["value"])
    return rows


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum x^2 / sum (x - x_hat)^2)`` in float64 (inf if exact)."""
    x64, e64 = x.double(), (x.double() - x_hat.double())
    noise = float((e64 * e64).sum())
    return math.inf if noise == 0 else 10.0 * math.log10(float((x64 * x64).sum()) / noise)


def format_error_table(seed: int = 0, shape: tuple[int, int] = (256, 1024), group_size: int = 128) -> list[dict]:
    """Quantization error of every named format (per group of ``group_size``, RNE) on a seeded standard
    normal tensor, and of DFQ (FP4 per group, FP6 per token) against E2M1 / E2M3 on a tanh-GELU output
    (the FC2 input DFQ is for). Rows: ``{format, input, granularity, bits, mse, sqnr_db}``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen)
    h = torch.nn.functional.gelu(torch.randn(*shape, generator=gen) * 2.0, approximate="tanh")
    rows = []

    def add(name: str, inp: str, gran: str, bits: int, ref: torch.Tensor, out: torch.Tensor) -> None:
        mse = float(((ref.double() - out.double()) ** 2).mean())
        rows.append({"format": name, "input": inp, "granularity": gran, "bits": bits, "mse": mse,
                     "sqnr_db": _json_float(sqnr_db(ref, out))})

    gran = f"group{group_size}"
    for name, f in FORMATS.items():
        if name == "neg32":  # one-sided grid: only meaningful inside DFQ-FP6
            continue
        add(name, "randn", gran, f.bits, x, fake_quantize(x, f, group_size=group_size))
    add("e2m1", "gelu", gran, 4, h, fake_quantize(h, "e2m1", group_size=group_size))
    add("dfq-fp4", "gelu", gran, 4, h, dfq_fake_quantize(h, group_size=group_size, variant="fp4"))
    add("e2m3", "gelu", "token", 6, h, fake_quantize(h, "e2m3", granularity="token"))
    add("dfq-fp6", "gelu", "token", 6, h, dfq_fake_quantize(h, group_size=None, variant="fp6"))
    return rows
