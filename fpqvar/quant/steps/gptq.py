"""GPTQ weight rounding on any weight grid of the project (``fpqvar.formats``: INT, FP4 / FP6 grids, ...).

Algorithm: Frantar et al., "GPTQ" (IST-DASLab/gptq, ``gptq.py : GPTQ.fasterquant``, commit 9f2abd32; facts in
baseline-facts.md section 5.1), written here from the description:

- Hessian ``H = 2 X^T X / N`` over the site's calibration rows *as the quantizer sees them* (``state.rows()``:
  after the earlier steps' scaling and rotation; all scales' reservoir rows pooled);
- dead input channels (``H_ii = 0``): ``H_ii = 1`` and the weight column set to 0 (as upstream);
- damping ``H_ii += damp * mean(diag H)`` (``damp`` 0.01), then the upper Cholesky factor ``U`` of ``H^-1``;
- columns left to right in blocks of ``block`` (128): each column is rounded, its error ``(w - q) / U_ii``
  is propagated to the block's later columns with row ``i`` of ``U``, and after the block to all later columns
  (lazy batch update); no act-order.

The grid enters only through one column's rounding, which uses the project's quantizer with the group scales
FIXED beforehand: they are the scales the project's RTN quantizer computes on the transformed weight (absmax,
or min-max + zero point for ``uint*``) per group / channel / tensor, i.e. upstream's ``static_groups=True``
behaviour (its default recomputes a group's parameters on the already-updated weights). The step stores the
codes and those scales; the swap phase installs them unchanged, so the module's weight is exactly
``decode(codes) * scale``. GPTQ must be the last step that changes a site's transform or format (enforced).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.config import ConfigError
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps.base import Transform, register_transform

__all__ = ["GPTQ", "RoundedWeight", "gptq_round", "site_layer_fn"]

_BLOCK_LINEARS = ("blocks.*.attn.mat_qkv", "blocks.*.attn.proj", "blocks.*.ffn.fc1", "blocks.*.ffn.fc2")


@dataclass(frozen=True)
class GPTQ(Transform):
    KIND = "gptq"
    STAGE = "gptq"
    NEEDS_CALIBRATION = True

    sites: tuple[str, ...] = _BLOCK_LINEARS
    damp: float = 0.01  # upstream percdamp
    block: int = 128  # upstream blocksize

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.damp < 1.0:
            raise ConfigError(f"GPTQ.damp must be in (0, 1), got {self.damp!r}")
        if self.block < 1:
            raise ConfigError(f"GPTQ.block must be >= 1, got {self.block!r}")


@dataclass
class RoundedWeight:
    codes: torch.Tensor  # uint8 (O, I)
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    spec: QuantSpec

    def for_spec(self, spec: QuantSpec | None, where: str):
        if spec != self.spec:
            raise ValueError(f"{where}: GPTQ rounded the weight for {self.spec.short()}, the site now has "
                             f"{None if spec is None else spec.short()}; put GPTQ after the format steps")
        return self.codes, self.scale, self.zero_point


def _column_params(t: torch.Tensor | None, O: int, I: int) -> torch.Tensor | None:
    """Per-column view ``(O, I)`` of a weight scale / zero point in the public layout (tensor / channel / group)."""
    if t is None:
        return None
    t = t.reshape(t.shape[0], -1) if t.ndim == 2 else t.reshape(1, 1)
    return t.expand(O, -1).repeat_interleave(I // t.shape[1], dim=1)


def _round_column(w_O: torch.Tensor, spec: QuantSpec, s_O: torch.Tensor, zp_O: torch.Tensor | None):
    """(codes (O,), dequantized float32 (O,)) of one column with its fixed scales, by the project's quantizer."""
    from fpqvar.formats import dequantize, quantize

    qt = quantize(w_O.float().reshape(-1, 1), spec.fmt, granularity="channel", rounding=spec.rounding,
                  scale=s_O.reshape(-1, 1), zero_point=None if zp_O is None else zp_O.reshape(-1, 1))
    return qt.codes.reshape(-1), dequantize(qt).reshape(-1)


