import numpy as np
import torch

from fpqvar.eval.activations import GELU_BAND, HIST_EDGES, collect_activation_stats, outlier_ratio
from tests.eval.conftest import make_tiny32


def test_fc2_counts_and_shares_match_a_direct_capture():
    var = make_tiny32(0)
    seen = []
    h = var.blocks[1].ffn.fc2.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().reshape(-1).clone()))
    try:
        stats = collect_activation_stats(var, [0, 3], per_class=2, top_k=20, top_p=0.9)
    finally:
        h.remove()
    x = torch.cat(seen).numpy()
    c = stats.fc2_counts[1]
    assert c["total"] == x.size
    assert c["in_band"] == np.count_nonzero((x >= GELU_BAND[0]) & (x <= GELU_BAND[1]))
    assert stats.band_share(1) == c["in_band"] / x.size
    assert stats.nonpositive_share(1) == np.count_nonzero(x <= 0) / x.size
    assert c["nonpositive"] + c["positive"] == x.size
    assert stats.fc2_hist[1].sum() + c["below"] + c["above"] == x.size
    assert x.min() >= -0.1701  # GELU-tanh never goes below about -0.170
    # per scale: (S, C) absmax; the sampler runs each scale once per class (2 classes x 2 samples x 2 CFG halves)
    assert stats.absmax[(0, "attn.mat_qkv")].shape == (3, 128)


def test_transformed_capture_applies_the_module_rotation():
    var = make_tiny32(0)
    raw = collect_activation_stats(var, [1], per_class=1, top_k=20, top_p=0.9, transformed=True)
    var.blocks[0].ffn.fc1.rotation = lambda x: -2.0 * x.flip(-1)  # a known "rotation": flip channels, scale by 2
    rot = collect_activation_stats(var, [1], per_class=1, top_k=20, top_p=0.9, transformed=True)
    np.testing.assert_array_equal(rot.absmax[(0, "ffn.fc1")], 2.0 * raw.absmax[(0, "ffn.fc1")][:, ::-1])
    # transformed=False ignores it
    plain = collect_activation_stats(var, [1], per_class=1, top_k=20, top_p=0.9, transformed=False)
    np.testing.assert_array_equal(plain.absmax[(0, "ffn.fc1")], raw.absmax[(0, "ffn.fc1")])


def test_outlier_ratio_and_edges():
    a = np.array([[1.0, 1.0, 1.0, 10.0], [2.0, 2.0, 2.0, 2.0]])
    assert outlier_ratio(a) == [10.0, 1.0]
    assert np.all(np.diff(HIST_EDGES) > 0) and HIST_EDGES[0] < GELU_BAND[0] and 0.0 in HIST_EDGES
