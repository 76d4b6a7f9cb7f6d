"""Activation statistics behind the method's figures, captured while sampling (KV-cached, both CFG halves).

- fc2 input (post-GELU): a histogram per block and the share of values in [-0.17, 0] (GELU-tanh's minimum is
  about -0.170 at x = -0.75): the imbalance that motivates DFQ (the paper summary quotes 97.6 % of values in that
  band for VAR-d30; fpqvar-method.md, additional figures).
- qkv and fc1 inputs: per-channel absmax per scale, (S, C) per block: the outlier channels that move across
  scales (GALT's target, section 8). With ``transformed=True`` the capture applies the QuantLinear's own online
  rotation, so on an FPQVAR-quantized model it shows what the quantizer sees after GHT + GALT (GALT's lambda is
  fused into ada_lin, so it is already in the module input). Inputs come from the model as it runs, so the
  "after" statistics of a quantized model include the effect of quantization in earlier layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

GELU_BAND = (-0.17, 0.0)
ABSMAX_SITES = ("attn.mat_qkv", "ffn.fc1")
# Histogram edges for the fc2 input: fine bins over the negative band, coarser over the positive tail.
HIST_EDGES = np.concatenate([np.linspace(-0.25, 0.0, 51)[:-1], np.linspace(0.0, 4.0, 201)])


@dataclass
class ActivationStats:
    patch_nums: tuple[int, ...]
    hist_edges: np.ndarray
    fc2_hist: dict[int, np.ndarray] = field(default_factory=dict)  # block -> counts (len(edges) - 1,)
    fc2_counts: dict[int, dict[str, int]] = field(default_factory=dict)  # block -> counts by kind
    absmax: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)  # (block, site) -> (S, C)

    def band_share(self, block: int | None = None) -> float:
        blocks = [block] if block is not None else list(self.fc2_counts)
        total = sum(self.fc2_counts[b]["total"] for b in blocks)
        return sum(self.fc2_counts[b]["in_band"] for b in blocks) / max(1, total)

    def _share(self, key: str, block: int | None) -> float:
        blocks = [block] if block is not None else list(self.fc2_counts)
        total = sum(self.fc2_counts[b]["total"] for b in blocks)
        return sum(self.fc2_counts[b].get(key, 0) for b in blocks) / max(1, total)

    def positive_share(self, block: int | None = None) -> float:
        return self._share("positive", block)

    def nonpositive_share(self, block: int | None = None) -> float:
        """All values <= 0: GELU-tanh's minimum is -0.17004, so the band [-0.17, 0] misses a sliver at the edge."""
        return self._share("nonpositive", block)

    def summary(self) -> dict:
        return {"fc2_input_share_in_band": self.band_share(), "fc2_input_positive_share": self.positive_share(),
                "fc2_input_nonpositive_share": self.nonpositive_share(),
                "band": list(GELU_BAND),
                "per_block_share_in_band": {str(b): self.band_share(b) for b in sorted(self.fc2_counts)},
                "absmax_outlier_ratio": {f"{b}.{s}": outlier_ratio(a) for (b, s), a in sorted(self.absmax.items())}}


def outlier_ratio(absmax_SC: np.ndarray) -> list[float]:
    """Per scale: max over channels / median over channels of the absmax (how peaked the outliers are)."""
    med = np.median(absmax_SC, axis=1)
    return [float(m) for m in absmax_SC.max(axis=1) / np.where(med > 0, med, 1.0)]


class _Capture:
    def __init__(self, var, transformed: bool):
        self.scale_of_len = {pn * pn: si for si, pn in enumerate(var.patch_nums)}
        self.S = len(var.patch_nums)
        self.transformed = transformed
        self.stats = ActivationStats(tuple(var.patch_nums), HIST_EDGES)

    def fc2_hook(self, block: int):
        def fn(module, args):
            x = args[0].detach().float().reshape(-1).cpu().numpy()
            lo, hi = GELU_BAND
            c = self.stats.fc2_counts.setdefault(block, {"total": 0, "in_band": 0, "positive": 0, "below": 0,
                                                          "above": 0, "nonpositive": 0})
            c["total"] += x.size
            c["in_band"] += int(np.count_nonzero((x >= lo) & (x <= hi)))
            c["positive"] += int(np.count_nonzero(x > 0))
            c["nonpositive"] += int(np.count_nonzero(x <= 0))
            c["below"] += int(np.count_nonzero(x < HIST_EDGES[0]))
            c["above"] += int(np.count_nonzero(x > HIST_EDGES[-1]))
            h, _ = np.histogram(x, bins=HIST_EDGES)
            self.stats.fc2_hist[block] = self.stats.fc2_hist.get(block, 0) + h

        return fn

    def absmax_hook(self, block: int, site: str):
        def fn(module, args):
            x = args[0].detach()
            rot = getattr(module, "rotation", None)
            if self.transformed and rot is not None:
                x = rot(x)
            si = self.scale_of_len.get(x.shape[1])
            if si is None:  # not a KV-cached sampling call (teacher-forced forward): not captured
                return
            a = x.float().abs().amax(dim=(0, 1)).cpu().numpy()
            key = (block, site)
            cur = self.stats.absmax.get(key)
            if cur is None:
                cur = self.stats.absmax[key] = np.zeros((self.S, a.size), np.float32)
            cur[si] = np.maximum(cur[si], a)

        return fn


@torch.no_grad()
def collect_activation_stats(var, classes, *, per_class: int = 1, seed: int = 0, cfg: float = 1.5,
                             top_k: int = 900, top_p: float = 0.96, transformed: bool = True) -> ActivationStats:
    """Sample ``per_class`` images of each class (one batch per class, seed ``seed + class``) and capture."""
    from fpqvar.model.sampling import sample_tokens

    cap = _Capture(var, transformed)
    handles = []
    for i, blk in enumerate(var.blocks):
        handles.append(blk.ffn.fc2.register_forward_pre_hook(cap.fc2_hook(i)))
        for site in ABSMAX_SITES:
            handles.append(blk.get_submodule(site).register_forward_pre_hook(cap.absmax_hook(i, site)))
    try:
        for c in classes:
            sample_tokens(var, per_class, int(c), seed=seed + int(c), cfg=cfg, top_k=top_k, top_p=top_p)
    finally:
        for h in handles:
            h.remove()
    return cap.stats
