"""A real layer of the shipped default model for the tile tests: ``blocks.0.attn.proj`` (256 -> 256, bias),
its input captured while sampling one image (seeded), at the 4x4 scale (16 tokens, the conditional half of
the CFG batch). Weights and activations are quantized by the project's FP4 quantizer
(``fpqvar.formats.quantize``, E2M1, groups of 128, RNE); the datapath's quantizer must give the same codes."""

from __future__ import annotations

import numpy as np

LAYER = "blocks.0.attn.proj"
SCALE_TOKENS = 16  # patch 4x4 of PATCH_NUMS_DEFAULT


def default_layer():
    """``(x_TK, a_TK codes, sa_TG, w_OK codes, sw_OG, b_O, w_OK, n_differ)``; ``n_differ``: codes where the
    software quantizer and the datapath's exact quantizer disagree (see ``_check_against_datapath``)."""
    import torch

    from fpqvar.formats import quantize
    from fpqvar.model import load_model

    torch.set_num_threads(1)
    var = load_model("default")
    mod = var.get_submodule(LAYER)
    seen = []
    hook = mod.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    try:
        with torch.no_grad():
            var.sample(1, torch.tensor([3]), seed=0)
    finally:
        hook.remove()
    x_BLC = next(t for t in seen if t.shape[1] == SCALE_TOKENS)
    x = x_BLC[0].float().numpy()
    w = mod.weight.detach().float().numpy()
    b = mod.bias.detach().float().numpy()
    qa = quantize(torch.from_numpy(x), "e2m1", group_size=128, rounding="rne")
    qw = quantize(torch.from_numpy(w), "e2m1", group_size=128, rounding="rne")
    a, sa = qa.codes.numpy().astype(np.int64), qa.scale.numpy().astype(np.float32)
    wc, sw = qw.codes.numpy().astype(np.int64), qw.scale.numpy().astype(np.float32)
    n_differ = sum(_check_against_datapath(v, codes, s) for codes, s, v in ((a, sa, x), (wc, sw, w)))
    return x, a, sa, wc, sw, b, w, n_differ


def _check_against_datapath(v, codes, s) -> int:
    """Scales equal the datapath quantizer's bit for bit; codes too, except where ``fpqvar.formats`` rounds
    ``fl32(|x| / s)`` and that float32 quotient lands exactly on a midpoint the exact quotient misses (the
    documented difference of the software quantizer, tests/hw/test_datapath_quant.py). Returns how many."""
    from fractions import Fraction

    from fpqvar.hw import quantizer_int as qi

    dc, ds = qi.quantize_groups(v, "e2m1")
    assert np.array_equal(ds.view(np.uint32), s.view(np.uint32))
    g = qi.magnitude_grid("e2m1")
    mids = {(p + q) / 2 for p, q in zip(g, g[1:])}
    bad = np.argwhere(dc != codes)
    for r, k in bad:
        sc = s[r, k // 128]
        q32 = float(abs(np.float32(v[r, k]) / sc))
        exact = abs(Fraction(float(v[r, k])) / Fraction(float(sc)))
        assert q32 in mids and exact != Fraction(q32), (r, k)
    return len(bad)
