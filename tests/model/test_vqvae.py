import pytest
import torch

from fpqvar.model import build_vqvae
from tests.model.conftest import TINY_VAE


@pytest.fixture
def vae():
    torch.manual_seed(0)  # test-local init
    return build_vqvae(TINY_VAE).eval()


def test_decode_of_encoded_ids_reproduces_fhat(vae):
    img = torch.rand(2, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        f = vae.quant_conv(vae.encoder(img))
        idx, f_hat, _, _ = vae.quantize.encode(f)
        # spec 8.5: decoding the ids gives the encoder's final f_hat (same ops, same order: exact)
        assert torch.equal(vae.quantize.idx_to_fhat(idx), f_hat)
    assert [t.shape for t in idx] == [(2, 1), (2, 4), (2, 9), (2, 16)]


def test_var_input_is_downsampled_running_fhat(vae):
    g = torch.Generator().manual_seed(0)
    idx = [torch.randint(0, 64, (2, p * p), generator=g) for p in (1, 2, 3, 4)]
    with torch.no_grad():
        x = vae.idx_to_var_input(idx)
        assert x.shape == (2, 4 + 9 + 16, 8)
        # the last chunk is f_hat after scales 0..2, area-downsampled to 4x4 = identity at the final size
        f3 = vae.quantize.idx_to_fhat(idx[:3] + [torch.zeros(2, 16, dtype=torch.long)])
        f3 = f3 - vae.quantize.phi(3, vae.quantize.embedding(idx[3] * 0).transpose(1, 2).reshape(2, 8, 4, 4))
        torch.testing.assert_close(x[:, 13:], f3.view(2, 8, 16).transpose(1, 2), rtol=1e-6, atol=1e-6)


def test_image_shape_is_checked(vae):
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        vae.img_to_idx(torch.zeros(1, 3, 16, 16))


def test_training_forward_has_straight_through_gradient(vae):
    img = torch.rand(2, 3, 8, 8) * 2 - 1
    vae.train()
    rec, vq_loss, usage = vae(img)
    (rec.square().mean() + vq_loss).backward()
    assert vae.encoder.conv_in.weight.grad is not None and vae.encoder.conv_in.weight.grad.abs().sum() > 0
    assert vae.quantize.embedding.weight.grad is not None
    assert usage.shape == (4, 64) and usage.sum() == 2 * (1 + 4 + 9 + 16)
