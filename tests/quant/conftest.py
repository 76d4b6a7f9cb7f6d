"""Small random VAR models for the quant tests (C = 256 = 2 quantization groups of 128)."""

import pytest
import torch

from fpqvar.model import build_var, build_vqvae
from fpqvar.model.zoo import VARConfig, VQVAEConfig

SMALL_VAE = VQVAEConfig(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                        patch_nums=(1, 2, 3, 4), share_quant_resi=4)
SMALL_VAR = VARConfig(depth=2, embed_dim=256, num_heads=4, vocab_size=64, z_channels=8, num_classes=5,
                      patch_nums=(1, 2, 3, 4))


def make_small(seed: int = 0, vae=None, **var_kw):
    """A random VAR (C=256, 4 heads, depth 2) with non-zero biases and AdaLN, eval mode."""
    torch.manual_seed(seed)  # test-local: initialisation of the random model only
    if vae is None:
        vae = build_vqvae(SMALL_VAE).eval()
    cfg = VARConfig.from_dict({**SMALL_VAR.to_dict(), **var_kw})
    var = build_var(vae, cfg)
    var.init_weights(generator=torch.Generator().manual_seed(seed), init_adaln_gamma=0.5)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for b in var.blocks:
            b.attn.q_bias.copy_(torch.randn(b.attn.q_bias.shape, generator=g) * 0.1)
            b.attn.v_bias.copy_(torch.randn(b.attn.v_bias.shape, generator=g) * 0.1)
            for lin in (b.ffn.fc1, b.ffn.fc2, b.attn.proj):
                lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.05)
    return vae, var.eval()


@pytest.fixture
def small():
    return make_small()
