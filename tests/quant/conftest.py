"""Small random VAR models for the quant tests (C = 256 = 2 quantization groups of 128)."""

import pytest

from fpqvar.model.zoo import VARConfig, VQVAEConfig
from tests.model.conftest import make_tiny

SMALL_VAE = VQVAEConfig(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                        patch_nums=(1, 2, 3, 4), share_quant_resi=4)
SMALL_VAR = VARConfig(depth=2, embed_dim=256, num_heads=4, vocab_size=64, z_channels=8, num_classes=5,
                      patch_nums=(1, 2, 3, 4))


def make_small(seed: int = 0, vae=None, **var_kw):
    """A random VAR (C=256, 4 heads, depth 2) with non-zero biases and AdaLN, eval mode."""
    return make_tiny(seed, vae=vae, vae_cfg=SMALL_VAE, var_cfg=SMALL_VAR, linear_biases=True, **var_kw)


@pytest.fixture
def small():
    return make_small()
