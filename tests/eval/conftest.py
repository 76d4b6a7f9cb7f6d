import pytest
import torch

from tests.model.conftest import make_tiny


def save_tiny(tmp_path, seed: int = 0):
    """Save the random tiny model's VAR and VQVAE weights; returns their paths (for worker processes)."""
    vae, var = make_tiny(seed)
    var_path, vae_path = tmp_path / "tiny_var.pt", tmp_path / "tiny_vae.pt"
    torch.save(var.state_dict(), var_path)
    torch.save(vae.state_dict(), vae_path)
    return var_path, vae_path


def load_tiny(var_path, vae_path):
    vae, var = make_tiny(123)  # any seed: weights are overwritten
    vae.load_state_dict(torch.load(vae_path, weights_only=True))
    var.load_state_dict(torch.load(var_path, weights_only=True))
    return var.eval().requires_grad_(False)


@pytest.fixture
def tiny_paths(tmp_path):
    return save_tiny(tmp_path)


# A tiny model with the default model's image size (32x32) and 10 classes, for domain-metric plumbing tests:
# ch_mult (1,1,1,1) downsamples 8x, patch_nums (1,2,4) -> 32x32; width 128 = one GHT / quantization group.
TINY32_VAE = dict(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1, patch_nums=(1, 2, 4),
                  using_sa=False, using_mid_sa=False)
TINY32_VAR = dict(depth=2, embed_dim=128, num_heads=2, vocab_size=64, z_channels=8, num_classes=10,
                  patch_nums=(1, 2, 4))


def make_tiny32(seed: int = 0):
    from fpqvar.model import build_var, build_vqvae
    from fpqvar.model.zoo import VARConfig, VQVAEConfig

    torch.manual_seed(seed)  # test-local: initialisation of the random VQVAE only
    vae = build_vqvae(VQVAEConfig(**TINY32_VAE)).eval()
    var = build_var(vae, VARConfig(**TINY32_VAR))
    var.init_weights(generator=torch.Generator().manual_seed(seed), init_adaln_gamma=0.5)
    return var.eval().requires_grad_(False)


def random_digit_net(seed: int = 0):
    from fpqvar.model.digit_net import DigitNet

    net = DigitNet()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


def write_domain_assets(tmp_path, seed: int = 0):
    """A random DigitNet (safetensors) and a domain reference of 40 random images: (classifier, reference)."""
    import numpy as np
    from safetensors.torch import save_file

    from fpqvar.eval import metrics as M
    from fpqvar.eval.evaluate import digit_features
    from fpqvar.eval.reference import DomainReference, file_sha256, save_domain_reference

    net = random_digit_net(seed)
    cls_path = tmp_path / "classifier.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(cls_path))
    imgs = np.random.default_rng(seed).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    feats, _ = digit_features(net, imgs)
    mu, sigma = M.feature_stats(feats)
    ref = DomainReference(mu, sigma, feats.astype(np.float32), np.arange(40) % 10,
                          {"floor": {"fid": 1.5}, "classifier_sha256": file_sha256(cls_path)})
    return cls_path, save_domain_reference(tmp_path / "reference_stats.npz", ref)
