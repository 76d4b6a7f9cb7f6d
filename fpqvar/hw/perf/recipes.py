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
"""

from __future__ import annotations

from dataclasses import dataclass

SCALE_BITS = 16  # one FP16 scale per group (fpqvar-method.md section 4: real-valued absmax scales)
LINEARS = ("qkv", "proj", "fc1")
FP16_GEMMS = ("ada_lin", "head_ada_lin", "head", "word_embed", "phi_conv", "attn_qk", "attn_av")


@dataclass(frozen=True)
class Placement:
    """Unit and widths of one GEMM: ``unit`` in {fmu, dfq, dsp}; ``precision`` the MAC type on that unit;
    bits per element include the amortised group scales."""

    unit: str
    precision: str
    weight_bits: float
    act_bits: float

    def __post_init__(self) -> None:
        if self.unit not in ("fmu", "dfq", "dsp"):
            raise ValueError(f"Placement.unit must be fmu, dfq or dsp, got {self.unit!r}")
        if self.precision not in ("e2m1", "dfq", "int8", "int4", "fp16"):
            raise ValueError(f"Placement.precision unknown: {self.precision!r}")


@dataclass(frozen=True)
class HWRecipe:
    name: str
    linear: Placement  # qkv, proj, fc1
    fc2: Placement
    fp16: Placement  # ada_lin, heads, word_embed, Phi, attention products
    ght_block: int | None
    quantize_acts: bool  # dynamic activation quantizers before the quantized GEMMs
    kv_bits: float = 16.0
    needs_fmu: bool = False
    description: str = ""

    def placement(self, op_name: str) -> Placement:
        if op_name in LINEARS:
            return self.linear
        if op_name == "fc2":
            return self.fc2
        if op_name in FP16_GEMMS:
            return self.fp16
        raise ValueError(f"HWRecipe {self.name!r}: no placement for GEMM {op_name!r}")


_FP16 = Placement("dsp", "fp16", 16, 16)
_G = 128


def _int(bits: int, fc2_int: bool) -> HWRecipe:
    # weights per output channel, activations per token: scale overhead negligible for K >= 1024
    p = Placement("dsp", f"int{bits}", bits, bits)
    name = f"int{bits}" + ("-fc2" if fc2_int else "")
    return HWRecipe(name, p, p if fc2_int else _FP16, _FP16, ght_block=None, quantize_acts=True,
                    description=f"W{bits}A{bits} INT on the DSP array (per-channel W, per-token A), fc2 "
                                + ("INT" if fc2_int else "FP16 (as the public INT baselines)"))


HW_RECIPES: dict[str, HWRecipe] = {
    "fpqvar-w4a4": HWRecipe(
        "fpqvar-w4a4",
        linear=Placement("fmu", "e2m1", 4 + SCALE_BITS / _G, 4 + SCALE_BITS / _G),
        fc2=Placement("dfq", "dfq", 4 + SCALE_BITS / _G, 4 + 2 * SCALE_BITS / _G),
        fp16=_FP16, ght_block=_G, quantize_acts=True, needs_fmu=True,
        description="FP4 E2M1 LUT GeMM (qkv, proj, fc1) + DFQ GeMM (fc2) + GHT; ada_lin, head, attention FP16"),
    "fp16": HWRecipe("fp16", _FP16, _FP16, _FP16, ght_block=None, quantize_acts=False,
                     description="FP16 everywhere on the DSP array"),
    "int8": _int(8, False),
    "int4": _int(4, False),
    "int8-fc2": _int(8, True),
    "int4-fc2": _int(4, True),
}


def get_hw_recipe(name: str) -> HWRecipe:
    try:
        return HW_RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown hardware recipe {name!r}; known: {', '.join(HW_RECIPES)}") from None
