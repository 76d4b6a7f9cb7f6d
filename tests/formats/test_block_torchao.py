"""EXACT tier: MX / NVFP4 codes, scales, packed storage and dequantized values against torchao's own reference
functions on CPU (``torchao.prototype.mx_formats``: ``to_mx`` / ``to_dtype``, ``nvfp4_quantize``,
``NVFP4Tensor``), an independent implementation, over every element code, ties, and random sweeps.

Where we deviate from torchao on purpose (``block_scales.py``: blocks whose E8M0 scale is 2**-127, NVFP4 on an
all-zero or near-zero tensor, ``ceil`` rules at amax >= 2**127, non-finite inputs) the inputs here stay
outside that region; ``test_block_spec.py`` covers it against references written from the definitions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

ao_mx = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor",
                            reason="torchao not installed (pip install torchao): it is the MX / NVFP4 test oracle")
from torchao.prototype.mx_formats import nvfp4_tensor as ao_nv  # noqa: E402
from torchao.prototype.mx_formats.config import ScaleCalculationMode  # noqa: E402
from torchao.prototype.mx_formats.constants import DTYPE_FP6_E2M3, DTYPE_FP6_E3M2  # noqa: E402

from fpqvar.formats.block_formats import BLOCK_FORMATS, MX_SCALE_RULES  # noqa: E402
from fpqvar.formats.block_quantizer import (  # noqa: E402
    dequantize_codes,
    pack_block,
    quantize_codes,
    quantize_dequantize,
    unpack_block,
)
from tests.formats import _reference as ref  # noqa: E402

AO_ELEM = {"mxfp4": torch.float4_e2m1fn_x2, "mxfp6_e2m3": DTYPE_FP6_E2M3, "mxfp6_e3m2": DTYPE_FP6_E3M2,
           "mxfp8_e4m3": torch.float8_e4m3fn}
AO_RULE = {"floor": ScaleCalculationMode.FLOOR, "ceil": ScaleCalculationMode.CEIL,
           "even": ScaleCalculationMode.EVEN, "rceil": ScaleCalculationMode.RCEIL}
MX = list(AO_ELEM)


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit patterns (so -0.0 != +0.0), same dtype."""
    ints = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}
    return a.dtype == b.dtype and torch.equal(a.view(ints[a.dtype]), b.view(ints[b.dtype]))


def _ao_mx(x: torch.Tensor, name: str, rule: str):
    """torchao: (element codes unpacked uint8, scale bytes, packed storage bytes, dequantized float32)."""
    elem = AO_ELEM[name]
    scale, data = ao_mx.to_mx(x, elem, 32, AO_RULE[rule])
    raw = data.view(torch.uint8)
    codes = torch.stack((raw & 0xF, raw >> 4), -1).reshape(x.shape) if name == "mxfp4" else raw
    deq = ao_mx.to_dtype(data, scale, elem, 32, torch.float32)
    return codes, scale.view(torch.uint8), raw, deq


def _ao_nvfp4(x: torch.Tensor, tensor_scale: torch.Tensor):
    scale, packed = ao_nv.nvfp4_quantize(x, 16, tensor_scale)
    deq = ao_nv.NVFP4Tensor.to_nvfp4(x, per_tensor_scale=tensor_scale).dequantize(torch.float32)
    codes = torch.stack((packed & 0xF, packed >> 4), -1).reshape(x.shape)
    return codes, scale.view(torch.uint8), packed, deq


def _assert_same_mx(x: torch.Tensor, name: str, rule: str) -> None:
    codes, scales, raw, deq = _ao_mx(x, name, rule)
    q = quantize_codes(x, name, scale_rule=rule)
    assert torch.equal(q.codes, codes)
    assert torch.equal(q.scales, scales)
    assert _bits_equal(dequantize_codes(q), deq.to(x.dtype))  # torchao: float32, then cast (exact here)
    assert _bits_equal(quantize_dequantize(x, name, scale_rule=rule), dequantize_codes(q))
    packed = pack_block(q)
    if name in ("mxfp4", "mxfp8_e4m3"):  # torchao's storage: fp4x2 bytes / fp8 bytes (fp6 stays one per byte)
        assert torch.equal(packed["codes"], raw)
    back = unpack_block(packed, name, x.shape, scale_rule=rule, dtype=x.dtype)
    assert torch.equal(back.codes, q.codes) and torch.equal(back.scales, q.scales)


def _assert_same_nvfp4(x: torch.Tensor) -> None:
    q = quantize_codes(x, "nvfp4")
    # our tensor scale is NVIDIA's amax / (448 * 6) away from the guarded extremes
    assert torch.equal(q.tensor_scale, ao_nv.per_tensor_amax_to_scale(x.float().abs().amax()))
    codes, scales, packed, deq = _ao_nvfp4(x, q.tensor_scale)
    assert torch.equal(q.codes, codes)
    assert torch.equal(q.scales, scales)
    assert torch.equal(pack_block(q)["codes"], packed)
    assert _bits_equal(dequantize_codes(q), deq.to(x.dtype))  # torchao: float32 product, then the cast
    assert _bits_equal(quantize_dequantize(x, "nvfp4"), dequantize_codes(q))


