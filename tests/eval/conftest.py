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
