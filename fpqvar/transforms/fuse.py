"""Zero-cost fusion of a per-channel input scale into AdaLN, and its inverse into the consuming linear.

A block feeds ``attn.mat_qkv`` with ``a = LN(x) (1 + scale1) + shift1`` and ``ffn.fc1`` with
``f = LN(x) (1 + scale2) + shift2`` (var-model.md section 3.3). For a per-channel ``lam`` (C,):

    a * lam = LN(x) (1 + scale') + shift',   scale' = lam (1 + scale) - 1,   shift' = lam shift

and scale / shift are rows of ``ada_lin``'s output, an affine function of the condition. So multiplying the
scale and shift row-blocks of ``ada_lin``'s weight and bias by ``lam`` and adding ``lam - 1`` to the scale bias
makes the block produce ``a * lam`` at no run-time cost (fpqvar-method.md section 8 "Fusion"); dividing the
linear's weight columns by ``lam`` (``W / lam``) restores the function: ``(a lam)(W / lam)^T = a W^T``.

ada_lin chunk order: gamma1, gamma2, scale1, scale2, shift1, shift2 -> site "attn" uses chunks 2 and 4, site
"ffn" chunks 3 and 5. Each update is computed in float64 and cast once (design.md).

Shared AdaLN (var-d36, ``cfg.shared_aln``): scale / shift are ``ada_gss + shared_ada_lin(cond)``, with one
``shared_ada_lin`` for all blocks, so a per-block lam cannot be folded into it.
:func:`fuse_input_scale_into_adaln` raises ``NotImplementedError`` there; callers multiply online instead
(``OnlineScale``, or ``sites.transform_site_`` which does it automatically).
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = [
    "SITES",
    "ADALN_CHUNKS",
    "adaln_fusable",
    "fuse_input_scale_into_adaln",
    "fuse_input_scale_into_modulation",
    "scale_linear_input_",
    "OnlineScale",
]

SITES = ("attn", "ffn")
# (scale chunk, shift chunk) of ada_lin's 6 C-sized output chunks per site (var-model.md section 3.3)
ADALN_CHUNKS = {"attn": (2, 4), "ffn": (3, 5)}


def _check_site(site: str) -> None:
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES} ('attn' = the mat_qkv input, 'ffn' = the fc1 input), "
                         f"got {site!r}")


def _check_lam(lam_C: torch.Tensor, C: int, what: str) -> torch.Tensor:
    lam = torch.as_tensor(lam_C)
    if lam.shape != (C,):
        raise ValueError(f"{what}: lam must have shape ({C},), got {tuple(lam.shape)}")
    lam64 = lam.detach().to(torch.float64)
    if not bool(torch.isfinite(lam64).all()) or bool((lam64 == 0).any()):
        raise ValueError(f"{what}: lam must be finite and non-zero (min |lam| = {lam64.abs().min().item():.3g})")
    return lam64


def adaln_fusable(block: nn.Module) -> bool:
    """Whether ``block`` has its own ``ada_lin`` (so an input scale can be folded into it)."""
    return not getattr(block, "shared_aln", False) and hasattr(block, "ada_lin")


@torch.no_grad()
def fuse_input_scale_into_adaln(block: nn.Module, site: str, lam_C: torch.Tensor) -> None:
    """Make ``block``'s AdaLN output at ``site`` equal to the old one times ``lam_C`` (in place).

    Raises ``NotImplementedError`` for shared-AdaLN blocks (see the module docstring): use ``OnlineScale``.
    The consuming linear is *not* changed: pair with :func:`scale_linear_input_` (or use
    ``sites.transform_site_``).
    """
    _check_site(site)
    if not adaln_fusable(block):
        raise NotImplementedError(
            f"fuse_input_scale_into_adaln: {type(block).__name__} uses the model-wide shared AdaLN (shared_aln, "
            f"var-d36): its scale/shift come from one shared_ada_lin for all blocks, so a per-block lam cannot be "
            f"folded in. Multiply the '{site}' input online instead (fpqvar.transforms.fuse.OnlineScale, or "
            f"fpqvar.transforms.sites.transform_site_ which does this automatically)."
        )
    C = int(block.C) if hasattr(block, "C") else int(block.ada_lin[-1].weight.shape[1])
    k_scale, k_shift = ADALN_CHUNKS[site]
    fuse_input_scale_into_modulation(block.ada_lin[-1], C, k_scale, k_shift, 6, lam_C)


@torch.no_grad()
def fuse_input_scale_into_modulation(lin: nn.Module, C: int, scale_chunk: int, shift_chunk: int, num_chunks: int,
                                     lam_C: torch.Tensor) -> None:
    """Fold ``x * lam`` into the modulation Linear ``lin`` whose output chunks hold ``scale`` and ``shift`` of
    ``LN(x)(1 + scale) + shift``: rows of the scale chunk and the shift chunk times lam, ``lam - 1`` added to the
    scale bias (a block's ada_lin: 6 chunks; ``head_nm.ada_lin``: 2 chunks, scale then shift)."""
    if lin.weight.shape[0] != num_chunks * C or lin.bias is None:
        raise ValueError(f"fuse_input_scale_into_modulation: the modulation must be Linear(., {num_chunks}C = "
                         f"{num_chunks * C}) with bias, got weight {tuple(lin.weight.shape)}, bias "
                         f"{'None' if lin.bias is None else tuple(lin.bias.shape)}")
    lam = _check_lam(lam_C, C, "fuse_input_scale_into_modulation").to(lin.weight.device)
    for k, add_lam_minus_1 in ((scale_chunk, True), (shift_chunk, False)):
        rows = slice(k * C, (k + 1) * C)
        w = lin.weight[rows].to(torch.float64) * lam.view(C, 1)
        b = lin.bias[rows].to(torch.float64) * lam
        if add_lam_minus_1:
            b = b + (lam - 1.0)  # scale' = lam (1 + scale) - 1 = lam scale + (lam - 1)
        lin.weight[rows] = w.to(lin.weight.dtype)
        lin.bias[rows] = b.to(lin.bias.dtype)


@torch.no_grad()
def scale_linear_input_(linear: nn.Module, lam_C: torch.Tensor) -> None:
    """``W <- W / lam`` column-wise (in place, float64, cast once), for an input that is multiplied by lam."""
    w = linear.weight
    if w.ndim != 2:
        raise ValueError(f"scale_linear_input_: weight must be 2-D (out, in), got shape {tuple(w.shape)}")
    lam = _check_lam(lam_C, w.shape[1], "scale_linear_input_").to(w.device)
    w.copy_((w.to(torch.float64) / lam.view(1, -1)).to(w.dtype))


class OnlineScale(nn.Module):
    """``x -> x * lam`` over the last dim, in the activation dtype (when AdaLN fusion is impossible)."""

    def __init__(self, lam_C: torch.Tensor):
        super().__init__()
        lam = torch.as_tensor(lam_C)
        if lam.ndim != 1:
            raise ValueError(f"OnlineScale: lam must be 1-D (C,), got shape {tuple(lam.shape)}")
        _check_lam(lam, int(lam.shape[0]), "OnlineScale")
        self.register_buffer("lam_C", lam.detach().to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lam_C.to(x.dtype)