def _every_code_blocks(name: str, block: int, k: int) -> torch.Tensor:
    """Rows of ``block`` values: every finite grid value, every midpoint (ties) and values one float32 ulp
    either side of each midpoint, times 2**k; each row also holds +-elem_max so its scale is 2**k exactly
    for the floor rule (and a known power of two for the others)."""
    g = ref.float_grid(BLOCK_FORMATS[name].element.name).astype(np.float32)
    mids = ref.midpoints(g)
    vals = np.concatenate([g, mids, np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf))])
    per = block - 2
    pad = (-len(vals)) % per
    vals = np.concatenate([vals, np.zeros(pad, np.float32)]).reshape(-1, per)
    mx = np.float32(g[-1])
    rows = np.concatenate([vals, np.full((len(vals), 1), mx), np.full((len(vals), 1), -mx)], axis=1)
    return torch.from_numpy(rows.astype(np.float32)) * 2.0**k


@pytest.mark.parametrize("name", MX)
@pytest.mark.parametrize("rule", MX_SCALE_RULES)
@pytest.mark.parametrize("k", [-100, -7, 0, 3, 100])
def test_mx_every_code_and_every_tie_matches_torchao(name, rule, k):
    x = _every_code_blocks(name, 32, k)
    _assert_same_mx(x, name, rule)
    if rule == "floor":  # every finite element code occurs (E4M3: all but the two NaN codes)
        q = quantize_codes(x, name)
        n_codes = 1 << BLOCK_FORMATS[name].element_bits
        expected = set(range(n_codes)) - ({0x7F, 0xFF} if name == "mxfp8_e4m3" else set())
        assert set(q.codes.unique().tolist()) == expected


def _sweeps(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    gauss = torch.randn(48, 256, generator=g)
    heavy = torch.randn(48, 256, generator=g) * torch.exp(2 * torch.randn(48, 256, generator=g))  # log-normal mix
    rowscale = torch.exp2(torch.randint(-90, 90, (48, 1), generator=g).float())
    logu = torch.exp2(torch.empty(48, 256).uniform_(-30, 30, generator=g)) * torch.randn(48, 256, generator=g).sign()
    return {"gauss": gauss, "heavy": heavy, "rows_2^-90..2^90": gauss * rowscale, "log-uniform": logu}


@pytest.mark.parametrize("name", MX)
@pytest.mark.parametrize("rule", MX_SCALE_RULES)
def test_mx_random_sweeps_match_torchao(name, rule):
    for kind, x in _sweeps(1).items():
        _assert_same_mx(x, name, rule)
        _assert_same_mx(x.to(torch.bfloat16), name, rule)


@pytest.mark.parametrize("name", MX)
def test_mx_other_axis_is_torchao_on_the_moved_tensor(name):
    x = torch.randn(64, 3, 8, generator=torch.Generator().manual_seed(2))
    q = quantize_codes(x, name, axis=0)
    assert q.scales.shape == (2, 3, 8)
    codes, scales, _, deq = _ao_mx(x.movedim(0, -1).contiguous(), name, "floor")
    assert torch.equal(q.codes.movedim(0, -1), codes)
    assert torch.equal(q.scales.movedim(0, -1), scales)
    assert torch.equal(quantize_dequantize(x, name, axis=0).movedim(0, -1), deq)


@pytest.mark.parametrize("k", [-60, 0, 60])
def test_nvfp4_every_code_and_every_tie_matches_torchao(k):
    x = _every_code_blocks("nvfp4", 16, k)
    x = torch.cat([x, x * 0.3, x * 1e-3])  # block scales below the tensor max, down to the E4M3 clamp at 2**-6
    _assert_same_nvfp4(x)
    assert set(quantize_codes(x, "nvfp4").codes.unique().tolist()) == set(range(16))


def test_nvfp4_random_sweeps_match_torchao():
    for kind, x in _sweeps(3).items():
        _assert_same_nvfp4(x)
        _assert_same_nvfp4(x.to(torch.bfloat16))


def test_nvfp4_static_tensor_scale_matches_torchao():
    # a calibrated (static) tensor scale smaller than this tensor needs: block scales saturate at 448
    x = torch.randn(32, 128, generator=torch.Generator().manual_seed(4))
    ts = torch.tensor(0.25 / 2688.0)
    q = quantize_codes(x, "nvfp4", tensor_scale=ts)
    codes, scales, _, deq = _ao_nvfp4(x, q.tensor_scale)
    assert torch.equal(q.codes, codes) and torch.equal(q.scales, scales)
    assert torch.equal(dequantize_codes(q), deq)
    assert torch.equal(quantize_dequantize(x, "nvfp4", tensor_scale=ts), deq)
