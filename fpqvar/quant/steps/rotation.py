"""Rotation steps: GHT (FPQVAR, fpqvar-method.md section 7) and the full randomized Hadamard (QuaRot, section 12).

Both set the site's rotation ``Q``; the weight absorbs ``blockdiag(Q)`` offline in float64, the activation is
rotated online (``OnlineRotation``) before its quantizer. No calibration is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fpqvar.config import ConfigError
from fpqvar.quant.steps.base import Transform, register_transform
from fpqvar.transforms.hadamard import block_hadamard_matrix, random_hadamard

__all__ = ["GHT", "FullHadamard"]


@dataclass(frozen=True)
class GHT(Transform):
    """Block-diagonal randomized Hadamard: ``D H_b / sqrt(b)``, the same block everywhere (seed reset per block)."""

    KIND = "ght"
    STAGE = "rotation"

    block: int = 128
    seed: int = 42

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block < 1 or self.block & (self.block - 1):
            raise ConfigError(f"GHT.block must be a power of two, got {self.block!r}")


@dataclass(frozen=True)
class FullHadamard(Transform):
    """One randomized Hadamard of the layer's full input width (1920 = had60 x H32, 2304 = had36 x H64, ...)."""

    KIND = "hadamard"
    STAGE = "rotation"

    seed: int = 42


def _ght(cfg: GHT, states, ctx) -> None:
    Q = block_hadamard_matrix(cfg.block, cfg.seed)
    for st in states:
        st.set_rotation(Q, f"ght{cfg.block}")
        st.info["rotation"] = st.rotation
        st.snapshot(cfg.STAGE)


def _full(cfg: FullHadamard, states, ctx) -> None:
    cache = {}
    for st in states:
        n = st.site.in_features
        if n not in cache:
            cache[n] = random_hadamard(n, cfg.seed)
        st.set_rotation(cache[n], f"full{n}")
        st.info["rotation"] = st.rotation
        st.snapshot(cfg.STAGE)


register_transform(GHT, _ght)
register_transform(FullHadamard, _full)
