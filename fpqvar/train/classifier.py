"""Train the digit classifier behind the default model's domain metrics (FID features, IS, accuracy)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from fpqvar.data.digits import load_split
from fpqvar.model.digit_net import DigitNet
from fpqvar.train.loop import LoopConfig, run_loop


def train_classifier(out_dir: str | Path, loop: LoopConfig):
    x_all, y_all = load_split("train").tensors()
    x_all = (x_all + 1) / 2  # the classifier sees images in [0, 1], as the sampler outputs
    net = DigitNet()

    def step(gen: torch.Generator) -> dict:
        idx = torch.randint(0, len(x_all), (loop.batch_size,), generator=gen)
        dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
        x = torch.roll(x_all[idx], shifts=(dy, dx), dims=(2, 3))
        logits = net(x).float()
        loss = F.cross_entropy(logits, y_all[idx])
        return {"loss": loss, "acc": (logits.argmax(-1) == y_all[idx]).float().mean()}

    log = run_loop(net, loop, out_dir, step, desc="train classifier")
    with torch.no_grad():
        xh, yh = load_split("heldout").tensors()
        acc = (net((xh + 1) / 2).argmax(-1) == yh).float().mean().item()
    return net, log, acc
