"""Recipes of the methods a user would pick instead of FPQVAR (issue 14, methods part): GPTQ, SVDQuant, PTQ4ARVG.

Each recipe's ``source`` names the repository and file its settings come from (facts: baseline-facts.md
sections 3-5) and its description says what could not be determined. The steps live in ``steps/gptq.py``,
``steps/svdquant.py``, ``steps/ptq4arvg.py``. An NVFP4 variant of SVDQuant is one more call of
:func:`svdquant_recipe` with the NVFP4 format name once ``fpqvar.formats`` has it.
"""

from __future__ import annotations

from fpqvar.quant.recipe import Recipe, Rule
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import GPTQ, SVDQuant

__all__ = ["peer_recipes", "gptq_variant", "svdquant_recipe", "SVDQUANT_SITES"]

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


def peer_recipes(named: dict[str, Recipe]) -> list[Recipe]:
    """``named``: the recipes built so far (the GPTQ variants extend them)."""
    int4_g64 = QuantSpec("int4", "group", 64)  # int4.yaml: sint4 groups of 64, W and dynamic A
    return [
        gptq_variant(named["fpqvar-w4a4"], "fpqvar-w4a4-gptq"),
        svdquant_recipe("svdquant-w4a4", int4_g64, int4_g64, "W4A4 (INT4: W groups of 64, A dynamic groups of 64)"),
    ]
