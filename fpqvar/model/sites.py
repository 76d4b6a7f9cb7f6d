"""The site table: every quantizable tensor of a VAR, in one place (issue 13; var-model.md sections 3.2-3.6).

A *site* is a tensor a quantization method may touch:

- ``kind="linear"``: an ``nn.Linear`` (its weight and its input activation): ``word_embed``, the per-block
  ``blocks.{i}.ada_lin`` (or the model-wide ``shared_ada_lin`` of var-d36), ``blocks.{i}.attn.mat_qkv``,
  ``blocks.{i}.attn.proj``, ``blocks.{i}.ffn.fc1``, ``blocks.{i}.ffn.fc2``, ``head_nm.ada_lin``, ``head``;
- ``kind="operand"``: an attention matmul operand: ``blocks.{i}.attn.q`` and ``.k`` (after the L2 norm,
  ``(B, H, L, c)``; k includes the cached keys), ``.v`` (``(B, H, L, c)``), ``.attn_map`` (the softmax output
  ``(B, H, Lq, Lk)``, the left operand of ``attn @ v``);
- ``kind="kv"``: ``blocks.{i}.attn.kv``, the cached K / V of earlier scales (fpqvar-method.md section 9).

Site names are what recipe rules match (fnmatch): ``blocks.*.ffn.fc2``, ``blocks.*.attn.[qk]``, ``head``.
``module`` is the module path (the ``nn.Linear`` itself for linears, e.g. ``blocks.3.ada_lin.1``; the
``SelfAttention`` for operands). ``adaln`` says where a per-channel input scale can be folded at no cost: the
inputs of ``mat_qkv`` / ``fc1`` are ``LN(x)(1 + scale) + shift`` with scale and shift rows of a per-block
``ada_lin`` (chunks scale1/shift1 and scale2/shift2 of 6), the input of ``head`` comes from ``head_nm.ada_lin``
(chunks scale/shift of 2). Shared-AdaLN blocks (var-d36) have no per-block ada_lin: ``adaln`` is None there.

Everything else in the code base that needs a site name or a role reads it from here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

__all__ = ["Site", "AdaLNFusion", "BLOCK_LINEARS", "ADALN_ROLES", "OPERAND_ROLES", "ROLES", "model_sites",
           "block_linear_names", "match_sites", "role_of", "site_by_name"]

# block-relative module paths of the four block GEMMs (upstream FPQVAR quantizes exactly these, section 3)
BLOCK_LINEARS = {"mat_qkv": "attn.mat_qkv", "proj": "attn.proj", "fc1": "ffn.fc1", "fc2": "ffn.fc2"}
# roles whose input is AdaLN-modulated (rotations and input scalings are defined there: method sections 7, 8)
ADALN_ROLES = ("mat_qkv", "fc1", "head")
OPERAND_ROLES = ("q", "k", "v", "attn_map")
ROLES = ("word_embed", "shared_ada_lin", "ada_lin", *BLOCK_LINEARS, *OPERAND_ROLES, "kv", "head_ada_lin", "head")

# (scale chunk, shift chunk) of ada_lin's 6 C-sized output chunks: gamma1, gamma2, scale1, scale2, shift1, shift2
_BLOCK_ADALN_CHUNKS = {"mat_qkv": (2, 4), "fc1": (3, 5)}


@dataclass(frozen=True)
class AdaLNFusion:
    """Where ``x * lam`` can be folded: rows ``[k C, (k+1) C)`` of the ada_lin Linear at ``module``."""

    module: str  # path of the nn.Linear whose output holds scale / shift
    scale_chunk: int
    shift_chunk: int
    num_chunks: int


@dataclass(frozen=True)
class Site:
    name: str
    kind: str  # "linear" | "operand" | "kv"
    role: str  # one of ROLES
    module: str
    block: int | None = None
    in_features: int | None = None
    out_features: int | None = None
    per_token: bool = True  # False: the input is the class condition, one row per image (ada_lin)
    adaln: AdaLNFusion | None = None

    @property
    def adaln_input(self) -> bool:
        return self.role in ADALN_ROLES


def block_linear_names(i: int) -> dict[str, str]:
    return {role: f"blocks.{i}.{path}" for role, path in BLOCK_LINEARS.items()}


def model_sites(var_or_config) -> tuple[Site, ...]:
    """The sites of a VAR (module or ``VARConfig``), in forward order."""
    cfg = getattr(var_or_config, "config", var_or_config)
    C, Cv, V, hidden = int(cfg.C), int(cfg.z_channels), int(cfg.vocab_size), int(cfg.mlp_hidden)
    shared = bool(cfg.shared_aln)
    out = [Site("word_embed", "linear", "word_embed", "word_embed", None, Cv, C)]
    if shared:
        out.append(Site("shared_ada_lin", "linear", "shared_ada_lin", "shared_ada_lin.1", None, C, 6 * C,
                        per_token=False))
    shapes = {"mat_qkv": (C, 3 * C), "proj": (C, C), "fc1": (C, hidden), "fc2": (hidden, C)}
    for i in range(int(cfg.depth)):
        names = block_linear_names(i)
        if not shared:
            out.append(Site(f"blocks.{i}.ada_lin", "linear", "ada_lin", f"blocks.{i}.ada_lin.1", i, C, 6 * C,
                            per_token=False))
        attn = f"blocks.{i}.attn"
        for role in ("mat_qkv",):
            out.append(_block_linear(i, role, names[role], shapes[role], shared))
        for role in OPERAND_ROLES:
            out.append(Site(f"{attn}.{role}", "operand", role, attn, i))
        out.append(Site(f"{attn}.kv", "kv", "kv", attn, i))
        for role in ("proj", "fc1", "fc2"):
            out.append(_block_linear(i, role, names[role], shapes[role], shared))
    out.append(Site("head_nm.ada_lin", "linear", "head_ada_lin", "head_nm.ada_lin.1", None, C, 2 * C,
                    per_token=False))
    out.append(Site("head", "linear", "head", "head", None, C, V, adaln=AdaLNFusion("head_nm.ada_lin.1", 0, 1, 2)))
    return tuple(out)


def _block_linear(i: int, role: str, name: str, shape: tuple[int, int], shared: bool) -> Site:
    fusion = None
    if role in _BLOCK_ADALN_CHUNKS and not shared:
        k_scale, k_shift = _BLOCK_ADALN_CHUNKS[role]
        fusion = AdaLNFusion(f"blocks.{i}.ada_lin.1", k_scale, k_shift, 6)
    return Site(name, "linear", role, name, i, shape[0], shape[1], adaln=fusion)


def role_of(name: str) -> str | None:
    """The role of a site name (``blocks.3.ffn.fc2`` -> ``fc2``, ``head_nm.ada_lin`` -> ``head_ada_lin``), or None."""
    top = {"word_embed": "word_embed", "shared_ada_lin": "shared_ada_lin", "head": "head",
           "head_nm.ada_lin": "head_ada_lin"}
    if name in top:
        return top[name]
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
        return None
    rest = ".".join(parts[2:])
    if rest == "ada_lin":
        return "ada_lin"
    for role, path in BLOCK_LINEARS.items():
        if rest == path:
            return role
    if parts[2] == "attn" and len(parts) == 4 and parts[3] in (*OPERAND_ROLES, "kv"):
        return parts[3]
    return None


def match_sites(sites, pattern: str, kinds: tuple[str, ...] | None = None) -> list[Site]:
    """Sites whose name matches the fnmatch ``pattern`` (optionally of the given kinds), in forward order."""
    return [s for s in sites if fnmatch.fnmatchcase(s.name, pattern) and (kinds is None or s.kind in kinds)]


def site_by_name(sites, name: str) -> Site:
    for s in sites:
        if s.name == name:
            return s
    raise ValueError(f"no site named {name!r}; sites look like 'blocks.0.attn.mat_qkv', 'head', "
                     f"'blocks.0.attn.q' ({len(sites)} sites)")
