"""Static (calibrated) activation parameters: symmetric or asymmetric, one set or one per VAR scale.

PTQ4ARVG's static token-wise quantization (STWQ; BienLuky/PTQ4ARVG VAR/quant/quantizer.py
``TokenAwareUniformQuantizer``, facts in baseline-facts.md section 3.4) keeps one static parameter set per scale
(``QuantSpec.static_sets="scale"``: scale 0 is the first token, the "sink") or two, the first token and the rest
(``"sink"``). Each set is a per-tensor (or per-group) scale and, for asymmetric INT formats (``uint*``), a zero
point, from the min / max (symmetric: absmax) over the calibration rows of that set's scales, or, with
``QuantSpec.range_search="percentile"``, PTQ4ARVG's range search (``PERCENTILES``; lowest MSE). PTQ4ARVG also
smooths the chosen parameters over calibration batches (0.1 new + 0.9 old); the calibration rows here are pooled
over the batches, so there is no moving average (a deviation).

At run time a linear sees either one scale's tokens (KV-cached sampling: ``L = pn^2``) or a prefix of the
concatenated scales (teacher forcing: ``L = sum of the first k pn^2``); :func:`quantize_static` finds the
scale(s) from ``L`` (a single scale first, as PTQ4ARVG looks its sets up by token count), or takes an explicit
``scale_index`` (the per-scale calibration rows of the report).

Layout: without sets ``scale`` is ``(G,)`` (G = 1 per tensor, or in_features / group_size); with sets
``(n_sets, G)``; ``zero_point`` has the scale's shape (asymmetric formats only).
"""

from __future__ import annotations

import torch

from fpqvar.formats import minmax_scale_zero_point
from fpqvar.quant.spec import QuantSpec

__all__ = ["num_sets", "set_of_scale", "calibrate_static", "quantize_static"]


def num_sets(spec: QuantSpec, num_scales: int) -> int:
    return {None: 1, "sink": 2, "scale": num_scales}[spec.static_sets]


def set_of_scale(spec: QuantSpec, si: int) -> int:
    return {None: 0, "sink": min(si, 1), "scale": si}[spec.static_sets]


def _groups(spec: QuantSpec, C: int) -> int:
    return 1 if spec.granularity == "tensor" else C // spec.group_size


# PTQ4ARVG's candidates (VAR/quant/quantizer.py init_quantization_scale): the range is the (1 - p, p) quantiles
PERCENTILES = (0.999, 0.9999, 0.99999)
_QUANTILE_MAX = 1 << 24  # torch.quantile's input limit; larger sets go through numpy (same linear interpolation)


def _quantile_rows(xg_GM: torch.Tensor, q: float) -> torch.Tensor:
    if xg_GM.shape[1] <= _QUANTILE_MAX:
        return torch.quantile(xg_GM, q, dim=1)
    import numpy as np

    return torch.from_numpy(np.quantile(xg_GM.numpy(), q, axis=1).astype(np.float32))


def percentile_range(xg_GM: torch.Tensor, fmt: str, fake_quant) -> tuple[torch.Tensor, torch.Tensor]:
    """PTQ4ARVG's range search per row of ``xg_GM`` (one row per scale group): for each candidate p the range is
    the (1 - p, p) quantiles; the lowest mean squared error of ``fake_quant(s, zp) - x`` (``(G, M)`` in, ``(G, M)``
    out) wins, the first candidate on a tie (PTQ4ARVG keeps the first strictly better score). ``(s, zp)``, ``(G,)``."""
    best = None
    G = xg_GM.shape[0]
    for p in PERCENTILES:
        mm = torch.stack((_quantile_rows(xg_GM, 1.0 - p), _quantile_rows(xg_GM, p)), dim=1)  # (G, 2)
        s, zp = minmax_scale_zero_point(mm, fmt, granularity="token")
        s, zp = s.reshape(G), zp.reshape(G)
        err = (fake_quant(s, zp) - xg_GM).square().mean(dim=1)  # (G,)
        if best is None:
            best = [err, s, zp]
        else:
            better = err < best[0]
            best = [torch.where(better, err, best[0]), torch.where(better, s, best[1]),
                    torch.where(better, zp, best[2])]
    return best[1], best[2]


