"""Autoregressive next-scale sampling with KV cache, CFG, top-k / top-p (shared/spec/var-model.md 3.9-3.11).

Random-number consumption follows upstream exactly: one generator re-seeded per call; an optional label draw
(multinomial over a uniform table); per scale one multinomial over (B*l, V) rows; with more_smooth also one
exponential draw of (B, l, V).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def top_k_top_p_filter_(logits_BlV: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """In place. top-k: drop logits strictly below the k-th largest (ties at the threshold survive).
    top-p: sort ascending, drop entries whose cumulative softmax is <= 1 - p; the largest is never dropped."""
    V = logits_BlV.shape[-1]
    if 0 < top_k < V:
        kth = logits_BlV.topk(top_k, dim=-1, largest=True, sorted=False)[0].amin(dim=-1, keepdim=True)
        logits_BlV.masked_fill_(logits_BlV < kth, float("-inf"))
    if top_p > 0:
        sorted_logits, sorted_idx = logits_BlV.sort(dim=-1, descending=False)
        drop_sorted = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        drop_sorted[..., -1:] = False
        drop = drop_sorted.scatter(-1, sorted_idx, drop_sorted)
        logits_BlV.masked_fill_(drop, float("-inf"))
    return logits_BlV


def draw_tokens(logits_BlV: torch.Tensor, *, top_k: int, top_p: float, generator: torch.Generator | None):
    """Filter then draw one token per position with torch.multinomial (replacement=True); (B, l) int64."""
    B, l, V = logits_BlV.shape
    probs = top_k_top_p_filter_(logits_BlV, top_k, top_p).softmax(dim=-1).view(-1, V)
    return torch.multinomial(probs, num_samples=1, replacement=True, generator=generator).view(B, l)


def cfg_mix(logits_2BlV: torch.Tensor, cfg: float, si: int, num_scales: int) -> torch.Tensor:
    """Linear CFG ramp: t = cfg * si / (S - 1); logits = (1 + t) cond - t uncond (pure conditional at si = 0)."""
    B = logits_2BlV.shape[0] // 2
    t = cfg * (si / (num_scales - 1) if num_scales > 1 else 1.0)
    return (1 + t) * logits_2BlV[:B] - t * logits_2BlV[B:]


def make_labels(var, B: int, label_B, generator: torch.Generator | None, device) -> torch.Tensor:
    if label_B is None:
        uniform = torch.full((1, var.num_classes), 1.0 / var.num_classes, device=device)
        return torch.multinomial(uniform, num_samples=B, replacement=True, generator=generator).reshape(B)
    if isinstance(label_B, int):
        return torch.full((B,), var.num_classes if label_B < 0 else label_B, dtype=torch.long, device=device)
    label_B = torch.as_tensor(label_B, dtype=torch.long, device=device).reshape(-1)
    if label_B.numel() != B:
        raise ValueError(f"sample: got {label_B.numel()} labels for B={B}")
    if (label_B < 0).any() or (label_B > var.num_classes).any():
        raise ValueError(f"sample: labels must be in 0..{var.num_classes} (= null class), got {label_B.tolist()}")
    return label_B


@dataclass
class SampleResult:
    idx_list: list[torch.Tensor]  # per scale (B, pn*pn) int64
    f_hat: torch.Tensor  # (B, Cvae, H, H) float32
    labels: torch.Tensor  # (B,)


def resolve_dtype(dtype: torch.dtype | str, device: torch.device | str) -> torch.dtype:
    """A sampling dtype: a torch dtype or its name, or ``"auto"``: bfloat16 / float16 autocast only where the
    kernel selector measured it faster than float32 on ``device`` (``fpqvar.kernels``, operation ``autocast``)."""
    from fpqvar import kernels

    return kernels.resolve_dtype("autocast", dtype, device)


def _autocast(device: torch.device, dtype: torch.dtype | str):
    dtype = resolve_dtype(dtype, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.inference_mode()
def sample_tokens(var, B: int, label_B=None, *, seed: int | None = 0, cfg: float = 1.5, top_k: int = 0,
                  top_p: float = 0.0, more_smooth: bool = False, dtype: torch.dtype | str = torch.float32,
                  generator: torch.Generator | None = None) -> SampleResult:
    """Sample token maps; ``dtype``: the autocast compute dtype (a torch dtype, its name, or ``"auto"``, see
    :func:`resolve_dtype`; float32 by default, so library results do not depend on the machine)."""
    device = var.pos_1LC.device
    if generator is None and seed is not None:
        generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    vq = var.vae.quantize
    labels = make_labels(var, B, label_B, generator, device)
    S = len(var.patch_nums)
    with _autocast(device, dtype):
        cond_BD = var.class_emb(torch.cat((labels, torch.full_like(labels, var.num_classes))))
        lvl_pos = var.lvl_pos()
        token_map = cond_BD.unsqueeze(1).expand(2 * B, var.first_l, -1) + var.pos_start + lvl_pos[:, :var.first_l]
        H = var.patch_nums[-1]
        f_hat = torch.zeros(B, var.Cvae, H, H, device=device)
        idx_list: list[torch.Tensor] = []
        cur_L = 0
        var.set_kv_caching(True)
        try:
            for si, pn in enumerate(var.patch_nums):
                cur_L += pn * pn
                h_BLC = var.run_blocks(token_map, cond_BD, None)
                logits_BlV = cfg_mix(var.logits(h_BLC, cond_BD), cfg, si, S)
                # filters logits in place: more_smooth then uses the filtered logits, as upstream
                idx_Bl = draw_tokens(logits_BlV, top_k=top_k, top_p=top_p, generator=generator)
                idx_list.append(idx_Bl)
                if more_smooth:  # visuals only, never for FID (spec 3.9)
                    ratio = si / (S - 1) if S > 1 else 1.0
                    tau = max(0.27 * (1 - 0.95 * ratio), 0.005)
                    gumbel = -torch.empty_like(logits_BlV).exponential_(generator=generator).log()
                    w = ((logits_BlV * (1 + ratio) + gumbel) / tau).softmax(dim=-1)
                    h_BlC = w @ vq.embedding.weight.unsqueeze(0)
                else:
                    h_BlC = vq.embedding(idx_Bl)
                h_BChw = h_BlC.transpose(1, 2).reshape(B, var.Cvae, pn, pn)
                f_hat, nxt = vq.next_autoregressive_input(si, f_hat, h_BChw)
                if si != S - 1:
                    nxt_BlCv = nxt.reshape(B, var.Cvae, -1).transpose(1, 2)
                    pn_next = var.patch_nums[si + 1]
                    token_map = var.word_embed(nxt_BlCv) + lvl_pos[:, cur_L:cur_L + pn_next * pn_next]
                    token_map = token_map.repeat(2, 1, 1)  # both CFG halves get identical inputs
        finally:
            var.set_kv_caching(False)
    return SampleResult(idx_list, f_hat.float(), labels)


@torch.inference_mode()
def decode_images(var, f_hat: torch.Tensor, dtype: torch.dtype | str = torch.float32) -> torch.Tensor:
    """f_hat -> images in [0, 1] (float32)."""
    with _autocast(f_hat.device, dtype):
        img = var.vae.fhat_to_img(f_hat)
    return (img.float() + 1) / 2


def sample_images(var, B: int, label_B=None, **kw) -> torch.Tensor:
    res = sample_tokens(var, B, label_B, **kw)
    return decode_images(var, res.f_hat, kw.get("dtype", torch.float32))
