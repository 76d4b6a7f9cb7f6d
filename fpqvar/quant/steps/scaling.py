"""Input-scaling steps: SmoothQuant (fpqvar-method.md section 12) and GALT (section 8).

Both multiply the site's ``lam`` (``x -> x lam``, ``W -> W / lam``); the apply phase folds lam into the
modulation that produces the input (ada_lin / head_nm.ada_lin) or multiplies it online where there is none.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from fpqvar.config import ConfigError
from fpqvar.quant.steps.base import Transform, register_transform
from fpqvar.transforms.galt import GALTConfig, learn_galt_lambda
from fpqvar.transforms.smoothing import smoothquant_scales

__all__ = ["SmoothQuant", "GALT", "galt_defaults_for"]


def _lam_summary(lam: torch.Tensor) -> str:
    return f"min {float(lam.min()):.3g} mean {float(lam.mean()):.3g} max {float(lam.max()):.3g}"


@dataclass(frozen=True)
class SmoothQuant(Transform):
    """``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``, ``X / s``, ``W s`` (lam = 1 / s), from calibration absmax."""

    KIND = "smoothquant"
    STAGE = "smooth"
    NEEDS_CALIBRATION = True

    alpha: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"SmoothQuant.alpha must be in [0, 1], got {self.alpha!r}")


def _smooth(cfg: SmoothQuant, states, ctx) -> None:
    for st in states:
        s = smoothquant_scales(st.absmax_C(), st.weight(rotated=False), cfg.alpha)
        lam = 1.0 / s  # SmoothQuant divides x by s
        st.multiply_lam(lam)
        st.info["lambda"] = "smooth " + _lam_summary(st.lam_C)
        st.snapshot(cfg.STAGE)


def galt_defaults_for(model) -> GALTConfig:
    """Upstream's GALT settings for this model: lr 1e-2 at 256px (var-d30), 2e-3 at 512px (var-d36), section 8."""
    vae = getattr(model, "vae", None)
    size = getattr(getattr(vae, "config", None), "image_size", None)
    return GALTConfig(lr=2e-3) if size is not None and size >= 512 else GALTConfig()


@dataclass(frozen=True)
class GALT(Transform):
    """Learned per-channel lam with the site's rotation and FP4 quantization in the loss (STE).

    ``config`` None: upstream's settings for the model being quantized (:func:`galt_defaults_for`). The loss
    uses the rotation an earlier step planned for the site (GHT 128, or C for a full Hadamard; ``config.block``
    follows it); without one it uses Q = identity of ``config.block``.
    """

    KIND = "galt"
    STAGE = "galt"
    NEEDS_CALIBRATION = True

    config: GALTConfig | None = None


def _history_summary(hist) -> dict:
    losses = [float(v) for v in (hist or [])]
    return {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "num_steps": len(losses)}


def _galt(cfg: GALT, states, ctx) -> None:
    gcfg = cfg.config if cfg.config is not None else galt_defaults_for(ctx.model)
    it = states
    if ctx.progress and len(states) > 1:
        from tqdm import tqdm

        it = tqdm(states, desc="GALT", unit="layer", leave=False)
    for st in it:
        t = time.perf_counter()
        # the loss uses the site's planned rotation (GHT block, or the full width); none: Q = identity
        Q = torch.eye(gcfg.block, dtype=torch.float64) if st.Q_bb is None else st.Q_bb
        scfg = gcfg if Q.shape[0] == gcfg.block else dataclasses.replace(gcfg, block=int(Q.shape[0]))
        lam, hist = learn_galt_lambda(st.rows(rotated=False), st.weight(rotated=False), Q_block=Q.float(),
                                      config=scfg)
        st.multiply_lam(lam.detach().float())
        dt = time.perf_counter() - t
        # (the step's total goes into timings_s["galt_s"] once, by quantize_'s plan loop)
        lam_tot = st.lam_C
        if ctx.report is not None:
            ctx.report.galt[st.name] = {**_history_summary(hist), "lambda_min": float(lam_tot.min()),
                                        "lambda_mean": float(lam_tot.mean()), "lambda_max": float(lam_tot.max()),
                                        "lr": gcfg.lr, "time_s": dt}
        st.info["lambda"] = "galt " + _lam_summary(lam_tot)
        st.snapshot(cfg.STAGE)


register_transform(SmoothQuant, _smooth)
register_transform(GALT, _galt)
