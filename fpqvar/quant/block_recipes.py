"""Recipes in the block-scaled formats GPUs and torchao ship: OCP MX and NVIDIA NVFP4 (issue 14).

- ``mxfp4-rtn``, ``mxfp6-rtn`` (E2M3), ``mxfp8-rtn`` (E4M3), ``nvfp4-rtn``: weights and input activations in that
  format (blocks of 32 / 16 along in_features, round to nearest even, the OCP ``floor`` E8M0 rule; NVFP4 with
  a float32 tensor scale, dynamic per input tensor for activations) on the four block linears (mat_qkv, proj,
  fc1, fc2), no transform.
- ``<name>-all``: the same on every linear site (word_embed, ada_lin, the block linears, head_nm.ada_lin,
  head). A linear whose in_features is not a multiple of the block size stays float (``skip_indivisible``):
  word_embed's in_features is the VQVAE's Cvae (32 in the released VAR models: quantized there; the test
  models use 8: float).
- ``fpqvar-mxfp4`` / ``fpqvar-nvfp4``: FPQVAR's techniques on those numerics: GHT 128 + GALT on the AdaLN inputs
  (mat_qkv, fc1) and DFQ on the fc2 input with each side's scale in the format's scale type
  (``formats.block_dfq``: E8M0 powers of two per 32 for MXFP4, E4M3 x float32 tensor scale per 16 for NVFP4).
"""

from __future__ import annotations

from fpqvar.model.sites import BLOCK_LINEARS, OPERAND_ROLES, ROLES
from fpqvar.quant.recipe import Recipe, Rule
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import GALT, GHT

__all__ = ["block_recipes", "BLOCK_RTN_FORMATS", "LINEAR_ROLES"]

# recipe stem -> block format (docs/formats.md); MXFP6 / MXFP8 use the element the issue names (E2M3, E4M3)
BLOCK_RTN_FORMATS = {"mxfp4": "mxfp4", "mxfp6": "mxfp6_e2m3", "mxfp8": "mxfp8_e4m3", "nvfp4": "nvfp4"}
LINEAR_ROLES = tuple(r for r in ROLES if r not in (*OPERAND_ROLES, "kv"))  # every linear site's role
_BLOCK = tuple(BLOCK_LINEARS)
_SRC = ("OCP Microscaling Formats (MX) v1.0 (blocks of 32, E8M0 scales, section 6.3 floor rule); NVIDIA NVFP4 "
        "(E2M1 / 16, E4M3 block scale, float32 tensor scale); numerics bit-exact with torchao 0.18 "
        "torchao.prototype.mx_formats (tests/formats/test_block_torchao.py)")
_UP = "PKU-SEC-Lab/FPQVAR"


def _spec(fmt: str, **kw) -> QuantSpec:
    from fpqvar.formats import get_block_format

    return QuantSpec(fmt, "group", get_block_format(fmt).block_size, **kw)


def _rtn(stem: str) -> list[Recipe]:
    fmt = BLOCK_RTN_FORMATS[stem]
    s = _spec(fmt)
    b = s.block
    what = f"{b.element.name.upper()} per {b.block_size}, {b.scale_kind.upper()} block scales" + \
        (", float32 tensor scale (dynamic per input tensor for activations)" if b.tensor_scale else
         ", OCP floor rule")
    return [
        Recipe(f"{stem}-rtn", (Rule("blocks.*", s, s, roles=_BLOCK),),
               description=f"{fmt} RTN: W and A {what}, on the four block linears (mat_qkv, proj, fc1, fc2)",
               source=_SRC),
        Recipe(f"{stem}-rtn-all", (Rule("*", s, s, roles=LINEAR_ROLES, skip_indivisible=True),),
               description=f"{fmt} RTN on every linear (word_embed, ada_lin, the block linears, head_nm.ada_lin, "
                           f"head): W and A {what}. A linear whose in_features is not a multiple of "
                           f"{b.block_size} stays float (word_embed where the VQVAE's Cvae is not)",
               source=_SRC),
    ]


def _fpqvar(fmt: str) -> Recipe:
    s = _spec(fmt)
    dfq = _spec(fmt, dfq="fp4")
    b = s.block
    scale = "E8M0 (power of two)" if b.scale_kind == "e8m0" else "E4M3 x float32 tensor scale"
    return Recipe(
        f"fpqvar-{fmt}", (Rule("blocks.*.ffn.fc2", s, dfq), Rule("blocks.*", s, s, roles=_BLOCK)), (GHT(), GALT()),
        description=f"FPQVAR's techniques on {fmt} numerics: W and A {fmt} on the four block linears; the fc2 input "
                    f"with DFQ (E1M2 negatives / E2M1 positives) in blocks of {b.block_size}, each side's scale "
                    f"{scale} (fpqvar.formats.block_dfq); GHT 128 and GALT on the mat_qkv / fc1 inputs. GALT's loss "
                    "keeps FPQVAR's E2M1-per-128 (float32 scale) proxy quantizer, not the block format",
        source=f"{_UP}: run.sh, quant_utils.py (DFQ), rotate_utils/ (GHT), learnable_transformation/ (GALT); "
               + _SRC)


def block_recipes() -> list[Recipe]:
    out = []
    for stem in BLOCK_RTN_FORMATS:
        out += _rtn(stem)
    return out + [_fpqvar("mxfp4"), _fpqvar("nvfp4")]
