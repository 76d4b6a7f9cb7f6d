"""Recipes of the methods a user would pick instead of FPQVAR (issue 14, methods part): GPTQ, SVDQuant, PTQ4ARVG.

Each recipe's ``source`` names the repository and file its settings come from (facts: baseline-facts.md
sections 3-5) and its description says what could not be determined. The steps live in ``steps/gptq.py``,
``steps/svdquant.py``, ``steps/ptq4arvg.py``. An NVFP4 variant of SVDQuant is one more call of
:func:`svdquant_recipe` with the NVFP4 format name once ``fpqvar.formats`` has it.
"""

from __future__ import annotations

from fpqvar.quant.recipe import Recipe, Rule
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import GPS, GPTQ, SmoothQuant, SVDQuant
from fpqvar.quant.steps.ptq4arvg import GPS_SITES

__all__ = ["peer_recipes", "gptq_variant", "svdquant_recipe", "ptq4arvg_recipe", "SVDQUANT_SITES"]

# deepcompressor skips embed, the AdaLN linears (transformer_norm) and proj_in / proj_out: on VAR that leaves the
# four block linears (word_embed, ada_lin, head_nm.ada_lin and head stay float)
SVDQUANT_SITES = ("blocks.*.attn.mat_qkv", "blocks.*.attn.proj", "blocks.*.ffn.fc1", "blocks.*.ffn.fc2")
_SVDQ_SRC = ("yxxsjby007/deepcompressor_svdquant_reproduction (commit f4f84539, upstream mit-han-lab/deepcompressor "
             "layout): examples/diffusion/configs/svdquant/__default__.yaml, int4.yaml, deepcompressor/calib/smooth.py "
             "get_smooth_scale, calib/lowrank.py QuantLowRankCalibrator; nunchaku-tech/nunchaku "
             "nunchaku/models/linear.py SVDQW4A4Linear (branch on the smoothed unquantized input)")


def svdquant_recipe(name: str, w: QuantSpec, a: QuantSpec, what: str, **step) -> Recipe:
    """SVDQuant on the four block linears with weight / activation specs ``w`` / ``a`` (an NVFP4 variant is
    ``svdquant_recipe("svdquant-nvfp4", nvfp4_spec, nvfp4_spec, "NVFP4 ...")``)."""
    t = SVDQuant(sites=SVDQUANT_SITES, **step)
    return Recipe(
        name, (Rule("blocks.*", w, a, roles=("mat_qkv", "proj", "fc1", "fc2")),), (t,),
        description=f"SVDQuant {what}: smoothing x / s (s = absmax(X)^alpha / absmax(W)^beta, pair chosen by layer "
                    f"output error among (0,0), (a,0), (a,1-a) for a in {{0.1..0.9}}), rank-{t.rank} "
                    f"{t.lowrank_dtype} low-rank branch of the smoothed weight (up to {t.lowrank_iters} SVD / "
                    "quantize alternations), residual quantized; the four block linears (word_embed, ada_lin, "
                    "head stay float: deepcompressor skips embeddings, AdaLN linears and proj_in / out), "
                    "attention and KV cache float. Differences / not determinable: smoothing folded into AdaLN "
                    "for mat_qkv / fc1 (online for proj / fc2, as nunchaku's kernel divides by smooth_factor); "
                    "alpha grid k/10 (deepcompressor k/20); scales stored float32 (nunchaku fp16); signed INT4 "
                    "is -7..7 here (sint4 -8..7); no VAR linear input is non-negative (GELU output dips to "
                    "-0.17), so unsigned activations never apply, and deepcompressor's shift_activations is not "
                    "implemented; its calibration sample count is unknown (the project's calibration is used)",
        source=_SVDQ_SRC)

_GPTQ_SRC = "IST-DASLab/gptq: gptq.py (GPTQ.fasterquant, commit 9f2abd32; damp 0.01, block 128)"


def gptq_variant(base: Recipe, name: str, sites: tuple[str, ...] | None = None) -> Recipe:
    """``base`` with GPTQ rounding the weights of ``sites`` (default: the four block linears) after its steps."""
    g = GPTQ() if sites is None else GPTQ(sites=sites)
    return Recipe(name, base.rules, base.transforms + (g,),
                  base.description + "; weights rounded by GPTQ (Hessian of the transformed calibration rows, "
                  "damp 0.01, block 128, group scales fixed by RTN beforehand = static_groups, no act-order)",
                  base.source + "; " + _GPTQ_SRC)


