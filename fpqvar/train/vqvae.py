"""Train the default model's multi-scale VQVAE on the bundled digits (L1 + MSE reconstruction + VQ loss).

Codebook entries unused for ``restart_every`` steps are re-initialised from random encoder outputs of the
current batch (dead-code restart), so that a small CPU run keeps the vocabulary alive.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from fpqvar.data.digits import load_split
from fpqvar.model import build_vqvae
from fpqvar.model.zoo import DEFAULT_VAE, VQVAEConfig
from fpqvar.train.loop import LoopConfig, run_loop


def train_vqvae(out_dir: str | Path, loop: LoopConfig, config: VQVAEConfig = DEFAULT_VAE,
                restart_every: int = 100):
    x_all, _ = load_split("train").tensors()
    vae = build_vqvae(config)
    vae.quantize.embedding.weight.data.uniform_(-1 / config.vocab_size, 1 / config.vocab_size,
                                                generator=torch.Generator().manual_seed(loop.seed))
    usage_V = torch.zeros(config.vocab_size)
    last = {}

    def step(gen: torch.Generator) -> dict:
        idx = torch.randint(0, len(x_all), (loop.batch_size,), generator=gen)
        x = x_all[idx]
        # light augmentation: random shift by up to 2 px (the zero border makes it safe)
        dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        rec, vq_loss, usage = vae(x)
        rec = rec.float()
        l1, l2 = (rec - x).abs().mean(), F.mse_loss(rec, x)
        usage_V.add_(usage.sum(0))
        last["x"] = x
        return {"loss": l1 + l2 + vq_loss, "l1": l1.detach(), "mse": l2.detach(), "vq": vq_loss.detach(),
                "used_codes": (usage.sum(0) > 0).sum().float()}

    def on_step(s: int, gen: torch.Generator) -> None:
        if s % restart_every or s > loop.steps * 0.8:
            return
        dead = (usage_V == 0).nonzero().flatten()
        if len(dead):
            with torch.no_grad():
                f = vae.quant_conv(vae.encoder(last["x"])).float().permute(0, 2, 3, 1).reshape(-1, config.z_channels)
                pick = torch.randint(0, len(f), (len(dead),), generator=gen)
                vae.quantize.embedding.weight.data[dead] = f[pick]
        usage_V.zero_()

    log = run_loop(vae, loop, out_dir, step, desc="train vqvae", on_step=on_step)
    return vae, log
