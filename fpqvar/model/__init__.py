"""Our own VAR + multi-scale VQVAE (knows nothing about quantization)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fpqvar.model.zoo import MODELS, ModelSpec, VARConfig, VQVAEConfig, get_model_spec

if TYPE_CHECKING:
    from fpqvar.model.var import VAR
    from fpqvar.model.vqvae import VQVAE


def __getattr__(name: str):
    # torch-free import of fpqvar.model (zoo, workload): the modules are loaded on first use
    if name == "VAR":
        from fpqvar.model.var import VAR

        return VAR
    if name == "VQVAE":
        from fpqvar.model.vqvae import VQVAE

        return VQVAE
    raise AttributeError(f"module 'fpqvar.model' has no attribute {name!r}")

__all__ = ["VAR", "VQVAE", "VARConfig", "VQVAEConfig", "MODELS", "ModelSpec", "get_model_spec", "build_vqvae",
           "build_var", "load_model", "load_vqvae"]


def build_vqvae(config: VQVAEConfig | None = None, *, device=None, **kwargs) -> "VQVAE":
    """Build a VQVAE from a config or upstream-named keyword arguments (vocab_size, z_channels, ch, ...)."""
    import torch

    from fpqvar.model.vqvae import VQVAE

    cfg = config if config is not None else VQVAEConfig(**kwargs)
    with torch.device(device or "cpu"):
        return VQVAE(cfg)


def build_var(vae: "VQVAE", config: VARConfig | None = None, *, device=None, **kwargs) -> "VAR":
    """Build a VAR on top of ``vae`` from a config or keyword arguments (depth, patch_nums, shared_aln, ...)."""
    import torch

    from fpqvar.model.var import VAR

    if config is None:
        kwargs.setdefault("vocab_size", vae.config.vocab_size)
        kwargs.setdefault("z_channels", vae.config.z_channels)
        kwargs.setdefault("patch_nums", vae.config.patch_nums)
        config = VARConfig(**kwargs)
    with torch.device(device or "cpu"):
        return VAR(vae, config)


def _weight_paths(name: str, ckpt=None, vae_ckpt=None, *, need_var: bool = True):
    """(var path, vae path) of a named model: explicit paths win; ``default`` uses the shipped assets (only when
    a path is missing), official models their checkpoint files (downloaded if possible)."""
    from fpqvar.model import checkpoints as ck

    spec = get_model_spec(name)
    if name == "default" and ((need_var and ckpt is None) or vae_ckpt is None):
        from fpqvar.model.default import default_paths

        paths = default_paths()
        ckpt, vae_ckpt = ckpt or paths.var, vae_ckpt or paths.vae
    if need_var and ckpt is None:
        ckpt = ck.official_checkpoint(spec.var_ckpt)
    if vae_ckpt is None:
        vae_ckpt = ck.official_checkpoint(spec.vae_ckpt)
    return ckpt, vae_ckpt


def load_vqvae(name: str, *, vae_ckpt=None, device="cpu") -> "VQVAE":
    """Only the named model's VQVAE (eval mode), e.g. for a quantized file that holds everything else."""
    from fpqvar.model import checkpoints as ck

    _, vae_path = _weight_paths(name, vae_ckpt=vae_ckpt, need_var=False)
    vae = ck.load_vqvae_weights(build_vqvae(get_model_spec(name).vae), vae_path)
    return vae.to(device).eval().requires_grad_(False)


def load_model(name: str, *, ckpt=None, vae_ckpt=None, device="cpu") -> "VAR":
    """A ready VAR (eval mode) by name: ``default`` loads the shipped weights; official models load
    ``ckpt`` / ``vae_ckpt`` (or the official files, downloaded if possible)."""
    from fpqvar.model import checkpoints as ck

    var_cfg = get_model_spec(name).var
    ckpt_path, vae_path = _weight_paths(name, ckpt, vae_ckpt)
    sd = ck.read_state_dict(ckpt_path)
    if not ck.detect_attn_l2_norm(sd) and var_cfg.attn_l2_norm:
        var_cfg = VARConfig.from_dict({**var_cfg.to_dict(), "attn_l2_norm": False})
    vae = load_vqvae(name, vae_ckpt=vae_path, device="cpu")
    var = build_var(vae, var_cfg)
    ck.check_state_dict(var, sd, str(ckpt_path))
    var.load_state_dict(sd, strict=True)
    vae.to(device)
    return var.to(device).eval().requires_grad_(False)
