"""Recipes = rules + transforms (configs as data, torchao ``quantize_`` style; issue 13).

A :class:`Recipe` has

- ``rules``: :class:`Rule` (fnmatch ``pattern`` over the site names of ``fpqvar.model.sites``, optionally
  restricted to ``roles``; ``weight`` / ``act`` specs). For each site the FIRST matching rule wins; ``None``
  leaves that tensor in float. Rules may target any site: linears (``word_embed``, ``blocks.*.ada_lin``,
  ``blocks.*.attn.mat_qkv``, ``.proj``, ``blocks.*.ffn.fc1``, ``.fc2``, ``head_nm.ada_lin``, ``head``; weight and
  input activation), attention operands (``blocks.*.attn.q`` / ``.k`` / ``.v`` / ``.attn_map``; ``act`` only) and
  the KV cache (``blocks.*.attn.kv``; ``act`` only). ``quantize_`` refuses a rule that selects no site, and a
  group / block size that does not divide a selected linear's in_features unless the rule says
  ``skip_indivisible`` (then that site stays float).
- ``transforms``: an ordered list of step configs (``fpqvar.quant.steps``: GHT, FullHadamard, SmoothQuant, GALT,
  FormatSearch, ...), each applied by its registered handler.
- ``description`` and ``source`` (the repository and file a baseline follows, and what could not be known).

JSON layout version 2. Version-1 files (flags ``ght`` / ``full_hadamard`` / ``galt`` / ``smoothquant_alpha`` /
``kv`` / ``format_search``; rules over the four block linears only) are converted on load.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from fpqvar.config import ConfigError, StrictConfig, check_value
from fpqvar.model.sites import BLOCK_LINEARS, ROLES, role_of
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import GALT, GHT, FormatSearch, FullHadamard, SmoothQuant, Transform

RECIPE_VERSION = 2

__all__ = ["RECIPE_VERSION", "Rule", "LayerRule", "Recipe"]


@dataclass(frozen=True)
class Rule(StrictConfig):
    """``pattern`` (fnmatch on the site name, e.g. ``blocks.*.ffn.fc2``) [and ``roles``] -> weight / act specs."""

    pattern: str
    weight: QuantSpec | None = None
    act: QuantSpec | None = None
    roles: tuple[str, ...] | None = None  # restrict to these site roles (model/sites.py ROLES); None: any
    # True: a selected linear whose in_features is not a multiple of the specs' group / block size stays float
    # (e.g. word_embed, in_features = the VQVAE's Cvae, under a "every linear" MX rule); False: an error
    skip_indivisible: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.pattern:
            raise ConfigError("Rule.pattern must be a non-empty string")
        if self.roles is not None:
            bad = sorted(set(self.roles) - set(ROLES))
            if bad or not self.roles:
                raise ConfigError(f"Rule({self.pattern!r}).roles: unknown roles {bad} (known: {', '.join(ROLES)})")
        w, a = self.weight, self.act
        if w is not None:
            if w.granularity == "token":
                raise ConfigError(f"Rule({self.pattern!r}).weight.granularity 'token' is for activations; use "
                                  "'channel' (one scale per output row)")
            if w.dfq is not None or w.static:
                raise ConfigError(f"Rule({self.pattern!r}).weight: dfq / static apply to activations only")
        if a is not None:
            if a.granularity == "channel" and self.roles is not None and set(self.roles) != {"v"}:
                raise ConfigError(f"Rule({self.pattern!r}).act.granularity 'channel' is for weights and the "
                                  "attention V operand (one scale per channel across tokens); use 'token', "
                                  "'group' or 'tensor'")
            if a.range_search is not None and not a.static:
                raise ConfigError(f"Rule({self.pattern!r}).act: range_search={a.range_search!r} needs static "
                                  "scales (a dynamic activation's range is its own min / max)")
            if a.static and a.granularity not in ("tensor", "group"):
                raise ConfigError(f"Rule({self.pattern!r}).act: static scales need granularity 'tensor' or "
                                  f"'group', got {a.fmt!r} / {a.granularity!r}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        if not d["skip_indivisible"]:  # omitted at its default: existing recipes serialise as before
            del d["skip_indivisible"]
        return d

    def indivisible(self, site) -> bool:
        """Whether a linear ``site``'s in_features is not a multiple of a group size of this rule's specs."""
        n = getattr(site, "in_features", None)
        return n is not None and getattr(site, "kind", "linear") == "linear" and any(
            sp is not None and sp.granularity == "group" and n % sp.group_size for sp in (self.weight, self.act))

    def matches(self, site) -> bool:
        """``site``: a ``Site`` (name and role checked) or a name (pattern only)."""
        name = getattr(site, "name", site)
        if not fnmatch.fnmatchcase(name, self.pattern):
            return False
        return self.roles is None or getattr(site, "role", None) in self.roles or role_of(name) in self.roles


LayerRule = Rule  # the version-1 name


@dataclass(frozen=True)
class Recipe(StrictConfig):
    VERSION = RECIPE_VERSION

    name: str
    rules: tuple[Rule, ...] = ()
    transforms: tuple[Transform, ...] = ()
    description: str = ""
    source: str = ""
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name:
            raise ConfigError("Recipe.name must be a non-empty string")
        kinds = [t.KIND for t in self.transforms]
        if kinds.count("ght") + kinds.count("hadamard") > 1 and _overlap(self.transforms, ("ght", "hadamard")):
            raise ConfigError(f"Recipe({self.name!r}): two rotations select the same sites (one rotation per site)")

    # ------------------------------------------------------------------ rules
    def rule_for(self, site) -> Rule | None:
        """First rule matching ``site`` (a ``Site`` or a name); None: no rule, the site stays float."""
        for r in self.rules:
            if r.matches(site):
                return r
        return None

    def specs_for(self, site) -> tuple[QuantSpec | None, QuantSpec | None]:
        r = self.rule_for(site)
        if r is None or (r.skip_indivisible and r.indivisible(site)):
            return None, None
        return r.weight, r.act

    def transform(self, kind: str) -> Transform | None:
        """The first transform of ``kind`` (``"ght"``, ``"galt"``, ...), or None."""
        return next((t for t in self.transforms if t.KIND == kind), None)

    # ------------------------------------------------------------------ summaries used by reports / tables
    @property
    def rotation(self) -> str | None:
        return "ght" if self.transform("ght") else "full" if self.transform("hadamard") else None

    @property
    def ght(self) -> bool:
        return self.transform("ght") is not None

    @property
    def ght_block(self) -> int | None:
        t = self.transform("ght")
        return None if t is None else t.block

    @property
    def hadamard_seed(self) -> int | None:
        t = self.transform("ght") or self.transform("hadamard")
        return None if t is None else t.seed

    @property
    def galt(self):
        return self.transform("galt")

    @property
    def kv(self) -> QuantSpec | None:
        """The KV-cache spec of the first rule that selects ``blocks.*.attn.kv`` sites (None: float cache)."""
        for r in self.rules:
            if r.act is not None and fnmatch.fnmatchcase("blocks.0.attn.kv", r.pattern) and \
                    (r.roles is None or "kv" in r.roles):
                return r.act
        return None

    @property
    def needs_calibration(self) -> bool:
        static = any(r.act is not None and r.act.static for r in self.rules)
        return static or any(t.NEEDS_CALIBRATION for t in self.transforms)

    @property
    def quantizes_anything(self) -> bool:
        return any(r.weight is not None or r.act is not None for r in self.rules)

    # ------------------------------------------------------------------ serialisation
    @classmethod
    def upgrade(cls, d: dict, version: int) -> dict:
        if version != 1:
            return super().upgrade(d, version)
        return _upgrade_v1(d)

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"recipe file {p} not found")
        return cls.from_json(p.read_text(encoding="utf-8"), source=str(p))


def _overlap(transforms, kinds) -> bool:
    pats = [set(t.sites) for t in transforms if t.KIND in kinds]
    return any(a & b for i, a in enumerate(pats) for b in pats[i + 1:])


_V1_KEYS = {"name", "version", "description", "rules", "ght", "ght_block", "hadamard_seed", "full_hadamard", "galt",
            "smoothquant_alpha", "kv", "format_search", "format_candidates"}


def _upgrade_v1(d: dict) -> dict:
    """Version 1 (flags) -> version 2 (rules + transforms), with v1's strict types checked on the way."""
    name = d.get("name", "?")
    unknown = sorted(set(d) - _V1_KEYS)
    if unknown:
        raise ConfigError(f"Recipe({name!r}) version 1: unknown keys {unknown}")

    def get(key, tp, default):
        return check_value(d.get(key, default), tp, f"Recipe({name!r}).{key} (version 1)")

    rules = []
    kv = d.get("kv")
    if kv is not None:
        rules.append({"pattern": "blocks.*.attn.kv", "act": kv})
    for r in get("rules", list, []):
        if not isinstance(r, dict):
            raise ConfigError(f"Recipe({name!r}).rules (version 1): expected objects, got {r!r}")
        rules.append({**r, "roles": list(BLOCK_LINEARS)})  # v1 rules only ever reached the four block linears
    transforms = []
    seed = get("hadamard_seed", int, 42)
    if get("ght", bool, False):
        transforms.append(GHT(block=get("ght_block", int, 128), seed=seed))
    if get("full_hadamard", bool, False):
        transforms.append(FullHadamard(seed=seed))
    alpha = get("smoothquant_alpha", float | None, None)
    if alpha is not None:
        transforms.append(SmoothQuant(alpha=alpha))
    if d.get("galt") is not None:
        transforms.append(GALT(config=d["galt"]))
    if get("format_search", bool, False):
        cands = get("format_candidates", tuple[str, ...], ("e1m2", "e2m1", "e3m0"))
        transforms.append(FormatSearch(candidates=cands, objective="tensor_mse", joint=False, per="layer"))
    return {"name": name, "version": RECIPE_VERSION, "description": get("description", str, ""),
            "rules": rules, "transforms": [t.to_dict() for t in transforms]}