_P4A = "BienLuky/PTQ4ARVG"


def ptq4arvg_recipe(bits: int) -> Recipe:
    """PTQ4ARVG W{bits}A{bits} (quant_model.py layer set; quantizer.py; smooth.py + gps.py; STWQ)."""
    w = QuantSpec(f"uint{bits}", "channel", None, range_search="percentile")  # per output channel, asymmetric

    def a(sets):
        return QuantSpec(f"uint{bits}", "tensor", None, static=True, static_sets=sets, range_search="percentile")
    rules = (
        Rule("blocks.*", w, a("scale"), roles=("mat_qkv", "fc1")),  # after GPS: one set per scale (+ sink)
        Rule("blocks.*", w, a("sink"), roles=("proj", "fc2")),  # TokenAware, channel_wise False: sink + rest
        Rule("*", w, a(None), roles=("shared_ada_lin", "ada_lin", "head_ada_lin", "head")),  # plain per tensor
    )
    return Recipe(
        f"ptq4arvg-w{bits}a{bits}", rules, (SmoothQuant(sites=GPS_SITES, alpha=0.5), GPS(sites=GPS_SITES)),
        description=f"PTQ4ARVG W{bits}A{bits}: every linear but word_embed; W asymmetric per output channel "
                    "(range by its percentile search); A static asymmetric per tensor, token-wise (STWQ) on the "
                    "block linears: one "
                    "parameter set per scale for mat_qkv / fc1 (scale 0 = the sink token), sink + rest for proj / "
                    "fc2, one set for ada_lin / head; SmoothQuant (alpha 0.5) then GPS on mat_qkv / fc1 / head, "
                    "both folded into AdaLN. Calibrate with fpqvar.quant.dgc.dgc_calibrate for its DGC selection "
                    "(Mahalanobis share of conditional rows; fpqvar quantize --calib-select dgc). Weight and "
                    "activation ranges by its percentile search (p in .999/.9999/.99999, lowest MSE; activations "
                    "over the pooled calibration rows). "
                    "Not reproduced / not determinable: the EMA of the quantizer and GPS parameters over "
                    "calibration batches (rows pooled here); the channel shift to symmetric ranges folded into the "
                    "AdaLN "
                    "shift rows and biases (not implemented); sink_aware (token 0 unquantized during the first "
                    "stages); calibration without mask or KV cache (here the masked teacher-forced pass); the "
                    "attention matmuls and KV cache, which PTQ4ARVG quantizes static per tensor, stay float; "
                    "the exact DGC feature tensor (see dgc.py)",
        source=f"{_P4A}: VAR/quant/quant_model.py (layers), VAR/quant/quantizer.py (UniformQuantizer, "
               "TokenAwareUniformQuantizer), VAR/quant/smooth.py (SmoothModule, calculate_scales_hessian), "
               "VAR/quant/gps.py (absorb_gps_scaling_factor), VAR/sample_cali_dgc.py (DGC), VAR/sample_quant.py "
               "(order of the stages)")


def peer_recipes(named: dict[str, Recipe]) -> list[Recipe]:
    """``named``: the recipes built so far (the GPTQ variants extend them)."""
    int4_g64 = QuantSpec("int4", "group", 64)  # int4.yaml: sint4 groups of 64, W and dynamic A
    nvfp4 = QuantSpec("nvfp4", "group", 16)
    return [
        gptq_variant(named["fpqvar-w4a4"], "fpqvar-w4a4-gptq"),
        svdquant_recipe("svdquant-w4a4", int4_g64, int4_g64, "W4A4 (INT4: W groups of 64, A dynamic groups of 64)"),
        svdquant_recipe("svdquant-nvfp4", nvfp4, nvfp4, "NVFP4 (nunchaku's FP4 path: E2M1 per 16 with E4M3 block "
                        "scales, W and dynamic A; the float32 tensor scale per tensor as NVFP4 defines it)"),
        ptq4arvg_recipe(8), ptq4arvg_recipe(6),
    ]
