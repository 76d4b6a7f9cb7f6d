"""The generated units by name, and their deterministic Verilog export.

Every unit is a ``wiring.Component``; Verilog comes from ``amaranth.back.verilog.convert`` (Amaranth's builtin
Yosys) with ``emit_src=False`` so the text does not depend on the checkout path: the same bytes on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["UnitInfo", "UNITS", "unit_names", "build_unit", "unit_verilog"]


@dataclass(frozen=True)
class UnitInfo:
    name: str
    description: str
    factory: Callable
    clocked: bool
    category: str  # "multiplier", "quantizer", "pe", "scale", "fht", "tile" (rows of the area table)


def _fp4_mul(output="sign_magnitude"):
    from fpqvar.hw.rtl.fp4_mul import Fp4Mul
    return Fp4Mul(output)


def _dfq_mul():
    from fpqvar.hw.rtl.dfq_mul import DfqMul
    return DfqMul()


def _int4_mul():
    from fpqvar.hw.rtl.int4_mul import Int4Mul
    return Int4Mul()


def _int4_sym_mul():
    from fpqvar.hw.rtl.int4_sym_mul import Int4SymMul
    return Int4SymMul()


def _quant(fmt):
    from fpqvar.hw.rtl.quantizer import FpQuantizer
    return FpQuantizer(fmt, "rne")


def _quant_front(fmt):
    from fpqvar.hw.rtl.quant_front import QuantFrontEnd
    return QuantFrontEnd(fmt, "rne", lanes=16)


def _pe(kind):
    from fpqvar.hw.rtl.pe import DotProductPE
    return DotProductPE(kind, 128)


def _scale_acc(kind):
    from fpqvar.hw.datapath import accumulator_bits
    from fpqvar.hw.rtl.scale_acc import ScaleAccumulate
    d_bits = accumulator_bits("dfq_pos" if kind == "dfq" else kind)
    return ScaleAccumulate(d_bits, {"fp4": 2, "dfq": 3}[kind], bias=True)


def _tile():
    from fpqvar.hw.rtl.tile import GemmTile
    from fpqvar.hw.rtl.tile_model import TileConfig
    return GemmTile(TileConfig())


def _fht():
    from fpqvar.hw.rtl.fht import FhtUnit
    return FhtUnit(128, 8)


_LIST = [  # gemm_tile is not in synth.AREA_UNITS (its synthesis takes many minutes): `hw area --units gemm-tile`
    UnitInfo("int4_mul", "INT4 x INT4 -> int8, two's complement (baseline)", _int4_mul, False, "multiplier"),
    UnitInfo("int4_sym_mul", "symmetric INT4 (-7..7) sign-magnitude ROM multiplier (6-bit mag; fair baseline)",
             _int4_sym_mul, False, "multiplier"),
    UnitInfo("fp4_mul", "E2M1 x E2M1 LUT multiplier, sign-magnitude out (8-bit mag, units 1/4)",
             _fp4_mul, False, "multiplier"),
    UnitInfo("fp4_mul_twos", "E2M1 x E2M1 LUT multiplier, two's-complement out (anti-pattern, sec. 6)",
             lambda: _fp4_mul("twos_complement"), False, "multiplier"),
    UnitInfo("dfq_mul", "DFQ (E1M2-/E2M1+) x E2M1 LUT multiplier, sign-magnitude out (9-bit, units 1/8)",
             _dfq_mul, False, "multiplier"),
    UnitInfo("quant_e2m1", "E2M1 quantizer compare stage (6-bit fixed-point magnitude in, RNE)",
             lambda: _quant("e2m1"), False, "quantizer"),
    UnitInfo("quant_dfq", "DFQ quantizer compare stage (7-bit fixed-point magnitude in, RNE)",
             lambda: _quant("dfq"), False, "quantizer"),
    UnitInfo("quant_front_e2m1", "E2M1 quantizer front end, 16 float32/beat: absmax, scale (no divider), "
             "exact midpoint compare, 2-bank group buffer", lambda: _quant_front("e2m1"), True, "quantizer"),
    UnitInfo("quant_front_dfq", "DFQ quantizer front end, 16 float32/beat: two absmax / scales, both halves' "
             "compares", lambda: _quant_front("dfq"), True, "quantizer"),
    UnitInfo("pe_int4", "128-lane INT4 dot product, pipelined adder tree (15-bit out)",
             lambda: _pe("int4"), True, "pe"),
    UnitInfo("pe_int4_sym", "128-lane symmetric INT4 dot product, sign applied in the tree (14-bit out)",
             lambda: _pe("int4_sym"), True, "pe"),
    UnitInfo("pe_fp4", "128-lane FP4 dot product, sign applied in the pipelined tree (16-bit out)",
             lambda: _pe("fp4"), True, "pe"),
    UnitInfo("pe_dfq", "128-lane DFQ dot product, one pipelined tree per half (15-bit neg, 17-bit pos out)",
             lambda: _pe("dfq"), True, "pe"),
    UnitInfo("scale_acc_fp4", "per-group scale-and-accumulate, float32 (2 mul + 2 add, 4 stages), FP4 sums",
             lambda: _scale_acc("fp4"), True, "scale"),
    UnitInfo("scale_acc_dfq", "per-group scale-and-accumulate, float32, DFQ half sums (17-bit, units 1/8)",
             lambda: _scale_acc("dfq"), True, "scale"),
    UnitInfo("gemm_tile", "GEMM tile (TileConfig defaults): 4 FP4 PEs x 128 lanes, 4 scale-and-accumulate units, "
             "64x8-group activation buffer, AXI4-Stream ports", _tile, True, "tile"),
    UnitInfo("fht128", "128-point FHT, 8-bit in / 15-bit out, 7 registered butterfly stages",
             _fht, True, "fht"),
]
UNITS: dict[str, UnitInfo] = {u.name: u for u in _LIST}


def unit_names() -> list[str]:
    return list(UNITS)


def _info(name: str) -> UnitInfo:
    try:
        return UNITS[name]
    except KeyError:
        raise ValueError(f"unknown RTL unit {name!r}; known: {', '.join(UNITS)}") from None


def build_unit(name: str):
    """A fresh Amaranth component for ``name``."""
    return _info(name).factory()


def unit_verilog(name: str) -> str:
    """Verilog text of unit ``name``, top module named ``name`` (deterministic)."""
    from amaranth.back import verilog

    _info(name)
    return verilog.convert(build_unit(name), name=name, emit_src=False)
