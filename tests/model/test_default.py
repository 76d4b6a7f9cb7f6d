"""The shipped default model loads, samples real digits, and the shipped classifier recognises them (issue 4)."""

import torch

from fpqvar.model import load_model
from fpqvar.model.default import default_paths


def test_shipped_files_exist_and_are_small():
    p = default_paths()
    total = sum(f.stat().st_size for f in (p.var, p.vae, p.classifier, p.reference_stats))
    assert total < 30e6  # "under about 30 MB" (issue 4)
    assert p.card.is_file()


def test_default_samples_are_recognised():
    from fpqvar.eval.reference import load_digit_net

    var = load_model("default")
    labels = torch.arange(10).repeat_interleave(3)
    img = var.sample(len(labels), labels, seed=0, cfg=1.5, top_k=900, top_p=0.96)
    assert img.shape == (30, 3, 32, 32) and img.dtype == torch.float32
    assert img.min() >= 0 and img.max() <= 1
    with torch.no_grad():
        acc = (load_digit_net()(img).argmax(-1) == labels).float().mean().item()
    # The model card measures 100 % on 1,000 samples at these settings; 30 samples must stay far above chance.
    assert acc >= 0.9, acc