@torch.no_grad()
def gptq_round(w_OI: torch.Tensor, x_NI: torch.Tensor, spec: QuantSpec, *, damp: float = 0.01, block: int = 128
               ) -> RoundedWeight:
    """GPTQ codes of ``w_OI`` for inputs ``x_NI`` on ``spec``'s grid, scales fixed by RTN on ``w_OI``."""
    from fpqvar.quant.qlinear import quantize_weight

    O, I = w_OI.shape
    if x_NI.ndim != 2 or x_NI.shape[1] != I or x_NI.shape[0] == 0:
        raise ValueError(f"gptq_round: need calibration rows (N, {I}) with N > 0, got {tuple(x_NI.shape)}")
    _, scale, zp = quantize_weight(w_OI.float(), spec)  # the fixed ("static") group parameters
    s_OI, zp_OI = _column_params(scale, O, I), _column_params(zp, O, I)
    x = x_NI.double()
    H = 2.0 * (x.T @ x) / x.shape[0]
    W = w_OI.double().clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H.diagonal().add_(damp * float(torch.diagonal(H).mean()))
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    codes = torch.empty(O, I, dtype=torch.uint8)
    for i1 in range(0, I, block):
        i2 = min(i1 + block, I)
        W1, U1 = W[:, i1:i2].clone(), U[i1:i2, i1:i2]
        E1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            j = i1 + i
            c, q = _round_column(W1[:, i], spec, s_OI[:, j], None if zp_OI is None else zp_OI[:, j])
            codes[:, j] = c
            err = (W1[:, i] - q.double()) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return RoundedWeight(codes, scale, zp, spec)


def site_layer_fn(st, w_hat_OI: torch.Tensor, lowrank=None):
    """``fn(x, scale_index)``: the site's layer on UNtransformed rows with a given dequantized weight of the
    transformed input (and a low-rank branch), activations quantized as the swap phase will (for the report)."""
    import torch.nn.functional as F

    from fpqvar.quant.qlinear import quantize_activation
    from fpqvar.quant.static_act import quantize_static

    a = st.aspec
    params = None
    if a is not None and a.static:
        from fpqvar.quant.quantize import static_act_scale
        from fpqvar.quant.static_act import calibrate_static

        params = calibrate_static(st.rows(), a, st.name) if a.asymmetric or a.static_sets else \
            (static_act_scale(st, a), None)
    b = None if st.bias_O is None else st.bias_O.float()
    w_hat = w_hat_OI.float()

    def fn(x, si=None):
        xt = st.transform_x(x)
        xq = xt
        if params is not None:
            xq = quantize_static(xt, a, params[0], params[1], None, 0 if si is None else si)
        elif a is not None:
            xq = quantize_activation(xt, a)
        y = F.linear(xq, w_hat, b)
        if lowrank is not None:
            up, down = lowrank
            y = y + F.linear(F.linear(xt, down.float()), up.float())
        return y
    return fn


def _gptq(cfg: GPTQ, states, ctx) -> None:
    from fpqvar.quant.qlinear import weight_from_codes

    it = states
    if ctx.progress and len(states) > 1:
        from tqdm import tqdm

        it = tqdm(states, desc="GPTQ", unit="layer", leave=False)
    for st in it:
        if st.wspec is None:
            continue  # float weight: nothing to round
        if not st.has_rows():
            raise ValueError(f"GPTQ: {st.name} has no calibration rows (CalibConfig.reservoir_sites / "
                             "max_tokens_per_scale)")
        st._check_open("GPTQ")
        rw = gptq_round(st.weight_to_quantize(), torch.cat(st.rows()), st.wspec, damp=cfg.damp, block=cfg.block)
        st.weight_q = rw
        w_hat = weight_from_codes(rw.codes, rw.scale, rw.zero_point, rw.spec, torch.float32)
        st.info["gptq"] = {"damp": cfg.damp, "block": cfg.block, "static_groups": True}
        st.snapshot(cfg.STAGE, site_layer_fn(st, w_hat, st.lowrank))


register_transform(GPTQ, _gptq)
