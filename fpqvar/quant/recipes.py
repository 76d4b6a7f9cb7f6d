"""Recipes: named, versioned, serialisable PTQ configurations (configs as data, torchao ``quantize_`` style).

A :class:`Recipe` is a tuple of :class:`LayerRule` (fnmatch pattern on the module name, weight spec, activation
spec; the first matching rule wins; ``None`` = leave that tensor in float) plus transform flags. Rules only ever
apply to the four quantizable linears of each block (``QUANT_SITES``, fpqvar-method.md section 3); every other
module (ada_lin, embeddings, head, LayerNorm, softmax, the attention matmuls, the VQVAE) stays float.

Transforms act on the two AdaLN-modulated inputs (``attn.mat_qkv`` and ``ffn.fc1``):

- ``ght``: block-diagonal randomized Hadamard (block ``ght_block`` = 128, seed ``hadamard_seed`` = 42, section 7);
- ``full_hadamard``: one randomized Hadamard of size C (QuaRot-style baseline, section 12);
- ``galt``: learned per-channel lambda (``transforms.galt.GALTConfig``, section 8), fused into ada_lin;
- ``smoothquant_alpha``: SmoothQuant scales (section 12), fused into ada_lin.

``kv``: fake-quantize the cached K/V of earlier scales per token and head (section 9). ``format_search``: pick
each quantized tensor's FP4 format among ``format_candidates`` by MSE on calibration data ("MixedFormat", 10).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

from fpqvar.quant.spec import QuantSpec, check_version

RECIPE_VERSION = 1

# The quantizable linears of block i (fpqvar-method.md section 3), as module-name suffixes.
QUANT_SITES = ("attn.mat_qkv", "attn.proj", "ffn.fc1", "ffn.fc2")
# Sites whose input is LN(x)(1 + scale) + shift: rotations and input scalings apply (sections 7, 8).
ROTATED_SITES = ("attn.mat_qkv", "ffn.fc1")

__all__ = ["RECIPE_VERSION", "QUANT_SITES", "ROTATED_SITES", "LayerRule", "Recipe", "get_recipe",
           "load_recipe", "recipe_names"]


@dataclass(frozen=True)
class LayerRule:
    """``pattern`` (fnmatch on the module name, e.g. ``blocks.*.ffn.fc2``) -> weight / activation specs."""

    pattern: str
    weight: QuantSpec | None = None
    act: QuantSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError(f"LayerRule.pattern must be a non-empty string, got {self.pattern!r}")
        for name in ("weight", "act"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, QuantSpec):
                raise ValueError(f"LayerRule({self.pattern!r}).{name} must be a QuantSpec or None, got "
                                 f"{type(v).__name__}")
        w, a = self.weight, self.act
        if w is not None:
            if w.granularity == "token":
                raise ValueError(f"LayerRule({self.pattern!r}).weight.granularity 'token' is for activations; "
                                 "use 'channel' (one scale per output row)")
            if w.dfq is not None or w.static:
                raise ValueError(f"LayerRule({self.pattern!r}).weight: dfq / static apply to activations only")
        if a is not None:
            if a.granularity == "channel":
                raise ValueError(f"LayerRule({self.pattern!r}).act.granularity 'channel' is for weights; use "
                                 "'token', 'group' or 'tensor'")
            if a.static and (a.granularity == "token" or a.asymmetric):
                raise ValueError(f"LayerRule({self.pattern!r}).act: static scales need a symmetric format and "
                                 f"granularity 'tensor' or 'group', got {a.fmt!r} / {a.granularity!r}")

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)

    def to_dict(self) -> dict:
        return {"pattern": self.pattern, "weight": None if self.weight is None else self.weight.to_dict(),
                "act": None if self.act is None else self.act.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerRule":
        if not isinstance(d, dict) or "pattern" not in d:
            raise ValueError(f"LayerRule.from_dict: expected a dict with 'pattern', got {d!r}")
        unknown = sorted(set(d) - {"pattern", "weight", "act"})
        if unknown:
            raise ValueError(f"LayerRule({d['pattern']!r}): unknown keys {unknown}")
        w, a = d.get("weight"), d.get("act")
        return cls(d["pattern"], None if w is None else QuantSpec.from_dict(w),
                   None if a is None else QuantSpec.from_dict(a))


def _galt_cls():
    from fpqvar.transforms.galt import GALTConfig

    return GALTConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    rules: tuple[LayerRule, ...] = ()
    ght: bool = False
    ght_block: int = 128
    hadamard_seed: int = 42
    full_hadamard: bool = False
    galt: object | None = None  # transforms.galt.GALTConfig
    smoothquant_alpha: float | None = None
    kv: QuantSpec | None = None
    format_search: bool = False
    format_candidates: tuple[str, ...] = ("e1m2", "e2m1", "e3m0")
    description: str = ""
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Recipe.name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "format_candidates", tuple(self.format_candidates))
        for i, r in enumerate(self.rules):
            if not isinstance(r, LayerRule):
                raise ValueError(f"Recipe({self.name!r}).rules[{i}] must be a LayerRule, got {type(r).__name__}")
        if self.ght and self.full_hadamard:
            raise ValueError(f"Recipe({self.name!r}): ght and full_hadamard are exclusive (one rotation per site)")
        if not isinstance(self.ght_block, int) or self.ght_block < 1 or self.ght_block & (self.ght_block - 1):
            raise ValueError(f"Recipe({self.name!r}).ght_block must be a power of two, got {self.ght_block!r}")
        if self.galt is not None and not isinstance(self.galt, _galt_cls()):
            raise ValueError(f"Recipe({self.name!r}).galt must be a GALTConfig or None, got "
                             f"{type(self.galt).__name__}")
        a = self.smoothquant_alpha
        if a is not None and not (isinstance(a, (int, float)) and 0.0 <= a <= 1.0):
            raise ValueError(f"Recipe({self.name!r}).smoothquant_alpha must be None or in [0, 1], got {a!r}")
        if a is not None and self.galt is not None:
            raise ValueError(f"Recipe({self.name!r}): smoothquant_alpha and galt both scale the qkv/fc1 inputs; "
                             "pick one")
        if self.kv is not None:
            if not isinstance(self.kv, QuantSpec):
                raise ValueError(f"Recipe({self.name!r}).kv must be a QuantSpec or None")
            if self.kv.dfq is not None or self.kv.static or self.kv.granularity == "channel":
                raise ValueError(f"Recipe({self.name!r}).kv: dynamic, non-DFQ, per token / group / tensor only")
        from fpqvar.formats import get_format

        for f in self.format_candidates:
            get_format(f)
        if self.format_search and len(self.format_candidates) < 2:
            raise ValueError(f"Recipe({self.name!r}).format_candidates needs >= 2 formats with format_search")
        if self.version != RECIPE_VERSION:
            raise ValueError(f"Recipe({self.name!r}).version must be {RECIPE_VERSION}, got {self.version!r}")

    # ------------------------------------------------------------------ rules
    def rule_for(self, name: str) -> LayerRule | None:
        """First rule whose pattern matches ``name`` (None: no rule, the layer stays float)."""
        for r in self.rules:
            if r.matches(name):
                return r
        return None

    def specs_for(self, name: str) -> tuple[QuantSpec | None, QuantSpec | None]:
        r = self.rule_for(name)
        return (None, None) if r is None else (r.weight, r.act)

    @property
    def rotation(self) -> str | None:
        return "ght" if self.ght else "full" if self.full_hadamard else None

    @property
    def needs_calibration(self) -> bool:
        static = any(r.act is not None and r.act.static for r in self.rules)
        return self.galt is not None or self.smoothquant_alpha is not None or self.format_search or static

    @property
    def quantizes_anything(self) -> bool:
        return any(r.weight is not None or r.act is not None for r in self.rules) or self.kv is not None

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {
            "name": self.name, "version": self.version, "description": self.description,
            "rules": [r.to_dict() for r in self.rules],
            "ght": self.ght, "ght_block": self.ght_block, "hadamard_seed": self.hadamard_seed,
            "full_hadamard": self.full_hadamard,
            "galt": None if self.galt is None else self.galt.to_dict(),
            "smoothquant_alpha": self.smoothquant_alpha,
            "kv": None if self.kv is None else self.kv.to_dict(),
            "format_search": self.format_search, "format_candidates": list(self.format_candidates),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        if not isinstance(d, dict):
            raise ValueError(f"Recipe.from_dict: expected a dict, got {type(d).__name__}")
        check_version("Recipe", d, RECIPE_VERSION)
        known = {"name", "version", "description", "rules", "ght", "ght_block", "hadamard_seed", "full_hadamard",
                 "galt", "smoothquant_alpha", "kv", "format_search", "format_candidates"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Recipe: unknown keys {unknown}")
        if "name" not in d:
            raise ValueError("Recipe: missing key 'name'")
        kw = {k: v for k, v in d.items() if k not in ("rules", "galt", "kv")}
        rules = d.get("rules", [])
        if not isinstance(rules, list):
            raise ValueError(f"Recipe({d['name']!r}).rules must be a list, got {type(rules).__name__}")
        kw["rules"] = tuple(LayerRule.from_dict(r) for r in rules)
        if d.get("galt") is not None:
            kw["galt"] = _galt_cls().from_dict(d["galt"])
        if d.get("kv") is not None:
            kw["kv"] = QuantSpec.from_dict(d["kv"])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> "Recipe":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}: not valid JSON ({e})") from None
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: {e}") from None


# ---------------------------------------------------------------------------------------------- named recipes
def _all(w: QuantSpec | None, a: QuantSpec | None) -> tuple[LayerRule, ...]:
    return (LayerRule("blocks.*", w, a),)


def _w(fmt: str, gran: str, g: int | None = None) -> QuantSpec:
    return QuantSpec(fmt, gran, g if gran == "group" else None)


_FP4_G = _w("e2m1", "group", 128)  # section 5: E2M1 per group of 128 for W and A
_DFQ4 = QuantSpec("e2m1", "group", 128, dfq="fp4")  # section 6
_E2M3_CH, _E2M3_TOK = _w("e2m3", "channel"), _w("e2m3", "token")
_DFQ6 = QuantSpec("e2m3", "token", None, dfq="fp6")
_KV6 = QuantSpec("e2m3", "token", None)  # section 9: E2M3 per token per head (absmax over head_dim)
_FC2 = "blocks.*.ffn.fc2"


def _int_rtn(bits: int) -> tuple[LayerRule, ...]:
    # Upstream's INT path: symmetric per-channel W, per-token A (section 10). All four linears here;
    # the litevar recipes reproduce the "fc2 left in float" variant.
    return _all(_w(f"int{bits}", "channel"), _w(f"int{bits}", "token"))


def _litevar(bits: int) -> tuple[LayerRule, ...]:
    # LiteVAR (section 11): asymmetric min-max per-channel W, dynamic per-token asymmetric A, fc2 skipped.
    return (LayerRule(_FC2, None, None),) + _all(_w(f"uint{bits}", "channel"), _w(f"uint{bits}", "token"))


def _named() -> dict[str, Recipe]:
    try:
        galt = _galt_cls()()
    except ImportError:  # transforms.galt not importable: the GALT recipes are reported missing, not faked
        galt = None
    r = [
        Recipe("fp16", (), description="no quantization (the float model, named as in the paper)"),
        Recipe("int4-rtn", _int_rtn(4), description="INT4 RTN: symmetric per-channel W, per-token A"),
        Recipe("int6-rtn", _int_rtn(6), description="INT6 RTN: symmetric per-channel W, per-token A"),
        Recipe("litevar-int4", _litevar(4), description="LiteVAR W4A4: asymmetric per-channel W / per-token A, "
                                                        "fc2 float"),
        Recipe("litevar-int6", _litevar(6), description="LiteVAR W6A6: asymmetric per-channel W / per-token A, "
                                                        "fc2 float"),
        Recipe("fp4-rtn", _all(_FP4_G, _FP4_G), description="FP4 baseline: E2M1 per group 128, W and A"),
        Recipe("fp6-rtn", _all(_E2M3_CH, _w("e3m2", "token")),
               description="FP6 baseline: W E2M3 per channel, A E3M2 per token"),
        Recipe("fp4-mixed", _all(_FP4_G, _FP4_G), format_search=True,
               description="FP4 MixedFormat: per-layer e1m2/e2m1/e3m0 for W and A by MSE, group 128"),
        Recipe("smoothquant-int8", _int_rtn(8), smoothquant_alpha=0.5,
               description="SmoothQuant W8A8 (alpha 0.5 at qkv/fc1), per-channel W, per-token A"),
        Recipe("smoothquant-int4", _int_rtn(4), smoothquant_alpha=0.5,
               description="SmoothQuant W4A4 (alpha 0.5 at qkv/fc1), per-channel W, per-token A"),
        Recipe("quarot-fp4", _all(_FP4_G, _FP4_G), full_hadamard=True,
               description="full randomized Hadamard at qkv/fc1 inputs + FP4 RTN"),
    ]
    if galt is not None:
        r.append(Recipe("fpqvar-w4a4", (LayerRule(_FC2, _FP4_G, _DFQ4),) + _all(_FP4_G, _FP4_G), ght=True,
                        galt=galt, description="FPQVAR FP4: DFQ (fc2 input) + GHT + GALT, E2M1 per group 128"))
    r += [
        Recipe("fpqvar-w6a6", (LayerRule(_FC2, _E2M3_CH, _DFQ6),) + _all(_E2M3_CH, _E2M3_TOK), ght=True,
               description="FPQVAR FP6: DFQ fp6 (fc2 input) + GHT, W E2M3 per channel, A E2M3 per token"),
    ]
    out = {x.name: x for x in r}
    for base in ("fpqvar-w4a4", "fpqvar-w6a6"):
        if base not in out:
            continue
        b = out[base]
        d = {**b.to_dict(), "name": f"{base}-kv6", "kv": _KV6.to_dict(),
             "description": b.description + "; FP6 E2M3 KV cache of earlier scales"}
        out[d["name"]] = Recipe.from_dict(d)
    return out


_RECIPES: dict[str, Recipe] | None = None


def _recipes() -> dict[str, Recipe]:
    global _RECIPES  # built lazily: GALTConfig lives in transforms
    if _RECIPES is not None:
        return _RECIPES
    named = _named()
    if "fpqvar-w4a4" in named:
        _RECIPES = named
    return named


def recipe_names() -> list[str]:
    return list(_recipes())


def get_recipe(name: str) -> Recipe:
    try:
        return _recipes()[name]
    except KeyError:
        if name.startswith("fpqvar-w4a4"):
            raise ValueError(f"recipe {name!r} needs fpqvar.transforms.galt (GALT), which is not importable") from None
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
        if not p.is_file():
            raise ValueError(f"recipe file {p} not found")
        return Recipe.from_json(p.read_text(encoding="utf-8"), source=str(p))
    return get_recipe(s)


def __getattr__(name: str):
    if name == "RECIPES":
        return dict(_recipes())
    raise AttributeError(name)
