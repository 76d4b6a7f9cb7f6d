"""Function-preserving transforms applied to a VAR model from outside (fpqvar-method.md sections 7, 8, 12).

- ``hadamard``: computed Hadamard matrices, randomized (block) Hadamard rotations, ``OnlineRotation``;
- ``fuse``: fold a per-channel input scale into ``ada_lin`` (scale' = lam (1 + scale) - 1, shift' = lam shift);
- ``sites``: one function per site (``mat_qkv`` / ``fc1`` input): ``x -> (x lam) Q``, ``W -> (W / lam) Q``;
- ``smoothing``: SmoothQuant scales on the fusable sites;
- ``galt``: GALT, the learned per-channel lam with GHT and FP4 in the loop, and its fusion.
"""

from fpqvar.transforms.fuse import (
    SITES,
    OnlineScale,
    adaln_fusable,
    fuse_input_scale_into_adaln,
    scale_linear_input_,
)
from fpqvar.transforms.galt import GALTConfig, fuse_galt, galt_full_loss, learn_galt_lambda, ste_fake_quantize
from fpqvar.transforms.hadamard import (
    OnlineRotation,
    block_hadamard_matrix,
    hadamard_matrix,
    hadamard_supported,
    random_hadamard,
    rotate_weight_in,
)
from fpqvar.transforms.sites import TransformedInput, site_linear, site_module, transform_site_
from fpqvar.transforms.smoothing import smooth_block_, smooth_site_, smoothquant_scales

__all__ = [
    "SITES",
    "GALTConfig",
    "OnlineRotation",
    "OnlineScale",
    "TransformedInput",
    "adaln_fusable",
    "block_hadamard_matrix",
    "fuse_galt",
    "fuse_input_scale_into_adaln",
    "galt_full_loss",
    "hadamard_matrix",
    "hadamard_supported",
    "learn_galt_lambda",
    "random_hadamard",
    "rotate_weight_in",
    "scale_linear_input_",
    "site_linear",
    "site_module",
    "smooth_block_",
    "smooth_site_",
    "smoothquant_scales",
    "ste_fake_quantize",
    "transform_site_",
]
