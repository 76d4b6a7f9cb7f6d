"""The named recipes: FPQVAR, its ablation, and the baselines as their authors run them (issue 13).

Every recipe's ``source`` names the repository and file its settings come from, and what could not be known.
Recipe classes live in ``recipe.py``; step configs in ``steps/``; site names in ``fpqvar.model.sites``.
"""

from __future__ import annotations

from pathlib import Path

from fpqvar.model.sites import BLOCK_LINEARS
from fpqvar.quant.baselines import baseline_recipes
from fpqvar.quant.recipe import RECIPE_VERSION, LayerRule, Recipe, Rule
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import GALT, GHT, FullHadamard

__all__ = ["RECIPE_VERSION", "QUANT_SITES", "ROTATED_SITES", "LayerRule", "Rule", "Recipe", "get_recipe",
           "load_recipe", "recipe_names", "RENAMED"]

# block-relative paths of the four block GEMMs (kept for callers of the version-1 API)
QUANT_SITES = tuple(BLOCK_LINEARS.values())
ROTATED_SITES = ("attn.mat_qkv", "ffn.fc1")

_BLOCK = tuple(BLOCK_LINEARS)  # roles mat_qkv, proj, fc1, fc2
_FC2 = "blocks.*.ffn.fc2"
_UP = "PKU-SEC-Lab/FPQVAR"


def _s(fmt: str, gran: str = "group", g: int | None = None, **kw) -> QuantSpec:
    return QuantSpec(fmt, gran, (g or 128) if gran == "group" else None, **kw)


_FP4 = _s("e2m1")  # E2M1 per group 128, W and A (fpqvar-method.md section 5)
_DFQ4 = _s("e2m1", dfq="fp4")  # section 6
_E2M3_CH, _E2M3_TOK = _s("e2m3", "channel"), _s("e2m3", "token")
_DFQ6 = _s("e2m3", "token", dfq="fp6")
_KV6 = _s("e2m3", "token")  # section 9: E2M3 per token per head (absmax over head_dim)


def _blocks(w: QuantSpec | None, a: QuantSpec | None) -> Rule:
    return Rule("blocks.*", w, a, roles=_BLOCK)


def _fpqvar(name: str, transforms, description: str, fc2_act=_DFQ4, w=_FP4, a=_FP4) -> Recipe:
    return Recipe(name, (Rule(_FC2, w, fc2_act), _blocks(w, a)), tuple(transforms), description,
                  source=f"{_UP}: run.sh (FP4 / FP6 configurations), quant_utils.py (formats, DFQ kernel), "
                         "rotate_utils/ (GHT), learnable_transformation/ (GALT)")


