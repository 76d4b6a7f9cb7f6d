"""Named model configurations, with upstream VAR's hyper-parameter names (shared/spec/var-model.md sections 2-3).

Configs are frozen, validated dataclasses that serialise to a versioned dict (stored in checkpoints and quantized
files so that a file can be checked against the model it is loaded into).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

CONFIG_VERSION = 1

PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
# The embedded default: 32x32 images, 8x8 latent (issue 4).
PATCH_NUMS_DEFAULT = (1, 2, 3, 4, 6, 8)


def _check_patch_nums(owner: str, patch_nums: tuple[int, ...]) -> None:
    if len(patch_nums) < 1 or any(p < 1 for p in patch_nums) or list(patch_nums) != sorted(set(patch_nums)):
        raise ValueError(f"{owner}.patch_nums must be strictly increasing positive ints, got {patch_nums}")


@dataclass(frozen=True)
class VQVAEConfig:
    """Multi-scale VQVAE (upstream ``VQVAE``). 256px official: ch 160, ch_mult (1,1,2,2,4), V 4096, Cvae 32."""

    vocab_size: int = 4096
    z_channels: int = 32
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    beta: float = 0.25
    quant_resi: float = 0.5
    share_quant_resi: int = 4
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    using_sa: bool = True
    using_mid_sa: bool = True
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(c) for c in self.ch_mult))
        object.__setattr__(self, "patch_nums", tuple(int(p) for p in self.patch_nums))
        for name in ("vocab_size", "z_channels", "ch", "num_res_blocks", "in_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"VQVAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.ch_mult:
            raise ValueError("VQVAEConfig.ch_mult must not be empty")
        if self.ch % 32 or any((self.ch * m) % 32 for m in self.ch_mult):
            raise ValueError(f"VQVAEConfig: channels must be multiples of 32 (GroupNorm(32)), ch={self.ch}, "
                             f"ch_mult={self.ch_mult}")
        if self.share_quant_resi < 0:
            raise ValueError(f"VQVAEConfig.share_quant_resi must be >= 0, got {self.share_quant_resi}")
        _check_patch_nums("VQVAEConfig", self.patch_nums)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def image_size(self) -> int:
        return self.patch_nums[-1] * self.downsample

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VQVAEConfig":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class VARConfig:
    """VAR transformer (upstream ``VAR``). ``embed_dim`` / ``num_heads`` default to 64*depth / depth."""

    depth: int = 16
    embed_dim: int | None = None
    num_heads: int | None = None
    vocab_size: int = 4096
    z_channels: int = 32
    num_classes: int = 1000
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    shared_aln: bool = False
    attn_l2_norm: bool = True
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    cond_drop_rate: float = 0.1
    drop_path_rate: float | None = None  # None: upstream's 0.1 * depth / 24
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_nums", tuple(int(p) for p in self.patch_nums))
        if self.embed_dim is None:
            object.__setattr__(self, "embed_dim", 64 * self.depth)
        if self.num_heads is None:
            object.__setattr__(self, "num_heads", self.depth)
        for name in ("depth", "embed_dim", "num_heads", "vocab_size", "z_channels", "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"VARConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"VARConfig: embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"VARConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")
        _check_patch_nums("VARConfig", self.patch_nums)

    @property
    def C(self) -> int:  # noqa: N802 - upstream's symbol
        return int(self.embed_dim)

    @property
    def head_dim(self) -> int:
        return self.C // int(self.num_heads)

    @property
    def mlp_hidden(self) -> int:
        return round(self.C * self.mlp_ratio)

    @property
    def num_tokens(self) -> int:
        return sum(p * p for p in self.patch_nums)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def dpr(self) -> float:
        return 0.1 * self.depth / 24 if self.drop_path_rate is None else self.drop_path_rate

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VARConfig":
        return cls(**_known(cls, d))


def _known(cls, d: dict) -> dict:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {unknown}")
    out = dict(d)
    for k in ("ch_mult", "patch_nums"):
        if k in out and out[k] is not None:
            out[k] = tuple(out[k])
    return out


@dataclass(frozen=True)
class ModelSpec:
    """A named model: VAR + VQVAE configs, and the official checkpoint file names where they exist."""

    name: str
    var: VARConfig
    vae: VQVAEConfig
    var_ckpt: str | None = None
    vae_ckpt: str | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)


_VAE_256 = VQVAEConfig()
_VAE_512 = VQVAEConfig(patch_nums=PATCH_NUMS_512)

# The embedded default (issue 4): 32x32 digits -> 8x8 latent. Width 256 (4 heads of 64) keeps the shipped
# weights small and CPU training fast while every linear in-dim is a multiple of the 128 quantization group.
DEFAULT_VAE = VQVAEConfig(vocab_size=512, z_channels=32, ch=32, ch_mult=(1, 2, 2), num_res_blocks=2,
                          patch_nums=PATCH_NUMS_DEFAULT)
DEFAULT_VAR = VARConfig(depth=6, embed_dim=256, num_heads=4, vocab_size=512, z_channels=32, num_classes=10,
                        patch_nums=PATCH_NUMS_DEFAULT)

MODELS: dict[str, ModelSpec] = {
    "var-d16": ModelSpec("var-d16", VARConfig(depth=16), _VAE_256, "var_d16.pth", "vae_ch160v4096z32.pth"),
    "var-d20": ModelSpec("var-d20", VARConfig(depth=20), _VAE_256, "var_d20.pth", "vae_ch160v4096z32.pth"),
    "var-d24": ModelSpec("var-d24", VARConfig(depth=24), _VAE_256, "var_d24.pth", "vae_ch160v4096z32.pth"),
    "var-d30": ModelSpec("var-d30", VARConfig(depth=30), _VAE_256, "var_d30.pth", "vae_ch160v4096z32.pth"),
    "var-d36": ModelSpec("var-d36", VARConfig(depth=36, shared_aln=True, patch_nums=PATCH_NUMS_512), _VAE_512,
                         "var_d36.pth", "vae_ch160v4096z32.pth", notes="512px, shared AdaLN"),
    "default": ModelSpec("default", DEFAULT_VAR, DEFAULT_VAE, None, None,
                         notes="small VAR trained on MNIST digits, shipped in fpqvar/assets"),
}


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
