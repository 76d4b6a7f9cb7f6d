"""Transform steps of a recipe: a config (data) plus a registered handler (code), issue 13.

A recipe's ``transforms`` is an ordered list of configs (``GHT``, ``FullHadamard``, ``SmoothQuant``, ``GALT``,
``FormatSearch``, ...). ``quantize_`` keeps one :class:`SiteState` per linear site and runs each step's handler
on the states of the sites its ``sites`` patterns select, in list order ("plan"). Every site ends up with one
function-preserving input transform

    x -> (x * lam_C) blockdiag(Q_bb),     W -> (W / lam_C) blockdiag(Q_bb)

plus possibly changed quantization specs; the "apply" phase then calls the public
``fpqvar.transforms.sites.transform_site_`` with (lam, Q) and swaps in the quantized modules. Scaling steps
(SmoothQuant, GALT) multiply ``lam`` and always act before the rotation in that composite; a rotation step sets
``Q`` (one per site). So a step that comes after a rotation sees it: GALT after GHT learns lam with Q in its loss
(FPQVAR's order, fpqvar-method.md section 8). Steps see the calibration rows through ``state.rows()``, already
transformed by the earlier steps.

A new method is a new config class + handler registered with :func:`register_transform`; nothing else changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch

from fpqvar.config import ConfigError, StrictConfig
from fpqvar.model.sites import Site
from fpqvar.quant.spec import QuantSpec
from fpqvar.transforms.hadamard import rotate_weight_in

__all__ = ["Transform", "SiteState", "PlanContext", "register_transform", "transform_kinds", "handler_for",
           "ADALN_LINEAR_SITES"]

# the two AdaLN-modulated block inputs, where FPQVAR's GHT and GALT act (fpqvar-method.md sections 7, 8)
ADALN_LINEAR_SITES = ("blocks.*.attn.mat_qkv", "blocks.*.ffn.fc1")

_REGISTRY: dict[str, tuple[type, Callable]] = {}


@dataclass(frozen=True)
class Transform(StrictConfig):
    """Base of the step configs: ``sites`` = fnmatch patterns over linear site names (model/sites.py)."""

    KIND: ClassVar[str] = ""
    STAGE: ClassVar[str] = ""  # the report's stage name after this step
    NEEDS_CALIBRATION: ClassVar[bool] = False

    sites: tuple[str, ...] = ADALN_LINEAR_SITES

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.sites or any(not p for p in self.sites):
            raise ConfigError(f"{type(self).__name__}.sites must be a non-empty list of site patterns, got "
                              f"{list(self.sites)!r}")

    def to_dict(self) -> dict:
        return {"kind": self.KIND, **super().to_dict()}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ConfigError(f"transform: expected a JSON object with 'kind', got {type(d).__name__} {d!r}")
        kind = d.get("kind")
        if cls is Transform:
            if kind not in _REGISTRY:
                raise ConfigError(f"transform: unknown kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}")
            return _REGISTRY[kind][0].from_dict(d)
        if kind not in (None, cls.KIND):
            raise ConfigError(f"{cls.__name__}: kind must be {cls.KIND!r}, got {kind!r}")
        return super().from_dict({k: v for k, v in d.items() if k != "kind"})


def register_transform(cls: type, handler: Callable) -> type:
    """Register ``cls`` (a :class:`Transform` subclass with a unique ``KIND``) and its ``handler(cfg, states, ctx)``."""
    if not (isinstance(cls, type) and issubclass(cls, Transform)) or not cls.KIND:
        raise TypeError(f"register_transform: {cls!r} must be a Transform subclass with a KIND")
    if cls.KIND in _REGISTRY and _REGISTRY[cls.KIND][0] is not cls:
        raise ValueError(f"register_transform: kind {cls.KIND!r} is already registered by "
                         f"{_REGISTRY[cls.KIND][0].__name__}")
    _REGISTRY[cls.KIND] = (cls, handler)
    return cls


def transform_kinds() -> list[str]:
    return sorted(_REGISTRY)


def handler_for(cfg: Transform) -> Callable:
    return _REGISTRY[cfg.KIND][1]


@dataclass
class Snapshot:
    """What the site's layer looks like after a step (for the per-stage SQNR report)."""

    lam_C: torch.Tensor | None
    Q_bb: torch.Tensor | None
    wspec: QuantSpec | None
    aspec: QuantSpec | None
    fn: Callable | None = None  # ``fn(x, scale_index) -> y`` of the untransformed input, for steps that change
    # the layer beyond (lam, Q, specs): GPTQ's rounding, SVDQuant's low-rank branch


