"""One function per transform site (design.md "Rotations as one function per site").

A *site* is the input of a linear that an AdaLN-modulated activation feeds: ``"attn"`` = ``attn.mat_qkv``,
``"ffn"`` = ``ffn.fc1``. ``transform_site_(block, site, lam_C=..., Q=...)`` applies, with the function unchanged:

    x -> (x * lam) blockdiag(Q),    W -> (W / lam) blockdiag(Q)

- ``lam`` (GALT, SmoothQuant with lam = 1/s) is folded into ``ada_lin`` at zero run-time cost (``fuse.py``), or,
  for shared-AdaLN blocks (var-d36), multiplied online by an ``OnlineScale``;
- ``Q`` (GHT block b = 128, or full width b = C) is absorbed into the weight and applied online by an
  ``OnlineRotation``;
- the weight update ``(W / lam) Q`` is one float64 computation, cast once.

When something must run online, the linear is replaced by ``TransformedInput(linear, scale, rotation)``: its
``.linear`` is the original module, which quantization may replace afterwards (activation quantization then sees the
rotated input, as GHT requires). The state-dict keys of the linear move to ``<site>.linear.*``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fpqvar.transforms.fuse import (
    SITES,
    OnlineScale,
    _check_lam,
    _check_site,
    adaln_fusable,
    fuse_input_scale_into_adaln,
)
from fpqvar.transforms.hadamard import OnlineRotation, rotate_weight_in

__all__ = ["SITES", "TransformedInput", "site_module", "site_linear", "transform_site_"]

_SITE_PATH = {"attn": ("attn", "mat_qkv"), "ffn": ("ffn", "fc1")}


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = self.scale(x)
        if self.rotation is not None:
            x = self.rotation(x)
        return self.linear(x)


def site_module(block: nn.Module, site: str) -> nn.Module:
    """The module at the site (the linear, or its ``TransformedInput`` wrapper)."""
    _check_site(site)
    parent, name = _SITE_PATH[site]
    return getattr(getattr(block, parent), name)


def site_linear(block: nn.Module, site: str) -> nn.Module:
    """The linear at the site, unwrapped from a ``TransformedInput``."""
    m = site_module(block, site)
    return m.linear if isinstance(m, TransformedInput) else m


@torch.no_grad()
def transform_site_(block: nn.Module, site: str, *, lam_C: torch.Tensor | None = None,
                    Q: torch.Tensor | None = None) -> bool:
    """Apply ``x -> (x lam) Q``, ``W -> (W / lam) Q`` at ``site`` of ``block`` in place; function-preserving.

    ``Q``: ``(b, b)`` rotation with b dividing C (GHT: ``block_hadamard_matrix()``; full: ``random_hadamard(C, s)``).
    Returns True when lam was folded into ``ada_lin`` (or no lam given), False when it is multiplied online
    (shared AdaLN). A site can be transformed once (a second call raises: compose lam / Q beforehand).
    """
    if lam_C is None and Q is None:
        return True
    mod = site_module(block, site)
    if isinstance(mod, TransformedInput):
        raise ValueError(f"transform_site_: site {site!r} is already transformed (online parts: "
                         f"scale={mod.scale is not None}, rotation={mod.rotation is not None}); transform once")
    w = mod.weight
    C = int(w.shape[1])
    lam = None if lam_C is None else _check_lam(lam_C, C, "transform_site_")
    if Q is not None:
        new_w = rotate_weight_in(w, Q, lam_I=lam)
    else:
        new_w = (w.to(torch.float64) / lam.to(w.device).view(1, C)).to(w.dtype)
    fused = lam is None or adaln_fusable(block)
    if lam is not None and fused:
        fuse_input_scale_into_adaln(block, site, lam)
    w.copy_(new_w)
    scale = None if fused else OnlineScale(lam.to(w.device))
    rotation = None if Q is None else OnlineRotation(Q, width=C).to(w.device)
    if scale is not None or rotation is not None:
        parent, name = _SITE_PATH[site]
        setattr(getattr(block, parent), name, TransformedInput(mod, scale, rotation))
    return fused
