"""What each quantization recipe means for the hardware: which unit runs each operator, at which bit-width.

Only what the analytical model can express: the GEMM engine and bit-widths of each GEMM, whether the GHT and
per-group activation quantizers exist, and the KV-cache width. Accuracy is not modelled here.

- ``fpqvar-w4a4`` (fpqvar-method.md sections 3, 5-7): qkv / proj / fc1 on the E2M1 LUT GeMM (W and A E2M1,
  one FP16 scale per 128-group), fc2 on the DFQ GeMM (two FP16 scales per activation group), GHT before qkv
  and fc1; ada_lin, word_embed, head, the attention products and the Phi conv stay FP16 (DSP array).
- ``int8`` / ``int4``: the integer baseline as the public INT baselines run it (upstream FPQVAR's INT path and
  LiteVAR leave fc2 in FP16, fpqvar-method.md section 14): qkv / proj / fc1 integer on the DSPs, per-token
  activation quantization, fc2 and the FP16 operators on the DSPs in FP16.
- ``int8-fc2`` / ``int4-fc2``: the same with fc2 integer too.
- ``fp16``: everything on the DSP array in FP16 (no quantizers).
- Quantization-recipe names (``fpqvar.quant.recipes``): ``fpqvar-w6a6`` (E2M3 / DFQ-FP6 are exact int8 values:
  DSP58 INT8 mode, + GHT), ``fp4-rtn`` (E2M1 on all four GEMMs), ``int4-rtn`` / ``int6-rtn`` (= int4 / int6 with
  fc2 FP16), ``*-strict`` (fc2 integer), ``litevar-w4a4`` / ``-w6a6`` (ada_lin / head / word_embed integer too,
  attention INT8), ``*-kv6`` (6-bit KV cache). Other names raise, listing the known ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SCALE_BITS = 16  # one FP16 scale per group (fpqvar-method.md section 4: real-valued absmax scales)
LINEARS = ("qkv", "proj", "fc1")
COND_GEMMS = ("ada_lin", "head_ada_lin", "head", "word_embed")  # FP16 in FPQVAR; LiteVAR quantizes them
ATTN_GEMMS = ("attn_qk", "attn_av")
FP16_GEMMS = (*COND_GEMMS, "phi_conv", *ATTN_GEMMS)
UNITS = ("fmu", "dfq", "dsp", "aie", "fmu+dsp")


@dataclass(frozen=True)
class Placement:
    """Unit and widths of one GEMM: ``unit`` in UNITS (``fmu+dsp``: columns split over the INT4 LUT array and the
    DSP array in proportion to their peaks); ``precision`` the MAC type; bits per element include the amortised
    group scales."""

    unit: str
    precision: str
    weight_bits: float
    act_bits: float

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"Placement.unit must be one of {UNITS}, got {self.unit!r}")
        if self.precision not in ("e2m1", "dfq", "int8", "int4", "fp16"):
            raise ValueError(f"Placement.precision unknown: {self.precision!r}")
        if self.unit in ("fmu", "dfq") and self.precision not in ("e2m1", "dfq", "int4"):
            raise ValueError(f"Placement: the LUT arrays run e2m1, dfq or int4, not {self.precision!r}")
        if self.unit == "aie" and self.precision != "int8":
            raise ValueError(f"Placement: the AI-Engine array runs int8 here, not {self.precision!r}")


@dataclass(frozen=True)
class HWRecipe:
    name: str
    linear: Placement  # qkv, proj, fc1
    fc2: Placement
    fp16: Placement  # Phi, and ada_lin / heads / word_embed / attention unless cond / attn say otherwise
    ght_block: int | None
    quantize_acts: bool  # dynamic activation quantizers before the quantized GEMMs
    kv_bits: float = 16.0
    needs_fmu: bool = False
    description: str = ""
    cond: Placement | None = None  # ada_lin, head_ada_lin, head, word_embed (None: fp16)
    attn: Placement | None = None  # attn_qk, attn_av (None: fp16)

    @property
    def needs_ghtu(self) -> bool:
        return self.ght_block is not None

    def placement(self, op_name: str) -> Placement:
        if op_name in LINEARS:
            return self.linear
        if op_name == "fc2":
            return self.fc2
        if op_name in COND_GEMMS and self.cond is not None:
            return self.cond
        if op_name in ATTN_GEMMS and self.attn is not None:
            return self.attn
        if op_name in FP16_GEMMS:
            return self.fp16
        raise ValueError(f"HWRecipe {self.name!r}: no placement for GEMM {op_name!r}")


_FP16 = Placement("dsp", "fp16", 16, 16)
_G = 128


def _int(bits: int, fc2_int: bool, name: str | None = None, cond: bool = False, attn8: bool = False) -> HWRecipe:
    """Integer on the DSP array: INT4 in the DSP58's packed 4-bit mode, 5..8 bits in its INT8 mode (a 6-bit
    integer is an int8 value). Weights per output channel, activations per token (scale overhead negligible)."""
    p = Placement("dsp", "int4" if bits <= 4 else "int8", bits, bits)
    name = name or f"int{bits}" + ("-fc2" if fc2_int else "")
    return HWRecipe(name, p, p if fc2_int else _FP16, _FP16, ght_block=None, quantize_acts=True,
                    cond=p if cond else None, attn=Placement("dsp", "int8", 8, 8) if attn8 else None,
                    description=f"W{bits}A{bits} INT on the DSP array (per-channel W, per-token A), fc2 "
                                + ("INT" if fc2_int else "FP16 (as the public INT baselines)")
                                + ("; ada_lin / head / word_embed INT too, attention INT8 (LiteVAR)" if cond else ""))


_E2M1 = Placement("fmu", "e2m1", 4 + SCALE_BITS / _G, 4 + SCALE_BITS / _G)
_DFQ = Placement("dfq", "dfq", 4 + SCALE_BITS / _G, 4 + 2 * SCALE_BITS / _G)
_W4A4 = HWRecipe("fpqvar-w4a4", linear=_E2M1, fc2=_DFQ, fp16=_FP16, ght_block=_G, quantize_acts=True, needs_fmu=True,
                 description="FP4 E2M1 LUT GeMM (qkv, proj, fc1) + DFQ GeMM (fc2) + GHT; ada_lin, head, attention FP16")
# FP6: E2M3 x 8 is an integer in [-60, 60] and the DFQ-FP6 negative side is the INT grid -32..0, so both are exact
# int8 values: the DSP58 INT8 mode runs them (per-channel W, per-token A: scale overhead negligible)
_FP6 = Placement("dsp", "int8", 6, 6)


HW_RECIPES: dict[str, HWRecipe] = {
    "fpqvar-w4a4": _W4A4,
    "fpqvar-w4a4-kv6": replace(_W4A4, name="fpqvar-w4a4-kv6", kv_bits=6.0,
                               description=_W4A4.description + "; FP6 KV cache"),
    "fpqvar-w6a6": HWRecipe("fpqvar-w6a6", _FP6, _FP6, _FP16, ght_block=_G, quantize_acts=True,
                            description="FP6 E2M3 (W per channel, A per token) + DFQ-FP6 fc2 on the DSP58 INT8 mode "
                                        "(exact int8 values) + GHT; ada_lin, head, attention FP16"),
    "fp4-rtn": HWRecipe("fp4-rtn", _E2M1, _E2M1, _FP16, ght_block=None, quantize_acts=True, needs_fmu=True,
                        description="FP4 E2M1 on all four block GEMMs (fc2 on the E2M1 array), no GHT"),
    "fp16": HWRecipe("fp16", _FP16, _FP16, _FP16, ght_block=None, quantize_acts=False,
                     description="FP16 everywhere on the DSP array"),
    "int8": _int(8, False),
    "int4": _int(4, False),
    "int8-fc2": _int(8, True),
    "int4-fc2": _int(4, True),
    "int4-rtn": _int(4, False, "int4-rtn"),
    "int6-rtn": _int(6, False, "int6-rtn"),
    "int4-rtn-strict": _int(4, True, "int4-rtn-strict"),
    "int6-rtn-strict": _int(6, True, "int6-rtn-strict"),
    "litevar-w4a4": _int(4, False, "litevar-w4a4", cond=True, attn8=True),
    "litevar-w6a6": _int(6, False, "litevar-w6a6", cond=True, attn8=True),
}
HW_RECIPES["fpqvar-w6a6-kv6"] = replace(HW_RECIPES["fpqvar-w6a6"], name="fpqvar-w6a6-kv6", kv_bits=6.0)


def get_hw_recipe(name: str) -> HWRecipe:
    """The hardware mapping of a quantization recipe name (or of a hardware-only name: int8, int4, int8-fc2,
    int4-fc2, fp16). Names without a mapping raise, listing the known ones."""
    try:
        return HW_RECIPES[name]
    except KeyError:
        raise ValueError(f"recipe {name!r} has no hardware mapping in fpqvar.hw.perf.recipes; known: "
                         f"{', '.join(HW_RECIPES)}") from None
