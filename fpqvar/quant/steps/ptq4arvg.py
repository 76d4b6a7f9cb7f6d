"""PTQ4ARVG's Gain-Projected Scaling (GPS), folded into AdaLN (BienLuky/PTQ4ARVG ``VAR/quant/smooth.py :
calculate_scales_hessian``, ``VAR/quant/gps.py : absorb_gps_scaling_factor``; baseline-facts.md section 3.5).

On the input as the quantizer sees it after the earlier steps (PTQ4ARVG runs it after its SmoothQuant stage,
alpha 0.5), per input channel ``i``, with ``alpha`` = 0.5:

- ``idx`` = the channel with the largest activation range ``max - min`` over the calibration rows;
- ``s_std = range_X[idx]^alpha / range_W[:, idx]^(1 - alpha)`` (``range_W[:, idx]``: max - min of weight
  column ``idx`` over the output rows), ``s_idx = s_std``;
- ``s_i = s_std (||X_i||^2 ||dW_:,i||^2 / (||dX_i||^2 ||Q(W)_:,i||^2))^(1/4)`` for ``i != idx``, where
  ``dW = W - Q(W)`` with the site's weight quantizer (per output channel) and ``dX_i`` is the error of channel
  ``i`` quantized with channel ``idx``'s asymmetric min-max parameters (the activation bit width, ``uint<b>``);
  a zero denominator (or a non-finite result) gives ``s_i = 1``;
- ``x -> x / s``, ``W -> W s`` (lam = 1 / s): folded into the ada_lin scale / shift rows (``head``: into
  ``head_nm.ada_lin``) by the apply phase, so no online operation remains (as ``gps.py``).

Not reproduced: PTQ4ARVG's EMA of the scales over calibration batches (here: one pass over all rows) and its
channel shift ``shift_activation_to_sym`` folded into the AdaLN shift rows and the bias (not implemented).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.config import ConfigError
from fpqvar.quant.steps.base import Transform, register_transform

__all__ = ["GPS", "gps_scales", "GPS_SITES"]

# quant_model.py: smooth=True for head, mat_qkv and fc1 (the AdaLN-modulated inputs)
GPS_SITES = ("blocks.*.attn.mat_qkv", "blocks.*.ffn.fc1", "head")


@dataclass(frozen=True)
class GPS(Transform):
    """``weight_fmt`` / ``act_fmt`` None: the site's own weight spec and ``uint<bits>`` of its activation spec."""

    KIND = "gps"
    STAGE = "gps"
    NEEDS_CALIBRATION = True

    sites: tuple[str, ...] = GPS_SITES
    alpha: float = 0.5
    weight_fmt: str | None = None  # per output channel; None: the site's weight spec
    act_bits: int | None = None  # None: the site's activation spec's bit width

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"GPS.alpha must be in (0, 1), got {self.alpha!r}")
        if self.act_bits is not None and not 2 <= self.act_bits <= 8:
            raise ConfigError(f"GPS.act_bits must be in 2..8, got {self.act_bits!r}")
        if self.weight_fmt is not None:
            from fpqvar.formats import get_format

            try:
                get_format(self.weight_fmt)
            except ValueError as e:
                raise ConfigError(f"GPS.weight_fmt: {e}") from None


@torch.no_grad()
def gps_scales(x_NC: torch.Tensor, w_OC: torch.Tensor, wspec, act_bits: int, alpha: float = 0.5) -> torch.Tensor:
    """GPS's per-input-channel scale ``s`` (float64, ``(C,)``): the layer becomes ``(x / s) (W s)^T``."""
    from fpqvar.formats import fake_quantize, minmax_scale_zero_point
    from fpqvar.quant.report import fake_quant_weight

    x, w = x_NC.double(), w_OC.double()
    rx = x.amax(dim=0) - x.amin(dim=0)
    idx = int(torch.argmax(rx))
    rw = float(w[:, idx].max() - w[:, idx].min())
    s_std = float(rx[idx]) ** alpha / rw ** (1.0 - alpha) if rw > 0 else 1.0
    if not (s_std > 0 and torch.isfinite(torch.tensor(s_std))):
        s_std = 1.0
    qw = fake_quant_weight(w.float(), wspec).double()
    dw = w - qw
    fmt = f"uint{act_bits}"
    sc, zp = minmax_scale_zero_point(x[:, idx:idx + 1].float().T, fmt, granularity="token")  # channel idx's params
    dx = x - fake_quantize(x.float(), fmt, granularity="tensor", scale=sc.reshape(()), zero_point=zp.reshape(())
                           ).double()
    num = x.pow(2).sum(0) * dw.pow(2).sum(0)
    den = dx.pow(2).sum(0) * qw.pow(2).sum(0)
    ratio = (num / den).pow(0.25)
    s = s_std * ratio
    s = torch.where((den > 0) & torch.isfinite(s) & (s > 0), s, torch.ones_like(s))
    s[idx] = s_std
    return s


def _gps(cfg: GPS, states, ctx) -> None:
    from fpqvar.quant.spec import QuantSpec

    for st in states:
        wspec = QuantSpec(cfg.weight_fmt, "channel", None) if cfg.weight_fmt is not None else st.wspec
        bits = cfg.act_bits if cfg.act_bits is not None else (None if st.aspec is None else st.aspec.bits)
        if wspec is None or bits is None:
            raise ValueError(f"GPS: {st.name} has no weight / activation spec to measure quantization error with; "
                             "give GPS(weight_fmt=..., act_bits=...) or a rule for the site")
        if st.Q_bb is not None:
            raise ValueError(f"GPS: {st.name} is rotated by an earlier step (GPS scales the unrotated input)")
        s = gps_scales(torch.cat(st.rows(rotated=False)), st.weight(rotated=False), wspec, bits, cfg.alpha)
        st.multiply_lam(1.0 / s)
        st.info["lambda"] = (st.info.get("lambda", "") + " + gps").lstrip(" +")
        st.snapshot(cfg.STAGE)


register_transform(GPS, _gps)
