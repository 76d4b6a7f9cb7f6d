"""Multi-scale residual VQVAE (shared/spec/var-model.md section 2): quantizer, Phi convs, f_hat accumulation.

Public surface used by the VAR and by training:
  ``img_to_idx(img)``, ``idx_to_img(idx_list)``, ``idx_to_var_input(idx_list)``, ``fhat_to_img(f_hat)``,
  ``next_autoregressive_input(si, f_hat, h)``, and ``forward`` (training: reconstruction + VQ loss).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fpqvar.model.vqvae_blocks import Decoder, Encoder
from fpqvar.model.zoo import VQVAEConfig


class Phi(nn.Conv2d):
    """Residual 3x3 mix: Phi(h) = (1 - r) h + r conv(h), r = |quant_resi| (0.5 upstream)."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, 3, 1, 1)
        self.ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


def phi_index_table(num_scales: int, num_phi: int) -> list[int]:
    """Which of the K partially shared Phi convs serves each scale.

    Scale si sits at at = si / (S - 1); the conv whose tick (linspace(1/(3K), 1 - 1/(3K), K)) is nearest wins,
    the first one on exact ties; computed in float64 as upstream (spec section 2.5: [0,0,1,1,1,2,2,3,3,3] for
    10 scales and K = 4).
    """
    if num_phi == 1:
        return [0] * num_scales
    ticks = np.linspace(1 / (3 * num_phi), 1 - 1 / (3 * num_phi), num_phi, dtype=np.float64)
    out = []
    for si in range(num_scales):
        at = si / (num_scales - 1) if num_scales > 1 else 0.0
        out.append(int(np.argmin(np.abs(ticks - at))))
    return out


class _QuantResi(nn.Module):
    """Holds ``qresi_ls`` (key ``quantize.quant_resi.qresi_ls.{k}``)."""

    def __init__(self, phis: list[Phi]):
        super().__init__()
        self.qresi_ls = nn.ModuleList(phis)


