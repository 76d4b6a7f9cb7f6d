"""VQGAN-style encoder / decoder of the multi-scale VQVAE (shared/spec/var-model.md sections 2.2-2.4).

Module and key names follow the official checkpoint ``vae_ch160v4096z32.pth`` (section 2.6).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """h = conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))); out = shortcut(x) + h. 1x1 shortcut only if in != out."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x_BCHW)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x_BCHW if self.nin_shortcut is None else self.nin_shortcut(x_BCHW)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with one fused 1x1 qkv conv (C -> 3C), output [q | k | v]."""

    def __init__(self, channels: int):
        super().__init__()
        self.C = channels
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_BCHW.shape
        q, k, v = self.qkv(self.norm(x_BCHW)).reshape(B, 3, C, H * W).unbind(1)  # each (B, C, HW)
        # weights[b, i, j] = softmax_j(q_i . k_j / sqrt(C))
        w_BNN = torch.bmm(q.transpose(1, 2), k).mul_(C ** -0.5).softmax(dim=-1)
        h_BCN = torch.bmm(v, w_BNN.transpose(1, 2))
        return x_BCHW + self.proj_out(h_BCN.reshape(B, C, H, W))


class Downsample2x(nn.Module):
    """Zero-pad right/bottom by one pixel, then a 3x3 stride-2 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample2x(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (res blocks), ``attn`` (after each block, lowest level only) and an
    optional ``downsample`` / ``upsample`` (as attributes, so that keys read ``down.0.downsample.conv``)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        """Each res block, followed by its attention block where the level has them."""
        for j, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


class _Mid(nn.Module):
    def __init__(self, channels: int, using_sa: bool):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels) if using_sa else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, in_channels: int,
                 z_channels: int, using_sa: bool = True, using_mid_sa: bool = True):
        super().__init__()
        n = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        in_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i in range(n):
            level = _Level()
            block_in, block_out = ch * in_mult[i], ch * ch_mult[i]
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if i == n - 1 and using_sa:
                    level.attn.append(AttnBlock(block_in))
            if i != n - 1:
                level.downsample = Downsample2x(block_in)
            self.down.append(level)
        self.mid = _Mid(block_in, using_mid_sa)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, 1, 1)

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x_B3HW)
        for level in self.down:
            h = level.run_blocks(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Levels are stored by index (``up.i``) but run from the lowest resolution (last index) to level 0."""

    def __init__(self, *, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, in_channels: int,
                 z_channels: int, using_sa: bool = True, using_mid_sa: bool = True):
        super().__init__()
        n = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = _Mid(block_in, using_mid_sa)
        levels: list[_Level] = []
        for i in reversed(range(n)):
            level = _Level()
            block_out = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if i == n - 1 and using_sa:
                    level.attn.append(AttnBlock(block_in))
            if i != 0:
                level.upsample = Upsample2x(block_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, in_channels, 3, 1, 1)

    def forward(self, z_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z_BCHW))
        for level in reversed(self.up):
            h = level.run_blocks(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
