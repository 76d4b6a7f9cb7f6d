"""SVDQuant (Li et al., ICLR 2025): smoothing + a 16-bit low-rank branch, the residual quantized.

Facts (baseline-facts.md section 4): deepcompressor ``calib/smooth.py : get_smooth_scale``,
``calib/config/smooth.py : get_alpha_beta_pairs``, ``calib/lowrank.py : QuantLowRankCalibrator`` (read in the
fork yxxsjby007/deepcompressor_svdquant_reproduction, commit f4f84539, upstream layout), recipe
``examples/diffusion/configs/svdquant/__default__.yaml`` + ``int4.yaml``; inference nunchaku-tech/nunchaku
``nunchaku/models/linear.py : SVDQW4A4Linear``.

Per site, on the input as the quantizer sees it (after earlier scaling steps; no rotation may precede it):

- smoothing ``s_j = absmax(X_j)^alpha / absmax(W_:,j)^beta`` (``x / s``, ``W s``: lam = 1 / s, folded into AdaLN
  where the site has a modulation, else multiplied online as nunchaku does), the pair chosen among
  ``(0, 0)``, ``(alpha, 0)``, ``(alpha, 1 - alpha)`` for ``alpha`` in ``alphas`` by the layer-output error WITH
  the low-rank branch present (one SVD per candidate);
- low-rank branch of the smoothed weight ``W_s``: ``L = up @ down``, the rank-``rank`` truncated SVD of
  ``W_s - Q_prev`` (``Q_prev`` = 0 first, then the quantized residual), iterated up to ``lowrank_iters`` times
  for the chosen pair, keeping the iterate with the lowest output error and stopping when it stops improving;
  ``up = U_r S_r`` ``(O, r)``, ``down = V_r^T`` ``(r, I)`` stored in ``lowrank_dtype`` (16-bit);
- the residual ``R = W_s - up @ down`` (from the stored 16-bit factors) is what the weight quantizer rounds;
  the branch sees the smoothed, unquantized input: ``y = Q(x / s) Q(R)^T + (x / s) down^T up^T``.

Output error = mean squared error against the float layer over the pooled calibration rows, activations
quantized dynamically with the site's spec.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.config import ConfigError
from fpqvar.quant.steps.base import Transform, register_transform

__all__ = ["SVDQuant", "smooth_scale", "lowrank_split", "LOWRANK_DTYPES"]

_BLOCK_LINEARS = ("blocks.*.attn.mat_qkv", "blocks.*.attn.proj", "blocks.*.ffn.fc1", "blocks.*.ffn.fc2")
LOWRANK_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class SVDQuant(Transform):
    KIND = "svdquant"
    STAGE = "svdquant"
    NEEDS_CALIBRATION = True

    sites: tuple[str, ...] = _BLOCK_LINEARS
    rank: int = 32  # deepcompressor low_rank.rank, nunchaku default
    # deepcompressor searches alpha = k / 20 (fast.yaml: k / 10) for the pairs (alpha, 0), (alpha, 1 - alpha)
    alphas: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    lowrank_iters: int = 10  # deepcompressor: 100 with early stop
    lowrank_dtype: str = "float16"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ConfigError(f"SVDQuant.rank must be >= 1, got {self.rank!r}")
        if not self.alphas or any(not 0.0 < a < 1.0 for a in self.alphas):
            raise ConfigError(f"SVDQuant.alphas must be a non-empty list of values in (0, 1), got {self.alphas!r}")
        if self.lowrank_iters < 1:
            raise ConfigError(f"SVDQuant.lowrank_iters must be >= 1, got {self.lowrank_iters!r}")
        if self.lowrank_dtype not in LOWRANK_DTYPES:
            raise ConfigError(f"SVDQuant.lowrank_dtype must be one of {tuple(LOWRANK_DTYPES)}, got "
                              f"{self.lowrank_dtype!r}")

    def candidates(self) -> list[tuple[float, float]]:
        return [(0.0, 0.0)] + [(a, 0.0) for a in self.alphas] + [(a, 1.0 - a) for a in self.alphas]


def smooth_scale(absmax_x_C: torch.Tensor, absmax_w_C: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """``s = ax^alpha / aw^beta`` in float64; channels where it is not finite and > 0 get 1."""
    ax, aw = absmax_x_C.double(), absmax_w_C.double()
    s = ax.pow(alpha) / aw.pow(beta)
    return torch.where(torch.isfinite(s) & (s > 0), s, torch.ones_like(s))


def lowrank_split(w_OI: torch.Tensor, rank: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(up (O, r), down (r, I))`` in ``dtype``: the rank-``rank`` truncated SVD ``U_r S_r V_r^T`` of ``w_OI``.

    Computed in float64 from the eigendecomposition of the smaller Gram matrix (3x faster than a full SVD on CPU;
    the top singular pairs are well conditioned there), signs fixed so that each ``down`` row's largest entry is
    positive (deterministic output)."""
    O, I = w_OI.shape
    if rank >= min(O, I):
        raise ValueError(f"SVDQuant: rank {rank} must be below min(out, in) = {min(O, I)}")
    w = w_OI.double()
    if O >= I:
        lam, V = torch.linalg.eigh(w.T @ w)  # ascending
        V = V[:, -rank:].flip(1)
        down = V.T
        up = w @ V
    else:
        lam, U = torch.linalg.eigh(w @ w.T)
        U = U[:, -rank:].flip(1)
        S = lam[-rank:].flip(0).clamp_min(0).sqrt()
        up = U * S
        down = (U.T @ w) / torch.where(S > 0, S, torch.ones_like(S))[:, None]
    sign = torch.sign(down.gather(1, down.abs().argmax(dim=1, keepdim=True)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (up * sign.T).to(dtype), (down * sign).to(dtype)


def _fit(ws_OI, xs_NI, xq_NI, y_ref, wspec, rank, dtype, iters):
    """Best (error, up, down) over up to ``iters`` SVD / quantize alternations (early stop)."""
    from fpqvar.quant.report import fake_quant_weight

    best, q_prev = None, torch.zeros_like(ws_OI)
    for _ in range(iters):
        up, down = lowrank_split(ws_OI - q_prev, rank, dtype)
        L = up.double() @ down.double()
        r_q = fake_quant_weight((ws_OI - L).float(), wspec).double()
        y = xq_NI @ r_q.T + xs_NI @ L.T
        err = float((y - y_ref).pow(2).mean())
        if best is not None and err >= best[0]:
            break
        best, q_prev = (err, up, down), r_q
    return best


def _svdquant(cfg: SVDQuant, states, ctx) -> None:
    from fpqvar.quant.qlinear import quantize_activation, quantize_weight, weight_from_codes
    from fpqvar.quant.steps.gptq import site_layer_fn

    dtype = LOWRANK_DTYPES[cfg.lowrank_dtype]
    it = states
    if ctx.progress and len(states) > 1:
        from tqdm import tqdm

        it = tqdm(states, desc="SVDQuant", unit="layer", leave=False)
    for st in it:
        st._check_open("SVDQuant")
        if st.Q_bb is not None:
            raise ValueError(f"SVDQuant: {st.name} is rotated by an earlier step; SVDQuant's smoothing acts on the "
                             "unrotated input (put the rotation after it, or leave it out)")
        if not st.has_rows():
            raise ValueError(f"SVDQuant: {st.name} has no calibration rows")
        x = torch.cat(st.rows()).double()
        w = st.weight().double()
        y_ref = x @ w.T
        ax, aw = st.absmax_C(), w.abs().amax(dim=0)
        scored = []
        for alpha, beta in cfg.candidates():
            s = smooth_scale(ax, aw, alpha, beta)
            xs = x / s
            xq = xs if st.aspec is None else quantize_activation(xs.float(), st.aspec).double()
            err = _fit(w * s, xs, xq, y_ref, st.wspec, cfg.rank, dtype, 1)[0]
            scored.append((err, alpha, beta, s, xs, xq))
        err0, alpha, beta, s, xs, xq = min(scored, key=lambda t: t[0])  # ties: the earlier candidate
        err, up, down = _fit(w * s, xs, xq, y_ref, st.wspec, cfg.rank, dtype, cfg.lowrank_iters)
        st.multiply_lam(1.0 / s)
        st.lowrank = (up, down)
        r = st.weight_to_quantize()
        if st.wspec is not None:
            codes, scale, zp = quantize_weight(r, st.wspec)
            r = weight_from_codes(codes, scale, zp, st.wspec, torch.float32)
        st.info["svdquant"] = {"alpha": alpha, "beta": beta, "rank": cfg.rank, "output_mse": err,
                               "output_mse_one_svd": err0}
        st.info["lambda"] = f"svdquant alpha {alpha:g} beta {beta:g}"
        st.snapshot(cfg.STAGE, site_layer_fn(st, r, st.lowrank))


register_transform(SVDQuant, _svdquant)