class MultiScaleQuantizer(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.vocab_size, self.Cvae = cfg.vocab_size, cfg.z_channels
        self.patch_nums = tuple(cfg.patch_nums)
        self.beta = cfg.beta
        num_phi = cfg.share_quant_resi if cfg.share_quant_resi > 0 else len(self.patch_nums)
        self.quant_resi = _QuantResi([Phi(self.Cvae, cfg.quant_resi) for _ in range(num_phi)])
        self.phi_of_scale = (phi_index_table(len(self.patch_nums), num_phi) if cfg.share_quant_resi > 0
                             else list(range(len(self.patch_nums))))
        # Training-only usage statistic, kept because the official checkpoint stores it.
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.patch_nums), self.vocab_size))
        self.embedding = nn.Embedding(self.vocab_size, self.Cvae)

    def phi(self, si: int, h_BChw: torch.Tensor) -> torch.Tensor:
        return self.quant_resi.qresi_ls[self.phi_of_scale[si]](h_BChw)

    def nearest_code(self, z_NC: torch.Tensor) -> torch.Tensor:
        """argmin_v ||z||^2 + ||e_v||^2 - 2 z.e_v (plain L2, using_znorm False), float32."""
        e_VC = self.embedding.weight.float()
        z_NC = z_NC.float()
        d_NV = (z_NC.square().sum(1, keepdim=True) + e_VC.square().sum(1)).addmm_(z_NC, e_VC.T, alpha=-2)
        return d_NV.argmin(dim=1)

    def _upsample_code(self, si: int, idx_Bl: torch.Tensor, H: int) -> torch.Tensor:
        pn = self.patch_nums[si]
        h_BChw = self.embedding(idx_Bl).transpose(1, 2).reshape(idx_Bl.shape[0], self.Cvae, pn, pn)
        if si != len(self.patch_nums) - 1:
            h_BChw = F.interpolate(h_BChw, size=(H, H), mode="bicubic")
        return self.phi(si, h_BChw)

    def encode(self, f_BChw: torch.Tensor, *, train_loss: bool = False):
        """Residual multi-scale quantization of f. Returns (idx_list, f_hat, vq_loss, usage_SV).

        With ``train_loss`` the returned f_hat carries a straight-through gradient to f and vq_loss the
        commitment + codebook terms averaged over scales (upstream VectorQuantizer2 training forward).
        """
        B, C, H, W = f_BChw.shape
        f_ng = f_BChw.detach().float()
        f_rest = f_ng.clone()
        f_hat = torch.zeros_like(f_rest)
        S = len(self.patch_nums)
        idx_list, loss = [], f_BChw.new_zeros(())
        usage = torch.zeros(S, self.vocab_size, device=f_BChw.device)
        for si, pn in enumerate(self.patch_nums):
            z = F.interpolate(f_rest, size=(pn, pn), mode="area") if si != S - 1 else f_rest
            idx_N = self.nearest_code(z.permute(0, 2, 3, 1).reshape(-1, C))
            usage[si] = idx_N.bincount(minlength=self.vocab_size).float()
            idx_Bl = idx_N.view(B, pn * pn)
            h = self._upsample_code(si, idx_Bl, H)
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            idx_list.append(idx_Bl)
            if train_loss:
                loss = loss + F.mse_loss(f_hat.detach(), f_BChw) * self.beta + F.mse_loss(f_hat, f_ng)
        if train_loss:
            loss = loss / S
            f_hat = (f_hat.detach() - f_ng) + f_BChw  # straight-through
        return idx_list, f_hat, loss, usage

    def idx_to_fhat(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        B, H = idx_list[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(B, self.Cvae, H, H, device=idx_list[0].device)
        for si, idx_Bl in enumerate(idx_list):
            f_hat = f_hat + self._upsample_code(si, idx_Bl, H).float()
        return f_hat

    def idx_to_var_input(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing inputs: (B, L - first_l, Cvae) float32, the downsampled running f_hat per next scale."""
        B, H = idx_list[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(B, self.Cvae, H, H, device=idx_list[0].device)
        pieces = []
        for si in range(len(self.patch_nums) - 1):
            f_hat = f_hat + self._upsample_code(si, idx_list[si], H).float()
            pn_next = self.patch_nums[si + 1]
            nxt = F.interpolate(f_hat, size=(pn_next, pn_next), mode="area")
            pieces.append(nxt.view(B, self.Cvae, -1).transpose(1, 2))
        return torch.cat(pieces, dim=1) if pieces else f_hat.new_zeros(B, 0, self.Cvae)

    def next_autoregressive_input(self, si: int, f_hat: torch.Tensor, h_BChw: torch.Tensor):
        """Add scale si's code map h (B, Cvae, pn, pn) into f_hat; return (f_hat, next input map)."""
        H = self.patch_nums[-1]
        if si != len(self.patch_nums) - 1:
            h = self.phi(si, F.interpolate(h_BChw, size=(H, H), mode="bicubic"))
            f_hat = f_hat + h.float()
            pn_next = self.patch_nums[si + 1]
            return f_hat, F.interpolate(f_hat, size=(pn_next, pn_next), mode="area")
        f_hat = f_hat + self.phi(si, h_BChw).float()
        return f_hat, f_hat


class VQVAE(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.config = cfg
        kw = dict(ch=cfg.ch, ch_mult=cfg.ch_mult, num_res_blocks=cfg.num_res_blocks, in_channels=cfg.in_channels,
                  z_channels=cfg.z_channels, using_sa=cfg.using_sa, using_mid_sa=cfg.using_mid_sa)
        self.encoder = Encoder(**kw)
        self.decoder = Decoder(**kw)
        self.quantize = MultiScaleQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, 1, 1)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, 1, 1)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.quantize.patch_nums

    def _check_img(self, img: torch.Tensor) -> None:
        s = self.config.image_size
        if img.ndim != 4 or img.shape[1] != self.config.in_channels or img.shape[-2:] != (s, s):
            raise ValueError(f"VQVAE expects images (B, {self.config.in_channels}, {s}, {s}) in [-1, 1], "
                             f"got shape {tuple(img.shape)}")

    def forward(self, img_B3HW: torch.Tensor):
        """Training: returns (reconstruction in [-1, 1] unclamped, vq_loss, usage_SV)."""
        self._check_img(img_B3HW)
        f = self.quant_conv(self.encoder(img_B3HW))
        _, f_hat, vq_loss, usage = self.quantize.encode(f, train_loss=True)
        return self.decoder(self.post_quant_conv(f_hat)), vq_loss, usage

    @torch.no_grad()
    def img_to_idx(self, img_B3HW: torch.Tensor) -> list[torch.Tensor]:
        self._check_img(img_B3HW)
        f = self.quant_conv(self.encoder(img_B3HW)).float()
        return self.quantize.encode(f)[0]

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1]."""
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1)

    def idx_to_img(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        return self.fhat_to_img(self.quantize.idx_to_fhat(idx_list))

    def idx_to_var_input(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        return self.quantize.idx_to_var_input(idx_list)