def _named() -> list[Recipe]:
    ght, galt = GHT(), GALT()
    r = [
        Recipe("fp16", (), description="no quantization (the float model, named as in the paper)"),
        # ---------------------------------------------------------------- FPQVAR and its ablation
        _fpqvar("fpqvar-w4a4", (ght, galt), "FPQVAR FP4: DFQ (fc2 input) + GHT + GALT, E2M1 per group 128"),
        _fpqvar("fpqvar-dfq", (), "FPQVAR ablation: FP4 baseline + DFQ on the fc2 input only (paper: IS 189.5)"),
        _fpqvar("fpqvar-dfq-ght", (ght,), "FPQVAR ablation: DFQ + GHT (128-block Hadamard; paper: IS 219.7)"),
        _fpqvar("fpqvar-dfq-fullht", (FullHadamard(),),
                "FPQVAR ablation: DFQ + full randomized Hadamard of width C (paper: IS 232.3)"),
        _fpqvar("fpqvar-w6a6", (ght,), "FPQVAR FP6: DFQ fp6 (fc2 input) + GHT, W E2M3 per channel, A E2M3 per token",
                fc2_act=_DFQ6, w=_E2M3_CH, a=_E2M3_TOK),
        # ---------------------------------------------------------------- FP baselines of the paper
        Recipe("fp4-rtn", (_blocks(_FP4, _FP4),), description="FP4 baseline: E2M1 per group 128, W and A",
               source=f"{_UP}: run.sh (FP4 without --rotate / --transform)"),
        Recipe("fp6-rtn", (_blocks(_E2M3_CH, _s("e3m2", "token")),),
               description="FP6 baseline: W E2M3 per channel, A E3M2 per token",
               source=f"{_UP}: run.sh; FP6 formats per the paper's summary (W-E2M3 / A-E3M2)"),
        # ---------------------------------------------------------------- strict INT (all four block linears)
        Recipe("int4-rtn-strict", (_blocks(_s("int4", "channel"), _s("int4", "token")),),
               description="INT4 RTN, strict: symmetric per-channel W and per-token A on all four block linears "
                           "(fc2 included)",
               source=f"this project: the symmetric, all-four-linears variant of {_UP}'s INT path (the pre-issue-13 "
                      "int*-rtn recipes)"),
        Recipe("int6-rtn-strict", (_blocks(_s("int6", "channel"), _s("int6", "token")),),
               description="INT6 RTN, strict: symmetric per-channel W and per-token A on all four block linears "
                           "(fc2 included)",
               source=f"this project: the symmetric, all-four-linears variant of {_UP}'s INT path (the pre-issue-13 "
                      "int*-rtn recipes)"),
    ]
    r += _baselines()
    r += _block_formats()
    out = {x.name: x for x in r}
    out.update({x.name: x for x in _peers(out)})
    for base in ("fpqvar-w4a4", "fpqvar-w6a6"):
        b = out[base]
        out[f"{base}-kv6"] = Recipe(f"{base}-kv6", (Rule("blocks.*.attn.kv", None, _KV6),) + b.rules,
                                    b.transforms, b.description + "; FP6 E2M3 KV cache of earlier scales",
                                    b.source + "; basic_var.py (--quant_kv --kv_bit 6)")
    return list(out.values())


def _baselines() -> list[Recipe]:
    return baseline_recipes()


def _block_formats() -> list[Recipe]:
    from fpqvar.quant.block_recipes import block_recipes  # MX / NVFP4 (issue 14)

    return block_recipes()


def _peers(named: dict[str, Recipe]) -> list[Recipe]:
    from fpqvar.quant.peers import peer_recipes

    return peer_recipes(named)


# old names -> what they became (a clear message instead of a silently different method)
RENAMED = {
    "litevar-int4": "litevar-w4a4",
    "litevar-int6": "litevar-w6a6",
    "smoothquant-int8": "smoothquant-w8a8",
    "quarot-fp4": "fpqvar-dfq-fullht (the ablation) or quarot-w4a4 (the peers' QuaRot)",
    "smoothquant-int4": "smoothquant-w6a6 (the lowest bit width PTQ4ARVG runs SmoothQuant at)",
}

_RECIPES: dict[str, Recipe] | None = None


def _recipes() -> dict[str, Recipe]:
    global _RECIPES  # built once, on first use (the baselines module imports the step configs)
    if _RECIPES is None:
        _RECIPES = {x.name: x for x in _named()}
    return _RECIPES


def recipe_names() -> list[str]:
    return list(_recipes())


def get_recipe(name: str) -> Recipe:
    try:
        return _recipes()[name]
    except KeyError:
        if name in RENAMED:
            raise ValueError(f"recipe {name!r} was renamed: use {RENAMED[name]}") from None
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(_recipes())}") from None


def load_recipe(name_or_path: str | Path | Recipe | dict) -> Recipe:
    """A named recipe, a Recipe, a dict, or a JSON file path (``--recipe path.json``)."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    if isinstance(name_or_path, dict):
        return Recipe.from_dict(name_or_path)
    s = str(name_or_path)
    if s in _recipes():
        return _recipes()[s]
    p = Path(s)
    if p.suffix == ".json" or p.is_file():
        return Recipe.from_file(p)
    return get_recipe(s)

