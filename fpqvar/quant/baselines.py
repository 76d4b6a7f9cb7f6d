"""Baselines as their authors run them (issue 13). Facts read from the authors' code; every recipe's ``source``
names the repository and file, and its description says what could not be determined.

- ``int4-rtn`` / ``int6-rtn``: upstream FPQVAR's INT script (``models_quant/quant_utils.py``): symmetric absmax
  per-output-channel weights, dynamic ASYMMETRIC per-token activations (``--act_sym`` defaults to false), on
  ``mat_qkv`` / ``proj`` / ``fc1`` only (the fc2 replacement is commented out; ada_lin is not replaced).
- ``litevar-w4a4`` / ``-w6a6``: LiteVAR (``models/quant_self_attention.py``, ``models/quantize_all_me.py``): every
  linear except fc2 (word_embed, each ada_lin, head_nm.ada_lin, head), per-output-channel asymmetric min-max
  weights, dynamic per-token asymmetric activations, attention at 8 bits: Q and K per (batch, head, token), V per
  (batch, head, channel) across tokens, the softmax map uint8 with the fixed scale 1/256.
- ``fp4-mixed`` / ``fp6-mixed``: upstream's MixedFormat search (``search/search_fp4_format.py``,
  ``search_fp6_format.py``): the (weight, activation) format pair chosen jointly by layer-output MSE, per block.
- ``quarot-w4a4``, ``smoothquant-w8a8`` / ``-w6a6``: the peers' baselines under PTQ4ARVG's protocol (its
  ``quant/quant_model.py``): every linear except word_embed, static per-tensor activations.
"""

from __future__ import annotations

from fpqvar.quant.recipe import Recipe, Rule
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import FormatSearch, FullHadamard, SmoothQuant

__all__ = ["baseline_recipes", "LITEVAR_ROLES", "PTQ4ARVG_ROLES", "UPSTREAM_INT_ROLES"]

_UP = "PKU-SEC-Lab/FPQVAR"
_LITE = "EkaterinaXie/LiteVAR"
_P4A = "BienLuky/PTQ4ARVG"

UPSTREAM_INT_ROLES = ("mat_qkv", "proj", "fc1")
# every linear except fc2 (shared_ada_lin is an Identity in d16..d30, a linear in d36)
LITEVAR_ROLES = ("word_embed", "shared_ada_lin", "ada_lin", "mat_qkv", "proj", "fc1", "head_ada_lin", "head")
# every linear except word_embed
PTQ4ARVG_ROLES = ("shared_ada_lin", "ada_lin", "mat_qkv", "proj", "fc1", "fc2", "head_ada_lin", "head")
_ADALN_INPUT_SITES = ("blocks.*.attn.mat_qkv", "blocks.*.ffn.fc1", "head")  # LN-followed inputs (SmoothQuant)
_BLOCK_SITES = ("blocks.*.attn.mat_qkv", "blocks.*.attn.proj", "blocks.*.ffn.fc1", "blocks.*.ffn.fc2")


def _ch(fmt: str) -> QuantSpec:
    return QuantSpec(fmt, "channel", None)


def _tok(fmt: str) -> QuantSpec:
    return QuantSpec(fmt, "token", None)


def _static_tensor(fmt: str) -> QuantSpec:
    return QuantSpec(fmt, "tensor", None, static=True)


def _int_rtn(bits: int) -> Recipe:
    return Recipe(
        f"int{bits}-rtn", (Rule("*", _ch(f"int{bits}"), _tok(f"uint{bits}"), roles=UPSTREAM_INT_ROLES),),
        description=f"INT{bits} RTN as upstream FPQVAR runs it: symmetric per-channel W, asymmetric per-token A "
                    "(dynamic), mat_qkv / proj / fc1 (fc2 and ada_lin stay float); paper row "
                    + ("W4A4 IS 64.6 / FID 38.60" if bits == 4 else "W6A6 IS 253.6 / FID 2.99"),
        source=f"{_UP}: evaluate_quantization.py (--act_sym false), models_quant/quant_utils.py quantize_VAR "
               "(fc2 replacement commented out)")