@dataclass
class SiteState:
    """The plan of one linear site while the steps run."""

    site: Site
    w0_OI: torch.Tensor  # the float weight, float32, untouched
    bias_O: torch.Tensor | None
    wspec: QuantSpec | None
    aspec: QuantSpec | None
    has_rule: bool
    calib: object | None = None  # fpqvar.quant.calibrate.CalibrationData
    lam_C: torch.Tensor | None = None  # float64 cumulative input scale (x * lam)
    Q_bb: torch.Tensor | None = None  # float64 rotation block
    rotation: str | None = None  # "ght128", "full1920", ...
    info: dict = field(default_factory=dict)
    stages: list[tuple[str, Snapshot]] = field(default_factory=list)
    # set by the last steps of a plan (steps/gptq.py, steps/svdquant.py); the swap phase uses them as they are
    lowrank: tuple[torch.Tensor, torch.Tensor] | None = None  # (up_Or, down_rI), 16-bit: W ~ R + up @ down
    weight_q: object | None = None  # steps.gptq.RoundedWeight: codes + scales the swap phase installs as they are

    @property
    def name(self) -> str:
        return self.site.name

    @property
    def transformed(self) -> bool:
        return self.lam_C is not None or self.Q_bb is not None

    def snapshot(self, stage: str, fn: Callable | None = None) -> None:
        self.stages.append((stage, Snapshot(self.lam_C, self.Q_bb, self.wspec, self.aspec, fn)))

    def _check_open(self, what: str) -> None:
        """Low-rank branches and rounded weights are computed for the final input transform: nothing may change
        it afterwards (they would silently belong to another weight)."""
        done = [n for n, v in (("a low-rank branch (SVDQuant)", self.lowrank), ("rounded weights (GPTQ)",
                                                                              self.weight_q)) if v is not None]
        if done:
            raise ValueError(f"{self.name}: {what} after {' and '.join(done)} were computed; put GPTQ / SVDQuant "
                             "after every scaling, rotation and format step of the recipe")

    def weight_to_quantize(self) -> torch.Tensor:
        """The float32 weight the quantizer rounds: ``(W / lam) Q`` minus the low-rank branch if there is one
        (the difference computed in float64 from the stored 16-bit factors, cast once)."""
        w = self.weight()
        if self.lowrank is None:
            return w
        up, down = self.lowrank
        return (w.double() - up.double() @ down.double()).float()

    def multiply_lam(self, lam_C: torch.Tensor) -> None:
        self._check_open("an input scaling")
        lam = lam_C.detach().to(torch.float64).cpu()
        self.lam_C = lam if self.lam_C is None else self.lam_C * lam

    def set_rotation(self, Q_bb: torch.Tensor, label: str) -> None:
        self._check_open("a rotation")
        if self.Q_bb is not None:
            raise ValueError(f"{self.name}: two rotations in one recipe ({self.rotation} and {label}); a site "
                             "takes one")
        b = int(Q_bb.shape[0])
        if self.site.in_features % b:
            raise ValueError(f"{self.name}: rotation block {b} does not divide the input width "
                             f"{self.site.in_features}")
        self.Q_bb, self.rotation = Q_bb.detach().to(torch.float64).cpu(), label

    # ------------------------------------------------------------------ calibration views
    def has_rows(self) -> bool:
        return self.calib is not None and self.calib.has_rows(self.name)

    def raw_rows(self) -> list[torch.Tensor]:
        if self.calib is None:
            raise ValueError(f"{self.name}: this step needs calibration data")
        return self.calib.x_per_scale(self.name)

    def rows(self, *, rotated: bool = True) -> list[torch.Tensor]:
        """Calibration rows per scale as the quantizer will see them: ``(x lam) Q`` (``rotated=False``: x lam)."""
        return [self.transform_x(x, rotated=rotated) for x in self.raw_rows()]

    def absmax_C(self) -> torch.Tensor:
        """Per-channel absmax of ``x lam`` over ALL calibration tokens (not only the reservoir)."""
        a = self.calib.absmax(self.name).double()
        return a if self.lam_C is None else a * self.lam_C.abs().to(a.device)

    def transform_x(self, x: torch.Tensor, *, rotated: bool = True, lam_C=None, Q_bb=None) -> torch.Tensor:
        lam = self.lam_C if lam_C is None else lam_C
        Q = self.Q_bb if Q_bb is None else Q_bb
        x = x.float()
        if lam is not None:
            x = x * lam.to(x.device, torch.float32)
        if rotated and Q is not None:
            b = Q.shape[0]
            x = (x.reshape(*x.shape[:-1], -1, b) @ Q.to(x.device, torch.float32)).reshape(x.shape)
        return x

    def weight(self, *, rotated: bool = True, lam_C=None, Q_bb=None) -> torch.Tensor:
        """The transformed float32 weight ``(W / lam) Q`` (computed in float64, cast once)."""

        lam = self.lam_C if lam_C is None else lam_C
        Q = self.Q_bb if Q_bb is None else Q_bb
        if rotated and Q is not None:
            return rotate_weight_in(self.w0_OI, Q, lam_I=lam).float()
        if lam is not None:
            return (self.w0_OI.double() / lam.to(self.w0_OI.device).view(1, -1)).float()
        return self.w0_OI.float()


@dataclass
class PlanContext:
    model: torch.nn.Module
    calibration: object | None
    progress: bool = True
    timings_s: dict = field(default_factory=dict)
    report: object | None = None  # QuantReport: steps add their per-layer records here


def replace(cfg: Transform, **kw) -> Transform:
    return dataclasses.replace(cfg, **kw)
