"""Format search ("MixedFormat", fpqvar-method.md section 10; MoFQ, section 12): pick each site's element formats
among ``candidates`` on calibration data, after the earlier steps' transforms.

- ``objective="output_mse"``, ``joint=True`` (upstream FPQVAR's search): the (weight format, activation format)
  pair with the lowest mean squared error of the layer OUTPUT against the float layer ``x W^T``, over the
  calibration rows of all scales; ``per="block"`` picks one pair for all of a block's selected sites (summed
  error), ``per="layer"`` one per site.
- ``objective="tensor_mse"``, ``joint=False``: the weight and the activation each get the format with the lowest
  quantization MSE of the tensor itself (MoFQ-style, cheaper).

Specs keep their granularity; a DFQ or static activation spec, or a spec whose format is not a candidate, is
kept. Ties keep the earlier candidate (the order of ``candidates``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fpqvar.config import ConfigError
from fpqvar.formats import get_format
from fpqvar.quant.qlinear import quantize_activation
from fpqvar.quant.report import fake_quant_weight
from fpqvar.quant.steps.base import Transform, register_transform

__all__ = ["FormatSearch", "BLOCK_LINEAR_SITES"]

BLOCK_LINEAR_SITES = ("blocks.*.attn.mat_qkv", "blocks.*.attn.proj", "blocks.*.ffn.fc1", "blocks.*.ffn.fc2")
_OBJECTIVES = ("output_mse", "tensor_mse")


@dataclass(frozen=True)
class FormatSearch(Transform):
    KIND = "format_search"
    STAGE = "format"
    NEEDS_CALIBRATION = True

    sites: tuple[str, ...] = BLOCK_LINEAR_SITES
    candidates: tuple[str, ...] = ("e1m2", "e2m1", "e3m0")
    objective: str = "output_mse"
    joint: bool = True
    per: str = "block"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.candidates) < 2:
            raise ConfigError(f"FormatSearch.candidates needs >= 2 formats, got {list(self.candidates)!r}")
        for f in self.candidates:
            try:
                get_format(f)
            except ValueError as e:
                raise ConfigError(f"FormatSearch.candidates: {e}") from None
        bits = {get_format(f).bits for f in self.candidates}
        if len(bits) != 1:
            raise ConfigError(f"FormatSearch.candidates must have one bit width (equal storage), got {sorted(bits)}")
        if self.objective not in _OBJECTIVES:
            raise ConfigError(f"FormatSearch.objective must be one of {_OBJECTIVES}, got {self.objective!r}")
        if self.per not in ("block", "layer"):
            raise ConfigError(f"FormatSearch.per must be 'block' or 'layer', got {self.per!r}")
        if self.objective == "tensor_mse" and (self.joint or self.per != "layer"):
            raise ConfigError("FormatSearch: objective 'tensor_mse' scores each tensor alone: use joint=false, "
                              "per='layer'")


def _searchable(spec, candidates, act: bool) -> bool:
    if spec is None or spec.fmt not in candidates:
        return False
    return not (act and (spec.dfq is not None or spec.static))


def _best(errs: dict) -> object:
    keys = list(errs)
    return min(keys, key=lambda k: (errs[k], keys.index(k)))


@torch.no_grad()
def _tensor_search(cfg: FormatSearch, st) -> None:
    rec = {}
    if _searchable(st.wspec, cfg.candidates, act=False):
        w = st.weight()
        errs = {f: float((fake_quant_weight(w, st.wspec.with_fmt(f)) - w).pow(2).mean()) for f in cfg.candidates}
        st.wspec = st.wspec.with_fmt(_best(errs))
        rec["weight_mse"] = errs
    if _searchable(st.aspec, cfg.candidates, act=True) and st.has_rows():
        x = torch.cat(st.rows())
        errs = {f: float((quantize_activation(x, st.aspec.with_fmt(f)) - x).pow(2).mean()) for f in cfg.candidates}
        st.aspec = st.aspec.with_fmt(_best(errs))
        rec["act_mse"] = errs
    return rec


@torch.no_grad()
def _output_errors(cfg: FormatSearch, st) -> dict:
    """Sum over scales of the squared output error of every (weight fmt, act fmt) pair (a float per pair)."""

    wfs = cfg.candidates if _searchable(st.wspec, cfg.candidates, False) else (None,)
    afs = cfg.candidates if _searchable(st.aspec, cfg.candidates, True) else (None,)
    raw = st.raw_rows()
    xs = st.rows()
    w = st.weight()
    b = None if st.bias_O is None else st.bias_O.float()
    w_hat = {f: fake_quant_weight(w, st.wspec if f is None else st.wspec.with_fmt(f)).float() for f in wfs}
    errs = {}
    for af in afs:
        xq = [x if st.aspec is None else quantize_activation(x, st.aspec if af is None else st.aspec.with_fmt(af))
              for x in xs]
        for wf in wfs:
            e, n = 0.0, 0
            for x0, x in zip(raw, xq):
                if x.numel() == 0:
                    continue
                y_ref = F.linear(x0.float(), st.w0_OI.float(), b)
                e += float((F.linear(x.float(), w_hat[wf], b) - y_ref).double().pow(2).sum())
                n += y_ref.numel()
            errs[(wf, af)] = e / max(n, 1)
    return errs


def _apply_pair(cfg: FormatSearch, st, wf, af) -> None:
    if wf is not None and _searchable(st.wspec, cfg.candidates, False):
        st.wspec = st.wspec.with_fmt(wf)
    if af is not None and _searchable(st.aspec, cfg.candidates, True):
        st.aspec = st.aspec.with_fmt(af)


def _search(cfg: FormatSearch, states, ctx) -> None:
    report = ctx.report
    if cfg.objective == "tensor_mse":
        for st in states:
            rec = _tensor_search(cfg, st)
            _record(report, st, rec)
        return
    groups: dict = {}
    for st in states:
        key = (st.site.block if cfg.per == "block" else st.name)
        groups.setdefault(key, []).append(st)
    for members in groups.values():
        per_site = {st.name: _output_errors(cfg, st) for st in members if st.has_rows()}
        if not per_site:
            continue
        if cfg.per == "layer":
            for st in members:
                if st.name in per_site:
                    wf, af = _best(per_site[st.name])
                    _apply_pair(cfg, st, wf, af)
                    _record(report, st, {"output_mse": _keyed(per_site[st.name])})
            continue
        pairs = list(itertools.product(cfg.candidates, cfg.candidates))
        total = {p: sum(_lookup(e, p) for e in per_site.values()) for p in pairs}
        wf, af = _best(total)
        for st in members:
            _apply_pair(cfg, st, wf, af)
            _record(report, st, {"block_output_mse": _keyed(total)})


def _lookup(errs: dict, pair) -> float:
    """A site's error for a block-wide pair; sites that cannot take one of the two formats use their own spec."""
    wf, af = pair
    for k in ((wf, af), (None, af), (wf, None), (None, None)):
        if k in errs:
            return errs[k]
    raise KeyError(pair)


def _keyed(errs: dict) -> dict:
    return {f"W {w or '-'} / A {a or '-'}": v for (w, a), v in errs.items()}


def _record(report, st, rec: dict) -> None:
    st.info["formats"] = {"weight": None if st.wspec is None else st.wspec.fmt,
                          "act": None if st.aspec is None else st.aspec.fmt}
    st.snapshot(FormatSearch.STAGE)
    if report is not None:
        report.formats[st.name] = {**st.info["formats"], **rec}


register_transform(FormatSearch, _search)