def _litevar(bits: int) -> Recipe:
    attn = "blocks.*.attn.*"
    rules = (
        Rule("*", _ch(f"uint{bits}"), _tok(f"uint{bits}"), roles=LITEVAR_ROLES),
        Rule(attn, None, _tok("uint8"), roles=("q", "k")),
        Rule(attn, None, QuantSpec("uint8", "channel", None), roles=("v",)),
        Rule(attn, None, QuantSpec("uint8", "tensor", None, fixed_scale=1.0 / 256), roles=("attn_map",)),
    )
    return Recipe(
        f"litevar-w{bits}a{bits}", rules,
        description=f"LiteVAR W{bits}A{bits}attn8: every linear but fc2 (word_embed, ada_lin, head included), "
                    "asymmetric per-channel W / dynamic per-token A; attention 8-bit: Q, K per (batch, head, token), "
                    "V per (batch, head, channel) across tokens, softmax map uint8 at scale 1/256. Differences: "
                    "min-max scales divide by 2^n - 1 with an integer zero point (LiteVAR: 2^n, float zero point); "
                    "V is quantized also at the first scale (LiteVAR skips a single-token V)",
        source=f"{_LITE}: models/quant_self_attention.py (replace_to_quantize_layer, QuantSelfAttention MODE 0), "
               "models/quantize_all_me.py (WeightPCQuantizer, ActPGDynamicQuantizer, ActStaticScaleQuantizer)")


def _mixed(name: str, candidates: tuple[str, ...], w: QuantSpec, a: QuantSpec, src: str, row: str) -> Recipe:
    search = FormatSearch(sites=_BLOCK_SITES + ("blocks.*.ada_lin",), candidates=candidates,
                          objective="output_mse", joint=True, per="block")
    return Recipe(
        name, (Rule("blocks.*", w, a, roles=("ada_lin", "mat_qkv", "proj", "fc1", "fc2")),), (search,),
        description=f"MixedFormat ({row}): the (W, A) format pair among {'/'.join(candidates)} chosen jointly per "
                    "block by layer-output MSE over calibration rows of every scale; ada_lin and the four block "
                    "linears quantized. Upstream's search also runs per layer type and its eval scripts do not load "
                    "the search results (the applied configuration cannot be known from the code)",
        source=f"{_UP}: {src}")


def _ptq4arvg_desc(method: str) -> str:
    return (f"{method} under PTQ4ARVG's protocol: every linear but word_embed, symmetric per-channel W, STATIC "
            "per-tensor A calibrated on the calibration set. Not in PTQ4ARVG's code (alpha, rotation placement and "
            "granularity cannot be known); differences: symmetric absmax scales (PTQ4ARVG's quantizer is asymmetric "
            "with percentile search), the attention matmuls stay float")


def _smoothquant(bits: int) -> Recipe:
    return Recipe(
        f"smoothquant-w{bits}a{bits}",
        (Rule("*", _ch(f"int{bits}"), _static_tensor(f"int{bits}"), roles=PTQ4ARVG_ROLES),),
        (SmoothQuant(sites=_ADALN_INPUT_SITES, alpha=0.5),),
        description=_ptq4arvg_desc("SmoothQuant (alpha 0.5 on the AdaLN-modulated inputs)"),
        source=f"{_P4A}: VAR/quant/quant_model.py (layers), VAR/quant/smooth.py (alpha 0.5); SmoothQuant "
               "(mit-han-lab/smoothquant) for the scale formula")


def _quarot() -> Recipe:
    return Recipe(
        "quarot-w4a4", (Rule("*", _ch("int4"), _static_tensor("int4"), roles=PTQ4ARVG_ROLES),),
        (FullHadamard(sites=_BLOCK_SITES),),
        description=_ptq4arvg_desc("QuaRot (online randomized Hadamard of the full width before each block "
                                   "linear; RTN weights, no GPTQ)"),
        source=f"{_P4A}: VAR/quant/quant_model.py (layers); QuaRot (spcl/QuaRot) for the rotation")


def baseline_recipes() -> list[Recipe]:
    fp6_w, fp6_a = _ch("e2m3"), _tok("e2m3")
    fp4 = QuantSpec("e2m1", "group", 128)
    return [
        _int_rtn(4), _int_rtn(6), _litevar(4), _litevar(6),
        _mixed("fp4-mixed", ("e1m2", "e2m1", "e3m0"), fp4, fp4, "search/search_fp4_format.py",
               "FP4, groups of 128"),
        _mixed("fp6-mixed", ("e2m3", "e3m2"), fp6_w, fp6_a, "search/search_fp6_format.py",
               "FP6 per channel / per token; paper IS 289.4 / FID 2.09"),
        _smoothquant(8), _smoothquant(6), _quarot(),
    ]
