"""Train the default model's class-conditional VAR on the VQVAE's multi-scale tokens of the digits.

Tokens and teacher-forcing inputs are computed once with the frozen VQVAE. Classifier-free guidance dropout
(labels -> null class with probability ``cond_drop_rate``) uses the loop's generator.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from fpqvar.data.digits import load_split
from fpqvar.model import build_var
from fpqvar.model.zoo import DEFAULT_VAR, VARConfig
from fpqvar.train.loop import LoopConfig, run_loop


@torch.no_grad()
def encode_dataset(vae, x_all: torch.Tensor, batch: int = 250, shifts: tuple[int, ...] = (12,)):
    """Ids (N*, L) and teacher-forcing inputs (N*, L - 1, Cvae) for every image and every shift.

    A shift id s in 0..24 moves the digit by (dy, dx) = (s // 5 - 2, s % 5 - 2) pixels (12 = unshifted); the
    zero border makes shifts of up to 2 px lossless.
    """
    ids, inputs = [], []
    for s in shifts:
        if not 0 <= s <= 24:
            raise ValueError(f"shift id must be in 0..24, got {s}")
        xs = torch.roll(x_all, shifts=(s // 5 - 2, s % 5 - 2), dims=(2, 3))
        for i in range(0, len(xs), batch):
            idx_list = vae.img_to_idx(xs[i:i + batch])
            ids.append(torch.cat(idx_list, dim=1))
            inputs.append(vae.idx_to_var_input(idx_list))
    return torch.cat(ids), torch.cat(inputs)


def train_var(vae, out_dir: str | Path, loop: LoopConfig, config: VARConfig = DEFAULT_VAR,
              shifts: tuple[int, ...] = (12,)):
    vae.eval().requires_grad_(False)
    x_all, y_all = load_split("train").tensors()
    ids_NL, inp_NLC = encode_dataset(vae, x_all, shifts=shifts)
    y_all = y_all.repeat(len(shifts))
    var = build_var(vae, config)
    var.init_weights(generator=torch.Generator().manual_seed(loop.seed))

    def step(gen: torch.Generator) -> dict:
        idx = torch.randint(0, len(ids_NL), (loop.batch_size,), generator=gen)
        labels = y_all[idx].clone()
        drop = torch.rand(loop.batch_size, generator=gen) < config.cond_drop_rate
        labels[drop] = config.num_classes
        logits = var(labels, inp_NLC[idx])
        loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), ids_NL[idx].reshape(-1))
        with torch.no_grad():
            last = var.begin_ends[-1][0]
            acc_last = (logits[:, last:].argmax(-1) == ids_NL[idx][:, last:]).float().mean()
        return {"loss": loss, "acc_last_scale": acc_last}

    log = run_loop(var, loop, out_dir, step, desc="train var")
    return var, log
