import torch

from tests.model.conftest import make_tiny


def tiny_inputs(var, B: int = 3, seed: int = 0):
    """Labels and next-scale inputs for the teacher-forced forward of a random tiny VAR."""
    g = torch.Generator().manual_seed(seed)
    label_B = torch.randint(0, var.num_classes, (B,), generator=g)
    x_BLCv = torch.randn(B, var.L - var.first_l, var.Cvae, generator=g)
    return label_B, x_BLCv


def tiny_var(seed: int = 0, **kw):
    """A random tiny VAR (``make_tiny``), C = 128 unless ``embed_dim`` says otherwise."""
    return make_tiny(seed, **kw)[1]


@torch.no_grad()
def logits(var, inputs):
    return var(*inputs)


def assert_same_function(out, ref, what: str):
    # TOLERANCE: the transforms are exact in real arithmetic; what remains is float32 rounding of a few extra
    # matmuls / multiplies per block (each ~6e-8 relative) through two blocks, LayerNorm and the head. Observed
    # <= 4e-7 of the logits' max magnitude; the bound 1e-5 leaves 25x margin. Real errors are far above it on
    # these models: folding lam into the wrong site or not absorbing a rotation gives ~1.5e-2, scaling one fc1
    # weight by 1.001 gives 2e-5.
    scale = ref.abs().max().item()
    err = (out - ref).abs().max().item()
    assert err <= 1e-5 * scale, f"{what}: max |diff| {err:.3g} > 1e-5 x max|logits| {scale:.3g}"
