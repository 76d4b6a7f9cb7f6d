import pytest
import torch

from fpqvar.model import build_var, build_vqvae
from fpqvar.model.zoo import VARConfig, VQVAEConfig

TINY_VAE = VQVAEConfig(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                       patch_nums=(1, 2, 3, 4), share_quant_resi=4)
TINY_VAR = VARConfig(depth=2, embed_dim=128, num_heads=2, vocab_size=64, z_channels=8, num_classes=5,
                     patch_nums=(1, 2, 3, 4))


def make_tiny(seed: int = 0, **var_kw):
    torch.manual_seed(seed)  # test-local: initialisation of the random tiny model only
    vae = build_vqvae(TINY_VAE).eval()
    cfg = VARConfig.from_dict({**TINY_VAR.to_dict(), **var_kw})
    var = build_var(vae, cfg)
    var.init_weights(generator=torch.Generator().manual_seed(seed), init_adaln_gamma=0.5)
    # random (non-zero) biases and AdaLN so that every path matters
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for b in var.blocks:
            b.attn.q_bias.copy_(torch.randn(b.attn.q_bias.shape, generator=g) * 0.1)
            b.attn.v_bias.copy_(torch.randn(b.attn.v_bias.shape, generator=g) * 0.1)
    return vae, var.eval()


@pytest.fixture
def tiny():
    return make_tiny()
