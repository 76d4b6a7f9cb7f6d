"""One function for every input transform of a linear site (design.md "Rotations as one function per site").

``transform_site_(var, "blocks.3.attn.mat_qkv", lam_C=..., Q=...)`` applies, with the function unchanged,

    x -> (x * lam) blockdiag(Q),    W -> (W / lam) blockdiag(Q)

at any linear site of the site table (``fpqvar.model.sites``: ``word_embed``, ``blocks.{i}.ada_lin``,
``blocks.{i}.attn.mat_qkv`` / ``.proj``, ``blocks.{i}.ffn.fc1`` / ``.fc2``, ``head_nm.ada_lin``, ``head``):

- ``lam`` (GALT, SmoothQuant with lam = 1/s) is folded at zero run-time cost into the modulation that produces
  the input when the site has one (``site.adaln``: ``mat_qkv`` and ``fc1`` into the block's ``ada_lin``, ``head``
  into ``head_nm.ada_lin``; ``fuse.py``); elsewhere (and for shared-AdaLN blocks, var-d36) it is multiplied
  online by an ``OnlineScale`` (a real kernel folds it into the activation quantizer);
- ``Q`` (GHT block b = 128, or a full rotation b = C) is absorbed into the weight and applied online by an
  ``OnlineRotation``;
- the weight update ``(W / lam) Q`` is one float64 computation, cast once.

When something must run online the linear is replaced by ``TransformedInput(linear, scale, rotation)``; its
``.linear`` is the original module. ``fpqvar.quant.quantize_`` accepts such a model: it turns each wrapper into a
``QuantLinear`` that keeps the online parts, so activation quantization sees the transformed input (as GHT
requires). The legacy block form ``transform_site_(block, "attn" | "ffn", ...)`` addresses a block's
``mat_qkv`` / ``fc1``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fpqvar.model.sites import BLOCK_LINEARS, model_sites, site_by_name
from fpqvar.transforms.fuse import (
    SITES,
    OnlineScale,
    _check_lam,
    adaln_fusable,
    fuse_input_scale_into_adaln,
    fuse_input_scale_into_modulation,
)
from fpqvar.transforms.hadamard import OnlineRotation, rotate_weight_in

__all__ = ["SITES", "TransformedInput", "site_module", "site_linear", "transform_site_", "set_module"]

_LEGACY = {"attn": BLOCK_LINEARS["mat_qkv"], "ffn": BLOCK_LINEARS["fc1"]}


class TransformedInput(nn.Module):
    """``linear(rotation(scale(x)))``: the online part of a site transform (either step may be None)."""

    def __init__(self, linear: nn.Module, scale: OnlineScale | None = None, rotation: OnlineRotation | None = None):
        super().__init__()
        self.scale = scale
        self.rotation = rotation
        self.linear = linear

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = self.scale(x)
        if self.rotation is not None:
            x = self.rotation(x)
        return self.linear(x)


def set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at ``path`` (``a.b.1``: Sequential children included)."""
    parent, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _resolve(root: nn.Module, site: str):
    """(module path relative to ``root``, fusion target or None, fusion allowed) for either call form."""
    if site in _LEGACY:  # legacy block form: root is one AdaLN block
        path = _LEGACY[site]
        return path, ("block", site) if adaln_fusable(root) else None
    if not hasattr(root, "blocks"):
        raise ValueError(f"transform_site_: on one block, site must be one of {sorted(_LEGACY)}, got {site!r}; on "
                         "the VAR, a linear site name such as 'blocks.0.attn.mat_qkv'")
    s = site_by_name(model_sites(root), site)
    if s.kind != "linear":
        raise ValueError(f"transform_site_: {site!r} is a {s.kind} site; input transforms apply to linear sites")
    fusion = None
    if s.adaln is not None:
        fusion = ("modulation", s.adaln)
    return s.module, fusion


def site_module(root: nn.Module, site: str) -> nn.Module:
    """The module at the site (the linear, or its ``TransformedInput`` wrapper)."""
    path, _ = _resolve(root, site)
    return root.get_submodule(path)


def site_linear(root: nn.Module, site: str) -> nn.Module:
    """The linear at the site, unwrapped from a ``TransformedInput``."""
    m = site_module(root, site)
    return m.linear if isinstance(m, TransformedInput) else m


@torch.no_grad()
def transform_site_(root: nn.Module, site: str, *, lam_C: torch.Tensor | None = None,
                    Q: torch.Tensor | None = None) -> bool:
    """Apply ``x -> (x lam) Q``, ``W -> (W / lam) Q`` at ``site`` in place; function-preserving.

    ``root``: the VAR (``site`` a linear site name of ``fpqvar.model.sites``) or, legacy, one block (``site``
    ``"attn"`` / ``"ffn"``). ``Q``: ``(b, b)`` rotation with b dividing the input width (GHT:
    ``block_hadamard_matrix()``; full: ``random_hadamard(C, seed)``). Returns True when lam was folded into a
    modulation Linear (or no lam given), False when it is multiplied online. A site is transformed once (a
    second call raises: compose lam / Q beforehand).
    """
    if lam_C is None and Q is None:
        return True
    path, fusion = _resolve(root, site)
    mod = root.get_submodule(path)
    if isinstance(mod, TransformedInput):
        raise ValueError(f"transform_site_: site {site!r} is already transformed (online parts: "
                         f"scale={mod.scale is not None}, rotation={mod.rotation is not None}); transform once")
    if not isinstance(mod, nn.Linear):
        raise ValueError(f"transform_site_: site {site!r} holds a {type(mod).__name__}, expected nn.Linear (is the "
                         "model already quantized?)")
    w = mod.weight
    C = int(w.shape[1])
    lam = None if lam_C is None else _check_lam(lam_C, C, "transform_site_")
    if Q is not None:
        new_w = rotate_weight_in(w, Q, lam_I=lam)
    else:
        new_w = (w.to(torch.float64) / lam.to(w.device).view(1, C)).to(w.dtype)
    fused = lam is None or fusion is not None
    if lam is not None and fusion is not None:
        if fusion[0] == "block":
            fuse_input_scale_into_adaln(root, fusion[1], lam)
        else:
            f = fusion[1]
            fuse_input_scale_into_modulation(root.get_submodule(f.module), C, f.scale_chunk, f.shift_chunk,
                                             f.num_chunks, lam)
    w.copy_(new_w)
    scale = None if fused else OnlineScale(lam.to(w.device))
    rotation = None if Q is None else OnlineRotation(Q, width=C).to(w.device)
    if scale is not None or rotation is not None:
        set_module(root, path, TransformedInput(mod, scale, rotation))
    return fused
