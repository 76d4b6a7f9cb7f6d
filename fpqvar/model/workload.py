"""The operator list of one VAR image generation: per scale, per block, with shapes and FLOPs.

Pure Python (no torch): the hardware performance model (``fpqvar.hw.perf``) walks this list. Conventions
(shared/spec/var-model.md section 4.3): one multiply-add = 2 FLOPs; a GEMM of (m x k) @ (k x n) repeated
``count`` times costs 2*m*k*n*count FLOPs. Element-wise operators carry ``elems`` and an op count per element
(a convention stated in ``ELEMENTWISE_OPS_PER_ELEM``, not part of the spec's totals).

Order of one block at scale si (l = pn^2 new tokens, cum = tokens so far, rows = B, or 2B with CFG):
ada_lin -> ln1 (+AdaLN modulate) -> [ght1] -> [quant] -> qkv -> qk_norm -> attn_qk -> softmax
-> attn_av -> [quant] -> proj -> residual1 -> ln2 -> [ght2] -> [quant] -> fc1 -> gelu -> [quant (DFQ)]
-> fc2 -> residual2.
Bracketed operators exist only when the options ask for them (GHT block, activation quantizers).

Upstream recomputes ``ada_lin`` (and the head's AdaLN MLP) at each of the scales, on the same condition vector
(var-model.md section 3.9): ``ada_lin_per_scale=True`` models that; once per sample suffices
(``ada_lin_per_scale=False``: computed at scale 0 only, kept on chip).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, fields

from fpqvar.model.zoo import VARConfig, VQVAEConfig

WORKLOAD_VERSION = 1

KINDS = ("gemm", "attn_gemm", "elementwise", "ght", "quant", "conv")
# The spec's section 4.3 columns: linear, attention, ada_lin, head; "embed" is word_embed (~0 in the spec).
TRANSFORMER_CATEGORIES = ("linear", "attention", "ada_lin", "head", "embed")

# Element-wise work per element, a counting convention (not from the spec; these ops are not in its totals).
ELEMENTWISE_OPS_PER_ELEM = {
    "ln": 8,  # mean, variance (2 passes), normalise (sub, mul), AdaLN modulate x*(1+s)+b (2)
    "l2norm": 4,  # square-accumulate, rsqrt (amortised), scale
    "softmax": 5,  # max, sub, exp, sum, divide
    "gelu": 10,  # tanh approximation: cube, mul-adds, tanh, product
    "residual": 2,  # x + gamma * y
    "sample": 4,  # CFG mix (2), top-k / top-p threshold compare, draw (amortised)
    "quant": 10,  # absmax (1), scale (1), 7-8 grid comparisons (hardware.md section 1)
}


@dataclass(frozen=True)
class Op:
    """One operator instance. GEMM-like ops: (m x k) @ (k x n), ``count`` independent copies (heads x rows).

    ``scale`` / ``block`` are -1 for operators outside the per-scale loop / outside the blocks.
    ``weight_elems`` counts weights read (0 for activation x activation products); ``kv_read_elems`` the
    cached keys or values an attention product reads; ``elems`` the elements an element-wise op, GHT or
    quantizer processes.
    """

    name: str
    kind: str
    category: str
    scale: int
    block: int
    m: int = 0
    k: int = 0
    n: int = 0
    count: int = 1
    elems: int = 0
    flops: int = 0
    weight_elems: int = 0
    kv_read_elems: int = 0

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count


@dataclass(frozen=True)
class WorkloadOptions:
    """What to put in the list. ``ght_block`` None: no GHT; ``quantize_acts``: dynamic activation quantizers
    before qkv, proj, fc1 and fc2 (their element count does not depend on the group size)."""

    batch_images: int = 1
    cfg: bool = True
    ada_lin_per_scale: bool = True
    ght_block: int | None = None
    quantize_acts: bool = False
    include_vae_decode: bool = True
    version: int = WORKLOAD_VERSION

    def __post_init__(self) -> None:
        if self.batch_images < 1:
            raise ValueError(f"WorkloadOptions.batch_images must be >= 1, got {self.batch_images}")
        if self.ght_block is not None and self.ght_block < 1:
            raise ValueError(f"WorkloadOptions.ght_block must be None or >= 1, got {self.ght_block}")

    @property
    def rows(self) -> int:
        """Batch rows through the transformer: CFG runs the conditional and the unconditional half."""
        return self.batch_images * (2 if self.cfg else 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WorkloadOptions":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"WorkloadOptions: unknown keys {unknown}")
        return cls(**d)


def gemm(name: str, category: str, scale: int, block: int, m: int, k: int, n: int, *, count: int = 1,
         weights: bool = True, kind: str = "gemm", kv_read_elems: int = 0) -> Op:
    """A GEMM-like op; FLOPs = 2*m*k*n*count; weights read = k*n when the right operand is a weight."""
    return Op(name, kind, category, scale, block, m=m, k=k, n=n, count=count, flops=2 * m * k * n * count,
              weight_elems=k * n if weights else 0, kv_read_elems=kv_read_elems)


def elementwise(name: str, op_type: str, scale: int, block: int, elems: int,
                category: str = "nonlinear") -> Op:
    return Op(name, "quant" if op_type == "quant" else "elementwise", category, scale, block, elems=elems,
              flops=elems * ELEMENTWISE_OPS_PER_ELEM[op_type])


def hadamard_flops(dim: int, block: int, method: str = "fwht") -> float:
    """FLOPs to multiply one ``dim``-vector by blockdiag(H_block, ..., H_block) (dim / block blocks).

    - ``"dense"``: each block as a matrix-vector product, block^2 multiply-adds = 2*block^2 FLOPs per block,
      so 2*dim*block in total. Full HT (block = dim): 2*dim^2.
    - ``"fwht"``: fast Walsh-Hadamard butterflies, block*log2(block) add/sub per block, so dim*log2(block).
      For a non-power-of-two block the real log2 is used (the "C log2 C" estimate of a FWHT-like transform).
    The GHT/full-HT ratio is dense: dim/block (= 15 at C = 1920, block 128), fwht: log2(dim)/log2(block)
    (= 1.56 at C = 1920). The paper's "15x fewer FLOPs" is therefore the dense count.
    """
    if dim < 1 or block < 1 or dim % block:
        raise ValueError(f"hadamard_flops: dim {dim} must be a positive multiple of block {block}")
    if method == "dense":
        return 2.0 * dim * block
    if method == "fwht":
        return dim * math.log2(block)
    raise ValueError(f"hadamard_flops: unknown method {method!r} (dense, fwht)")


def _block_ops(cfg: VARConfig, opt: WorkloadOptions, si: int, b: int, l: int, cum: int) -> list[Op]:
    C, H, hd, hid, rows = cfg.C, int(cfg.num_heads), cfg.head_dim, cfg.mlp_hidden, opt.rows
    t = rows * l  # token rows through the block's GEMMs
    ops: list[Op] = []
    if opt.ada_lin_per_scale or si == 0:
        ops.append(gemm("ada_lin", "ada_lin", si, b, rows, C, 6 * C))

    def pre(tag: str, k: int, ght: bool) -> None:
        if ght and opt.ght_block:  # block = C is the full-HT variant (fpqvar-method.md section 7)
            ops.append(Op(f"ght_{tag}", "ght", "ght", si, b, elems=t * k,
                          flops=round(t * hadamard_flops(k, opt.ght_block, "fwht"))))
        if opt.quantize_acts:
            ops.append(elementwise(f"quant_{tag}", "quant", si, b, t * k, category="quant"))

    ops.append(elementwise("ln1", "ln", si, b, t * C))
    pre("qkv", C, ght=True)
    ops.append(gemm("qkv", "linear", si, b, t, C, 3 * C))
    ops.append(elementwise("qk_norm", "l2norm", si, b, t * 2 * C))
    kv = rows * cum * C  # cached keys (or values) read by one product, all heads
    ops.append(gemm("attn_qk", "attention", si, b, l, hd, cum, count=rows * H, weights=False,
                    kind="attn_gemm", kv_read_elems=kv))
    ops.append(elementwise("softmax", "softmax", si, b, rows * H * l * cum))
    ops.append(gemm("attn_av", "attention", si, b, l, cum, hd, count=rows * H, weights=False,
                    kind="attn_gemm", kv_read_elems=kv))
    pre("proj", C, ght=False)
    ops.append(gemm("proj", "linear", si, b, t, C, C))
    ops.append(elementwise("residual1", "residual", si, b, t * C))
    ops.append(elementwise("ln2", "ln", si, b, t * C))
    pre("fc1", C, ght=True)
    ops.append(gemm("fc1", "linear", si, b, t, C, hid))
    ops.append(elementwise("gelu", "gelu", si, b, t * hid))
    pre("fc2", hid, ght=False)
    ops.append(gemm("fc2", "linear", si, b, t, hid, C))
    ops.append(elementwise("residual2", "residual", si, b, t * C))
    return ops


def transformer_ops(cfg: VARConfig, opt: WorkloadOptions) -> list[Op]:
    """All transformer ops of one generation call (``opt.batch_images`` images), scale by scale."""
    if cfg.shared_aln:
        raise ValueError("transformer_ops: shared AdaLN (var-d36) is not modelled; pick a 256px model")
    C, V, rows, B = cfg.C, cfg.vocab_size, opt.rows, opt.batch_images
    ops: list[Op] = []
    cum = 0
    last = cfg.patch_nums[-1]
    for si, pn in enumerate(cfg.patch_nums):
        l = pn * pn
        cum += l
        if si > 0:  # next-scale input: word_embed on the conditional half, then duplicated for CFG
            ops.append(gemm("word_embed", "embed", si, -1, B * l, cfg.z_channels, C))
        for b in range(cfg.depth):
            ops.extend(_block_ops(cfg, opt, si, b, l, cum))
        if opt.ada_lin_per_scale or si == 0:
            ops.append(gemm("head_ada_lin", "head", si, -1, rows, C, 2 * C))
        ops.append(elementwise("head_ln", "ln", si, -1, rows * l * C))
        ops.append(gemm("head", "head", si, -1, rows * l, C, V))
        ops.append(elementwise("sample", "sample", si, -1, B * l * V, category="sample"))
        # f_hat update: codebook vectors up to the last map size, then a 3x3 z->z Phi conv (section 2.5)
        z = cfg.z_channels
        ops.append(gemm("phi_conv", "phi", si, -1, B * last * last, 9 * z, z, kind="conv"))
    return ops


def _conv(ops: list, name: str, B: int, res: int, cin: int, cout: int, k: int) -> None:
    """Convolution as an implicit GEMM: (B*res^2 output pixels) x (cin*k^2) @ (cin*k^2 x cout)."""
    ops.append(gemm(name, "vae", -1, -1, B * res * res, cin * k * k, cout, kind="conv"))


def vae_decoder_ops(vae: VQVAEConfig, batch_images: int = 1) -> list[Op]:
    """post_quant_conv + decoder (var-model.md section 2.4) as convs and attention products.

    Counted: convs (incl. 1x1 shortcuts, qkv and proj_out) and the attention products; GroupNorm, SiLU and
    softmax are omitted (~0.1 G at 256 px), matching the spec's ~393.7 GFLOPs.
    """
    B, r = batch_images, vae.patch_nums[-1]
    ops: list[Op] = []
    _conv(ops, "post_quant_conv", B, r, vae.z_channels, vae.z_channels, 3)
    c = vae.ch * vae.ch_mult[-1]
    _conv(ops, "conv_in", B, r, vae.z_channels, c, 3)

    def res_block(tag: str, cin: int, cout: int) -> None:
        _conv(ops, f"{tag}.conv1", B, r, cin, cout, 3)
        _conv(ops, f"{tag}.conv2", B, r, cout, cout, 3)
        if cin != cout:
            _conv(ops, f"{tag}.nin_shortcut", B, r, cin, cout, 1)

    def attn(tag: str, ch: int) -> None:
        hw = r * r
        _conv(ops, f"{tag}.qkv", B, r, ch, 3 * ch, 1)
        ops.append(gemm(f"{tag}.qk", "vae", -1, -1, hw, ch, hw, count=B, weights=False, kind="attn_gemm"))
        ops.append(gemm(f"{tag}.av", "vae", -1, -1, hw, hw, ch, count=B, weights=False, kind="attn_gemm"))
        _conv(ops, f"{tag}.proj_out", B, r, ch, ch, 1)

    res_block("mid.block_1", c, c)
    if vae.using_mid_sa:
        attn("mid.attn_1", c)
    res_block("mid.block_2", c, c)
    levels = len(vae.ch_mult)
    for i in reversed(range(levels)):
        cout = vae.ch * vae.ch_mult[i]
        for j in range(vae.num_res_blocks + 1):
            res_block(f"up.{i}.block.{j}", c, cout)
            c = cout
            if vae.using_sa and i == levels - 1:
                attn(f"up.{i}.attn.{j}", c)
        if i != 0:
            r *= 2
            _conv(ops, f"up.{i}.upsample.conv", B, r, c, c, 3)
    _conv(ops, "conv_out", B, r, c, vae.in_channels, 3)
    return ops


def var_workload(cfg: VARConfig, vae: VQVAEConfig | None,
                 opt: WorkloadOptions = WorkloadOptions()) -> list[Op]:
    """Transformer ops, then (if asked and ``vae`` is given) the VQVAE decoder ops (scale = block = -1)."""
    ops = transformer_ops(cfg, opt)
    if opt.include_vae_decode and vae is not None:
        ops.extend(vae_decoder_ops(vae, opt.batch_images))
    return ops


def flops_by_category(ops: list[Op]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for op in ops:
        out[op.category] += op.flops
    return dict(out)


def transformer_flops(ops: list[Op]) -> int:
    """The spec's "transformer" total: linears + attention + ada_lin + head + word_embed (section 4.3)."""
    cat = flops_by_category(ops)
    return sum(cat.get(c, 0) for c in TRANSFORMER_CATEGORIES)


def flops_by_scale(ops: list[Op], categories: tuple[str, ...] = TRANSFORMER_CATEGORIES) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for op in ops:
        if op.category in categories:
            out[op.scale] += op.flops
    return dict(out)


def attention_pairs(patch_nums: tuple[int, ...]) -> int:
    """(query, key) pairs with the KV cache: sum over scales of l_k * cum_k (286,434 at 256 px)."""
    cum = total = 0
    for pn in patch_nums:
        cum += pn * pn
        total += pn * pn * cum
    return total
