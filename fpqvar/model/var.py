"""The VAR transformer (shared/spec/var-model.md section 3): one readable file, forward top to bottom.

Key names match the official ``var_d{16,20,24,30,36}.pth``. The VQVAE is held outside the module tree (a plain
tuple) so that its keys never enter the VAR state_dict. Quantization and transforms replace the ``nn.Linear``
modules ``attn.mat_qkv``, ``attn.proj``, ``ffn.fc1``, ``ffn.fc2`` from outside; the forward only calls them.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from fpqvar.model.zoo import VARConfig


class SelfAttention(nn.Module):
    """Multi-head self-attention, L2-normalised ("cosine") when ``attn_l2_norm`` (spec 3.4), with a KV cache."""

    def __init__(self, C: int, H: int, attn_l2_norm: bool):
        super().__init__()
        self.C, self.H, self.head_dim = C, H, C // H
        self.attn_l2_norm = attn_l2_norm
        if attn_l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, H, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100)
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.q_bias = nn.Parameter(torch.zeros(C))
        self.v_bias = nn.Parameter(torch.zeros(C))
        self.register_buffer("zero_k_bias", torch.zeros(C))
        self.mat_qkv = nn.Linear(C, 3 * C, bias=False)
        self.proj = nn.Linear(C, C)
        self.caching = False
        self.cached_k: torch.Tensor | None = None
        self.cached_v: torch.Tensor | None = None
        # Optional hook applied to the cached K / V of earlier scales before they are reused (KV-cache
        # quantization, fpqvar-method.md section 9). Set from outside; None = float cache.
        self.kv_quantizer: Callable[[torch.Tensor], torch.Tensor] | None = None
        # Optional hooks on the attention matmul operands (sites "q", "k", "v", "attn_map" of model/sites.py),
        # applied right before the matmuls; k and v include the cached keys / values. Set from outside
        # (attention quantization); empty = plain scaled-dot-product attention.
        self.operand_hooks: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}

    def kv_caching(self, enable: bool) -> None:
        self.caching, self.cached_k, self.cached_v = enable, None, None

    def forward(self, x_BLC: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        B, L, C = x_BLC.shape
        # q/v biases are added after the (possibly quantized) GEMM; k has none.
        bias_3C = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = self.mat_qkv(x_BLC)
        qkv_BL3Hc = (qkv + bias_3C.to(qkv.dtype)).view(B, L, 3, self.H, self.head_dim)
        q, k, v = qkv_BL3Hc.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, c)
        if self.attn_l2_norm:
            scale_mul = self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
            q = F.normalize(q, dim=-1).mul(scale_mul)
            k = F.normalize(k, dim=-1)
        if self.caching:
            if self.cached_k is None:
                self.cached_k, self.cached_v = k, v
            else:
                prev_k, prev_v = self.cached_k, self.cached_v
                if self.kv_quantizer is not None:
                    prev_k, prev_v = self.kv_quantizer(prev_k), self.kv_quantizer(prev_v)
                k = self.cached_k = torch.cat((prev_k, k), dim=2)
                v = self.cached_v = torch.cat((prev_v, v), dim=2)
        dt = v.dtype  # under autocast q, k leave the L2-norm in fp32: compute attention in the GEMM dtype
        mask = None if attn_bias is None else attn_bias.to(dt)
        q, k = q.to(dt), k.to(dt)
        hooks = self.operand_hooks
        if not hooks:
            o_BHLc = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        else:
            q, k, v = (hooks[n](t) if n in hooks else t for n, t in (("q", q), ("k", k), ("v", v)))
            if "attn_map" in hooks:  # the softmax map is an operand itself: compute attention explicitly
                s_BHLL = (q @ k.transpose(-2, -1)) * self.scale
                if mask is not None:
                    s_BHLL = s_BHLL + mask
                o_BHLc = hooks["attn_map"](s_BHLL.float().softmax(dim=-1).to(dt)) @ v
            else:
                o_BHLc = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.proj(o_BHLc.transpose(1, 2).reshape(B, L, C))


class FFN(nn.Module):
    def __init__(self, C: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(C, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, C)

    def forward(self, x_BLC: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x_BLC)))


class AdaLNSelfAttn(nn.Module):
    """x += gamma1 Attn(LN(x)(1+scale1)+shift1); x += gamma2 FFN(LN(x)(1+scale2)+shift2) (spec 3.3).

    ada_lin chunk order: gamma1, gamma2, scale1, scale2, shift1, shift2.
    """

    def __init__(self, cfg: VARConfig):
        super().__init__()
        C = cfg.C
        self.C, self.shared_aln = C, cfg.shared_aln
        self.attn = SelfAttention(C, int(cfg.num_heads), cfg.attn_l2_norm)
        self.ffn = FFN(C, cfg.mlp_hidden)
        self.ln_wo_grad = nn.LayerNorm(C, eps=cfg.norm_eps, elementwise_affine=False)
        if cfg.shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, C) / C**0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))

    def modulation(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The six (B, 1, C) AdaLN vectors; ``cond`` is (B, D), or (B, 1, 6, C) from the shared ada_lin."""
        if self.shared_aln:
            return (self.ada_gss + cond).unbind(2)
        return self.ada_lin(cond).view(-1, 1, 6, self.C).unbind(2)

    def forward(self, x_BLC: torch.Tensor, cond: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.modulation(cond)
        a_BLC = self.ln_wo_grad(x_BLC) * (scale1 + 1) + shift1
        x_BLC = x_BLC + self.attn(a_BLC, attn_bias) * gamma1
        f_BLC = self.ln_wo_grad(x_BLC) * (scale2 + 1) + shift2
        return x_BLC + self.ffn(f_BLC) * gamma2


class AdaLNBeforeHead(nn.Module):
    def __init__(self, C: int, eps: float):
        super().__init__()
        self.C = C
        self.ln_wo_grad = nn.LayerNorm(C, eps=eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 2 * C))

    def forward(self, x_BLC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.C).unbind(2)
        return self.ln_wo_grad(x_BLC) * (scale + 1) + shift