def _params(x_NC: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scale (G,), zero point (G,) or None) over all rows of ``x_NC``."""
    G = _groups(spec, x_NC.shape[-1])
    x = x_NC.float()

    def regroup(t_NC):  # (G, rows * group)
        return t_NC.reshape(t_NC.shape[0], G, -1).transpose(0, 1).reshape(G, -1)

    xg = regroup(x)
    if spec.range_search == "percentile":  # through the activation quantizer itself
        return percentile_range(xg, spec.fmt, lambda s, zp: regroup(_fq(x, spec, s, zp)))
    if spec.asymmetric:
        mm = torch.stack((xg.amin(dim=1), xg.amax(dim=1)), dim=1)  # (G, 2): the quantizer's own min-max rule
        s, zp = minmax_scale_zero_point(mm, spec.fmt, granularity="token")
        return s.reshape(G), zp.reshape(G)
    s = xg.abs().amax(dim=1) / spec.format.max_value
    return torch.where(s > 0, s, torch.ones_like(s)), None


def calibrate_static(rows_per_scale: list[torch.Tensor], spec: QuantSpec, where: str
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Static parameters of ``spec`` from the calibration rows per scale (as the quantizer sees them)."""
    S = len(rows_per_scale)
    n = num_sets(spec, S)
    per_set: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for si, x in enumerate(rows_per_scale):
        if x.numel():
            per_set[set_of_scale(spec, si)].append(x)
    empty = [k for k, xs in enumerate(per_set) if not xs]
    if empty:
        raise ValueError(f"{where}: no calibration rows for static activation set(s) {empty} "
                         f"(static_sets={spec.static_sets!r}, {S} scales)")
    got = [_params(torch.cat(xs), spec) for xs in per_set]
    s = torch.stack([g[0] for g in got])
    zp = None if got[0][1] is None else torch.stack([g[1] for g in got])
    if spec.static_sets is None:
        s, zp = s[0], (None if zp is None else zp[0])
    return s, zp


def _fq(x: torch.Tensor, spec: QuantSpec, s: torch.Tensor, zp: torch.Tensor | None) -> torch.Tensor:
    from fpqvar.quant.qlinear import quantize_activation

    return quantize_activation(x, spec, s, zp)


def quantize_static(x: torch.Tensor, spec: QuantSpec, scale: torch.Tensor, zero_point: torch.Tensor | None,
                    patch_nums: tuple[int, ...] | None, scale_index: int | None = None) -> torch.Tensor:
    """Fake-quantize ``x_..LC`` with its static parameter set(s)."""
    if spec.static_sets is None:
        return _fq(x, spec, scale, zero_point)

    def one(t, si):
        k = set_of_scale(spec, si)
        return _fq(t, spec, scale[k], None if zero_point is None else zero_point[k])

    if scale_index is not None:
        return one(x, scale_index)
    if patch_nums is None or x.ndim < 2:
        raise ValueError(f"static_sets={spec.static_sets!r}: need the model's patch_nums and a (..., L, C) input "
                         f"to find the scale of each token, got input shape {tuple(x.shape)}")
    L = int(x.shape[-2])
    counts = [p * p for p in patch_nums]
    if L in counts:
        return one(x, counts.index(L))
    ends, e = [], 0
    for c in counts:
        e += c
        ends.append(e)
    if L not in ends:
        raise ValueError(f"static_sets={spec.static_sets!r}: {L} tokens are neither one scale ({counts}) nor a "
                         f"prefix of the scales ({ends})")
    parts, b = [], 0
    for si, c in enumerate(counts[: ends.index(L) + 1]):
        parts.append(one(x[..., b:b + c, :], si))
        b += c
    return torch.cat(parts, dim=-2)
