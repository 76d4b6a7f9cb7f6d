"""Calibration: per-scale statistics equal a full capture (EXACT), bounded seeded reservoir."""

import pytest
import torch

from fpqvar.model.sites import model_sites
from fpqvar.quant.calibrate import CalibConfig, calibrate
from tests.quant.conftest import make_small


def _full_capture(var, labels, tokens):
    """Reference: every input row of every site in a teacher-forced pass on the same tokens (both CFG halves)."""
    store, hooks = {}, []
    for s in model_sites(var):
        if s.kind == "linear":
            hooks.append(var.get_submodule(s.module).register_forward_pre_hook(
                lambda m, a, k=s.name: store.__setitem__(k, a[0].detach().clone())))
    with torch.no_grad():
        x = var.vae.idx_to_var_input(tokens)
        var(torch.cat((labels, torch.full_like(labels, var.num_classes))), torch.cat((x, x)))
    for h in hooks:
        h.remove()
    return store


def test_stats_match_full_capture_and_reservoir_is_bounded():
    _, var = make_small()
    cfg = CalibConfig(num_samples=6, batch_size=6, max_tokens_per_scale=40)
    cal = calibrate(var, cfg, progress=False)
    assert cal.labels.tolist() == [0, 1, 2, 3, 4, 0]  # 5 classes, cycling
    full = _full_capture(var, cal.labels, cal.tokens)
    linear = [s.name for s in model_sites(var) if s.kind == "linear"]
    assert sorted(cal.stats) == sorted(linear)  # every linear site (ada_lin, head, word_embed included)
    L = var.begin_ends[-1][1]
    checked = 0
    for name, x in full.items():
        if x.dim() == 3 and x.shape[1] != L:
            continue  # word_embed sees the tokens of scales 2.. only (checked by the model tests)
        st = cal.stats[name]
        checked += 1
        if x.dim() == 2:  # the class condition (ada_lin): one row per sample, the same for every scale
            assert torch.equal(st.absmax_SC[0], x.abs().amax(dim=0))
            continue
        for si, (b, e) in enumerate(var.begin_ends):
            x_BLC = x
            rows = x_BLC[:, b:e].reshape(-1, x_BLC.shape[-1])
            assert torch.equal(st.absmax_SC[si], rows.abs().amax(dim=0))
            assert st.seen[si] == rows.shape[0] == 12 * (e - b)
            r = st.rows[si]
            assert r.shape[0] == min(40, rows.shape[0])
            # every reservoir row is one of the captured rows
            assert bool((r.unsqueeze(1) == rows.unsqueeze(0)).all(-1).any(1).all())
    assert checked >= len(linear) - 1


def test_reservoir_is_seeded():
    _, var = make_small()
    cfg = CalibConfig(num_samples=4, batch_size=2, max_tokens_per_scale=16, reservoir_sites=("*.ffn.fc1",))
    a = calibrate(var, cfg, progress=False)
    b = calibrate(var, cfg, progress=False)
    for k in a.stats:
        for ra, rb in zip(a.stats[k].rows, b.stats[k].rows):
            assert torch.equal(ra, rb)
    assert a.has_rows("blocks.0.ffn.fc1") and not a.has_rows("blocks.0.attn.proj")
    with pytest.raises(ValueError, match="no token rows for 'blocks.0.attn.proj'"):
        a.x_per_scale("blocks.0.attn.proj")


def test_class_lists():
    assert CalibConfig().class_list(1000) == list(range(100))  # upstream: one per class 0..99
    ten = CalibConfig().class_list(10)  # the default model: 10 per class
    assert len(ten) == 100 and all(ten.count(c) == 10 for c in range(10))
    with pytest.raises(ValueError, match="num_samples"):
        CalibConfig(num_samples=0)
    with pytest.raises(ValueError, match="out of range"):
        CalibConfig(num_samples=1, classes=(7,)).class_list(5)
