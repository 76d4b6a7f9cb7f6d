import pytest
import torch

from fpqvar.model import build_var, build_vqvae
from fpqvar.model.zoo import VARConfig, VQVAEConfig

TINY_VAE = VQVAEConfig(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                       patch_nums=(1, 2, 3, 4), share_quant_resi=4)
TINY_VAR = VARConfig(depth=2, embed_dim=128, num_heads=2, vocab_size=64, z_channels=8, num_classes=5,
                     patch_nums=(1, 2, 3, 4))


def make_tiny(seed: int = 0, *, vae=None, vae_cfg: VQVAEConfig = TINY_VAE, var_cfg: VARConfig = TINY_VAR,
              linear_biases: bool = False, **var_kw):
    """A random VAR (eval mode) with non-zero q/v biases (and linear biases) and AdaLN, so every path matters."""
    torch.manual_seed(seed)  # test-local: initialisation of the random tiny model only
    if vae is None:
        vae = build_vqvae(vae_cfg).eval()
    cfg = VARConfig.from_dict({**var_cfg.to_dict(), **var_kw})
    var = build_var(vae, cfg)
    var.init_weights(generator=torch.Generator().manual_seed(seed), init_adaln_gamma=0.5)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for b in var.blocks:
            b.attn.q_bias.copy_(torch.randn(b.attn.q_bias.shape, generator=g) * 0.1)
            b.attn.v_bias.copy_(torch.randn(b.attn.v_bias.shape, generator=g) * 0.1)
            if linear_biases:
                for lin in (b.ffn.fc1, b.ffn.fc2, b.attn.proj):
                    lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.05)
    return vae, var.eval()


@pytest.fixture
def tiny():
    return make_tiny()