class SharedAdaLin(nn.Linear):
    def forward(self, cond_BD: torch.Tensor) -> torch.Tensor:
        C = self.weight.shape[0] // 6
        return super().forward(cond_BD).view(-1, 1, 6, C)


class VAR(nn.Module):
    def __init__(self, vae: nn.Module, cfg: VARConfig):
        super().__init__()
        if vae.config.vocab_size != cfg.vocab_size or vae.config.z_channels != cfg.z_channels:
            raise ValueError(f"VAR config (vocab {cfg.vocab_size}, Cvae {cfg.z_channels}) does not match the VQVAE "
                             f"(vocab {vae.config.vocab_size}, Cvae {vae.config.z_channels})")
        if tuple(vae.config.patch_nums) != tuple(cfg.patch_nums):
            raise ValueError(f"VAR patch_nums {cfg.patch_nums} != VQVAE patch_nums {vae.config.patch_nums}")
        self.config = cfg
        C, self.Cvae, self.V = cfg.C, cfg.z_channels, cfg.vocab_size
        self.C, self.num_classes, self.patch_nums = C, cfg.num_classes, tuple(cfg.patch_nums)
        self.first_l = self.patch_nums[0] ** 2
        self.L = cfg.num_tokens
        self.begin_ends, cur = [], 0
        for pn in self.patch_nums:
            self.begin_ends.append((cur, cur + pn * pn))
            cur += pn * pn
        self.vae_proxy = (vae,)  # not a submodule: no VQVAE keys in the VAR state_dict

        init_std = math.sqrt(1 / C / 3)
        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, C))
        self.pos_1LC = nn.Parameter(torch.empty(1, self.L, C))
        lvl = torch.cat([torch.full((pn * pn,), i) for i, pn in enumerate(self.patch_nums)]).view(1, self.L)
        self.register_buffer("lvl_1L", lvl)
        # Block-causal mask: query q may see key k iff scale(q) >= scale(k) (spec 3.7).
        allowed = lvl.view(self.L, 1) >= lvl.view(1, self.L)
        bias = torch.zeros(self.L, self.L).masked_fill_(~allowed, float("-inf"))
        self.register_buffer("attn_bias_for_masking", bias.view(1, 1, self.L, self.L))
        self.word_embed = nn.Linear(self.Cvae, C)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, C)
        self.lvl_embed = nn.Embedding(len(self.patch_nums), C)
        self.shared_ada_lin = (nn.Sequential(nn.SiLU(), SharedAdaLin(C, 6 * C)) if cfg.shared_aln
                               else nn.Identity())
        self.blocks = nn.ModuleList([AdaLNSelfAttn(cfg) for _ in range(cfg.depth)])
        self.head_nm = AdaLNBeforeHead(C, cfg.norm_eps)
        self.head = nn.Linear(C, self.V)
        self._init_std = init_std

    @property
    def vae(self) -> nn.Module:
        return self.vae_proxy[0]

    # ----------------------------------------------------------------- initialisation (training from scratch)
    @torch.no_grad()
    def init_weights(self, *, generator: torch.Generator | None = None, init_adaln: float = 0.5,
                     init_adaln_gamma: float = 1e-5, init_head: float = 0.02) -> None:
        """Upstream-style init: trunc-normal linears (std sqrt(1/(3C))), small AdaLN gains, scaled residuals."""
        std = self._init_std

        def tn(t: torch.Tensor, s: float) -> None:
            t.copy_(torch.randn(t.shape, generator=generator).clamp_(-2, 2) * s)

        for m in self.modules():
            if isinstance(m, nn.Linear):
                tn(m.weight, std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                tn(m.weight, std)
        tn(self.pos_start, std)
        tn(self.pos_1LC, std)
        self.head.weight.mul_(init_head)
        self.head_nm.ada_lin[-1].weight.mul_(init_adaln)
        C = self.C
        for b in self.blocks:
            b.attn.proj.weight.div_(math.sqrt(2 * len(self.blocks)))
            b.ffn.fc2.weight.div_(math.sqrt(2 * len(self.blocks)))
            if not b.shared_aln:
                w = b.ada_lin[-1].weight
                w[: 2 * C].mul_(init_adaln_gamma)
                w[2 * C:].mul_(init_adaln)
                b.ada_lin[-1].bias.zero_()  # gammas start near 0: residual branches grow from zero

    # ----------------------------------------------------------------- pieces shared by forward and sampling
    def lvl_pos(self) -> torch.Tensor:
        return self.lvl_embed(self.lvl_1L) + self.pos_1LC  # (1, L, C)

    def logits(self, h_BLC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        """Head in float32 (upstream casts the hidden state and the logits to fp32)."""
        return self.head(self.head_nm(h_BLC.float(), cond_BD).float()).float()

    def run_blocks(self, x_BLC: torch.Tensor, cond_BD: torch.Tensor, attn_bias: torch.Tensor | None):
        cond = self.shared_ada_lin(cond_BD)
        for block in self.blocks:
            x_BLC = block(x_BLC, cond, attn_bias)
        return x_BLC

    # ----------------------------------------------------------------- teacher-forced forward
    def forward(self, label_B: torch.Tensor, x_BLCv: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, V) for all positions, given labels (B,) and next-scale inputs (B, L - first_l, Cvae).

        Labels are used as given (classifier-free dropout is the trainer's job, with its own generator).
        """
        B = x_BLCv.shape[0]
        if x_BLCv.shape[1:] != (self.L - self.first_l, self.Cvae):
            raise ValueError(f"VAR.forward: x_BLCv must be (B, {self.L - self.first_l}, {self.Cvae}), "
                             f"got {tuple(x_BLCv.shape)}")
        with torch.autocast(device_type=x_BLCv.device.type, enabled=False):
            cond_BD = self.class_emb(label_B)
            sos_BlC = cond_BD.unsqueeze(1).expand(B, self.first_l, -1) + self.pos_start
            x_BLC = torch.cat((sos_BlC, self.word_embed(x_BLCv.float())), dim=1) + self.lvl_pos()
        h_BLC = self.run_blocks(x_BLC, cond_BD, self.attn_bias_for_masking)
        return self.logits(h_BLC, cond_BD)

    def set_kv_caching(self, enable: bool) -> None:
        for b in self.blocks:
            b.attn.kv_caching(enable)

    def sample(self, B: int, label_B=None, *, seed: int | None = 0, cfg: float = 1.5, top_k: int = 0,
               top_p: float = 0.0, more_smooth: bool = False, dtype: torch.dtype = torch.float32,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Class-conditional sampling with KV cache and CFG; images (B, 3, H, W) in [0, 1]. See sampling.py."""
        from fpqvar.model.sampling import sample_images

        return sample_images(self, B, label_B, seed=seed, cfg=cfg, top_k=top_k, top_p=top_p,
                             more_smooth=more_smooth, dtype=dtype, generator=generator)
