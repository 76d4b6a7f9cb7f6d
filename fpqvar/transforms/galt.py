"""GALT: GHT-Aware Learnable Transformation (fpqvar-method.md section 8).

Per block, one per-channel ``lam`` (C,) for the ``mat_qkv`` input and one for the ``fc1`` input, shared by all
scales (VAR's time steps), learned on the layer-output MSE with the GHT and FP4 quantization in the loop:

    L(lam) = mean( (X W^T - FP4q((X lam) Q) FP4q((W / lam) Q)^T)^2 )

FP4q = E2M1 fake quantization per group of 128 along the channels (dynamic absmax scales) with a straight-through
estimator (identity gradient); Q = ``blockdiag`` of the (b, b) GHT block. Then fused at zero run-time cost
(``fuse_galt``): ``lam`` into ``ada_lin``, ``1 / lam`` into the weight (``sites.transform_site_``).

Training (upstream defaults): lam initialised to 1 and used directly (no log-parameter); AdamW with lr 1e-2 and
torch's default weight decay 0.01 (upstream builds ``AdamW([lam], lr=lr)``); 50 epochs, each epoch one optimizer
step per scale tensor (500 updates for 10 scales). Our choices, each a config field:

- ``min_lam``: after every step lam is clamped to ``>= 1e-4`` (a projection; upstream has no guard, and a lam
  <= 0 would make ``W / lam`` blow up or flip signs);
- ``keep``: upstream's "best lam" variable aliases the live tensor, so it effectively keeps the *final* lam
  (``keep="final"``). ``keep="best"`` (default) evaluates the exact full loss (mean over scales, forward only)
  at lam = 1 and after every epoch and returns the lam with the lowest one, so GALT never ends worse than GHT
  alone on the calibration data; it costs one forward pass per epoch (about +1/3: training needs three GEMMs per
  step, the evaluation one);
- ``max_tokens_per_scale``: each scale's tokens are subsampled once (seeded by ``seed``) to this cap. Upstream
  uses all of them (680 tokens x 2 CFG rows x 100 samples = 136k rows per layer for d30), far too slow on a CPU;
- ``grad_dtype``: the loss (forward GEMM and the reference ``X W^T``) is float32; the two backward GEMMs of the
  quantized product may run in bfloat16 (about 2-3.5x faster than float32 on an AVX512-BF16 CPU, 350x *slower*
  on an AVX2-only one: environment.md section 0). ``"auto"`` (default) uses bfloat16 only where the kernel
  selector measured a bfloat16 GEMM faster than float32 on this device (``fpqvar.kernels``, operation
  ``galt_grad``; the choice is in every report); ``"float32"`` / ``"bfloat16"`` force one. Those gradients are
  already a straight-through approximation; the loss value and the kept lam do not depend on it except through
  the optimizer's path.

Memory: the float32 references ``X W^T`` of all scales are kept (``sum_s N_s x O x 4`` bytes: 630 MB for d30
fc1 at the 2048 cap).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn

from fpqvar import kernels
from fpqvar.formats import fake_quantize, get_format
from fpqvar.formats.grid import ROUNDINGS
from fpqvar.transforms.sites import transform_site_

__all__ = [
    "GALT_CONFIG_VERSION",
    "GALTConfig",
    "ste_fake_quantize",
    "galt_full_loss",
    "learn_galt_lambda",
    "fuse_galt",
]

GALT_CONFIG_VERSION = 1
_KEEPS = ("best", "final")
_GRAD_DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class GALTConfig:
    """GALT training hyper-parameters (upstream defaults for VAR-d30 FP4; lr 2e-3 for d36 / 512px)."""

    lr: float = 1e-2
    epochs: int = 50
    fmt: str = "e2m1"
    group_size: int = 128
    block: int = 128  # GHT block size the lam is trained with (= the Q passed in; C for a full Hadamard)
    seed: int = 0  # token subsampling
    keep: str = "best"
    max_tokens_per_scale: int | None = 2048
    weight_decay: float = 0.01
    min_lam: float = 1e-4
    rounding: str = "rne"
    grad_dtype: str = "auto"
    version: int = GALT_CONFIG_VERSION

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"GALTConfig.{name} {why}, got {getattr(self, name)!r}")

        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "must be a finite float > 0")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise bad("epochs", "must be an int >= 0")
        try:
            get_format(self.fmt)
        except Exception as e:  # noqa: BLE001 - re-raised with the field name
            raise bad("fmt", f"must be a format name ({e})") from None
        for name in ("group_size", "block"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be an int >= 1")
        if not isinstance(self.seed, int):
            raise bad("seed", "must be an int")
        if self.keep not in _KEEPS:
            raise bad("keep", f"must be one of {_KEEPS}")
        if self.max_tokens_per_scale is not None and (not isinstance(self.max_tokens_per_scale, int)
                                                      or self.max_tokens_per_scale < 1):
            raise bad("max_tokens_per_scale", "must be None or an int >= 1")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise bad("weight_decay", "must be >= 0")
        if not (isinstance(self.min_lam, (int, float)) and self.min_lam > 0):
            raise bad("min_lam", "must be > 0")
        if self.rounding not in ROUNDINGS:
            raise bad("rounding", f"must be one of {ROUNDINGS}")
        if self.grad_dtype not in _GRAD_DTYPES:
            raise bad("grad_dtype", f"must be one of {tuple(_GRAD_DTYPES)}")
        if self.version != GALT_CONFIG_VERSION:
            raise bad("version", f"must be {GALT_CONFIG_VERSION}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GALTConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"GALTConfig.from_dict: unknown keys {sorted(unknown)}")
        return cls(**d)


class _STEFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fmt, group_size, rounding):
        return fake_quantize(x, fmt, group_size=group_size, dim=-1, rounding=rounding)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


def ste_fake_quantize(x: torch.Tensor, fmt: str = "e2m1", group_size: int | None = 128,
                      rounding: str = "rne") -> torch.Tensor:
    """Fake quantization (groups along the last dim) with a straight-through gradient.

    Same value as ``x + (fq(x) - x).detach()`` but bit-exactly ``fq(x)`` in the forward (the sum form can be off by
    one rounding); the gradient is the identity.
    """
    return _STEFakeQuant.apply(x, fmt, group_size, rounding)


def _rotate(x_NC: torch.Tensor, Q_bb: torch.Tensor) -> torch.Tensor:
    """``x @ blockdiag(Q_bb, ...)`` (the same ops as ``OnlineRotation``)."""
    N, C = x_NC.shape
    b = Q_bb.shape[0]
    return (x_NC.reshape(N, C // b, b) @ Q_bb).reshape(N, C)


def _fq(t: torch.Tensor, cfg: GALTConfig) -> torch.Tensor:
    return fake_quantize(t, cfg.fmt, group_size=cfg.group_size, dim=-1, rounding=cfg.rounding)


def _site_loss(x_NC, y_NO, w_OC, lam_C, Q_bb, cfg: GALTConfig) -> torch.Tensor:
    """The GALT loss from its definition, float32: ``mean((y - FP4q((x lam) Q) FP4q((W / lam) Q)^T)^2)``."""
    xq = _fq(_rotate(x_NC * lam_C, Q_bb), cfg)
    wq = _fq(_rotate(w_OC / lam_C, Q_bb), cfg)
    return (y_NO - xq @ wq.T).square().mean()


class _SiteLoss(torch.autograd.Function):
    """``_site_loss`` (same forward ops, bit for bit) with a hand-written STE backward for ``lam``.

    With R = y - xq wq^T, G = dL/d(xq wq^T) = -2 R / (N O), the STE passes ``G wq`` to ``(x lam) Q`` and ``G^T xq``
    to ``(W / lam) Q``; rotating back by ``Q^T`` and through the per-channel products:

        dL/dlam_j = sum_n x_nj (G wq Q^T)_nj - sum_o w_oj / lam_j^2 (G^T xq Q^T)_oj.

    The two big GEMMs run in ``grad_dtype``; autograd on the definition would also materialise the square /
    subtraction / division gradients as full (N, O) and (O, C) temporaries, which cost ~30% of a step on CPU.
    """

    @staticmethod
    def forward(ctx, lam_C, x_NC, y_NO, w_OC, Q_bb, cfg, grad_dtype):
        xq = _fq(_rotate(x_NC * lam_C, Q_bb), cfg)
        wq = _fq(_rotate(w_OC / lam_C, Q_bb), cfg)
        r = y_NO - xq @ wq.T
        loss = r.square().mean()
        ctx.save_for_backward(lam_C, x_NC, w_OC, Q_bb, xq, wq, r)
        ctx.grad_dtype = grad_dtype
        return loss

    @staticmethod
    def backward(ctx, g_loss):
        lam, x, w, Q, xq, wq, r = ctx.saved_tensors
        dt = ctx.grad_dtype
        G = r.mul_(g_loss * (-2.0 / r.numel())).to(dt)  # r is not needed afterwards: scale in place
        g_xr = (G @ wq.to(dt)).to(torch.float32)  # (N, C): STE, dL/d((x lam) Q)
        g_wr = (G.T @ xq.to(dt)).to(torch.float32)  # (O, C): STE, dL/d((W / lam) Q)
        Qt = Q.T
        g_lam = (_rotate(g_xr, Qt) * x).sum(0) - (_rotate(g_wr, Qt) * w).sum(0) / lam.square()
        return g_lam, None, None, None, None, None, None


def _prepare(x_per_scale, w_OI: torch.Tensor, Q_block: torch.Tensor, cfg: GALTConfig):
    """Validated float32 weight, rotation, and per-scale (x, X W^T) pairs after the seeded token subsampling."""
    if w_OI.ndim != 2:
        raise ValueError(f"GALT: w_OI must be 2-D (out, in), got shape {tuple(w_OI.shape)}")
    O, C = w_OI.shape
    if Q_block.ndim != 2 or Q_block.shape[0] != Q_block.shape[1] or Q_block.shape[0] != cfg.block:
        raise ValueError(f"GALT: Q_block must be ({cfg.block}, {cfg.block}) (GALTConfig.block), "
                         f"got shape {tuple(Q_block.shape)}")
    if C % cfg.block or C % cfg.group_size:
        raise ValueError(f"GALT: block {cfg.block} and group_size {cfg.group_size} must divide C={C}")
    if len(x_per_scale) == 0:
        raise ValueError("GALT: x_per_scale is empty (need one (N_s, C) tensor per scale)")
    dev = w_OI.device
    w = w_OI.detach().to(torch.float32)
    Q = Q_block.detach().to(device=dev, dtype=torch.float32)
    g = torch.Generator().manual_seed(cfg.seed)
    data = []
    for s, x in enumerate(x_per_scale):
        if x.shape[-1] != C:
            raise ValueError(f"GALT: x_per_scale[{s}] has {x.shape[-1]} channels, weight has C={C}")
        x = x.detach().reshape(-1, C)
        n = x.shape[0]
        if n == 0:
            raise ValueError(f"GALT: x_per_scale[{s}] has no tokens")
        cap = cfg.max_tokens_per_scale
        if cap is not None and n > cap:
            x = x[torch.randperm(n, generator=g)[:cap].sort().values]
        x = x.to(device=dev, dtype=torch.float32)
        data.append((x, x @ w.T))  # reference in float32
    return w, Q, data


@torch.no_grad()
def _full_loss(w, Q, data, lam, cfg) -> float:
    return sum(_site_loss(x, y, w, lam, Q, cfg).item() for x, y in data) / len(data)


def galt_full_loss(x_per_scale: list[torch.Tensor], w_OI: torch.Tensor, lam_C: torch.Tensor, *,
                   Q_block: torch.Tensor, config: GALTConfig = GALTConfig()) -> float:
    """The exact GALT loss of ``lam_C``, averaged over scales (same token subsample as training)."""
    w, Q, data = _prepare(x_per_scale, w_OI, Q_block, config)
    return _full_loss(w, Q, data, lam_C.detach().to(device=w.device, dtype=torch.float32), config)


def learn_galt_lambda(x_per_scale: list[torch.Tensor], w_OI: torch.Tensor, *, Q_block: torch.Tensor,
                      config: GALTConfig = GALTConfig(), progress: bool = False
                      ) -> tuple[torch.Tensor, list[float]]:
    """Learn one layer's lam (float32 ``(C,)``) from its float inputs at every scale.

    ``x_per_scale``: one ``(N_s, C)`` (or ``(..., C)``) tensor per scale; ``w_OI``: the layer's float weight
    (before any GHT); ``Q_block``: the ``(b, b)`` GHT block the model uses (``block_hadamard_matrix()``).
    Returns ``(lam, history)``: ``history[e]`` is the mean of epoch e's per-step losses (each measured before its
    step, as upstream logs it). ``epochs=0`` returns lam = 1.
    """
    cfg = config
    w, Q, data = _prepare(x_per_scale, w_OI, Q_block, cfg)
    C = w.shape[1]
    lam = torch.ones(C, device=w.device, dtype=torch.float32, requires_grad=True)
    history: list[float] = []
    if cfg.epochs == 0:
        return lam.detach(), history
    opt = torch.optim.AdamW([lam], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gdt = kernels.resolve_dtype("galt_grad", cfg.grad_dtype, w.device)  # "auto": measured (module doc)
    best_lam, best_loss = None, math.inf
    if cfg.keep == "best":
        best_lam, best_loss = lam.detach().clone(), _full_loss(w, Q, data, lam.detach(), cfg)
    epochs = range(cfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc=f"GALT C={C} O={w.shape[0]}", leave=False)
    for _ in epochs:
        total = 0.0
        for x, y in data:
            loss = _SiteLoss.apply(lam, x, y, w, Q, cfg, gdt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                lam.clamp_(min=cfg.min_lam)
            total += loss.item()
        history.append(total / len(data))
        if cfg.keep == "best":
            full = _full_loss(w, Q, data, lam.detach(), cfg)
            if full < best_loss:
                best_lam, best_loss = lam.detach().clone(), full
        if progress:
            epochs.set_postfix(loss=f"{history[-1]:.4g}")
    out = best_lam if cfg.keep == "best" else lam.detach()
    return out.clone(), history


def fuse_galt(block: nn.Module, lam_qkv: torch.Tensor | None, lam_fc1: torch.Tensor | None,
              Q: torch.Tensor | None = None) -> bool:
    """Fuse the learned lams into ``block`` in place: ``lam`` into ``ada_lin`` (or an online multiply for shared
    AdaLN), ``W / lam`` into ``mat_qkv`` / ``fc1``; with ``Q``, also the GHT (``(W / lam) Q``, one float64 pass,
    plus the online rotation). Returns whether both lams were folded into ``ada_lin``.

    Without ``Q`` call this *before* any rotation of these weights: ``(W Q) / lam != (W / lam) Q``.
    """
    a = transform_site_(block, "attn", lam_C=lam_qkv, Q=Q)
    f = transform_site_(block, "ffn", lam_C=lam_fc1, Q=Q)
    return a and f
