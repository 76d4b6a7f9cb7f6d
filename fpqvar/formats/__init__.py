"""Number formats: the single source of numeric truth (needs only numpy / torch / ml_dtypes).

- ``spec``: format definitions (``e2m1`` ... ``e5m2``, ``int2`` .. ``int8``, ``uint2`` .. ``uint8``,
  ``neg32``);
- ``grid``: rounding onto a grid (RNE / ties to the larger value), codes (encode / decode), NaN / Inf policy;
- ``scales``: absmax / min-max scales per tensor, channel, token, group; E8M0 power-of-two scales;
- ``quantizer``: ``fake_quantize``, ``quantize`` / ``dequantize`` (codes + scales);
- ``dfq``: dual-format quantization (FP4: E1M2 negatives / E2M1 positives; FP6: INT -32..0 / E2M3);
- ``packing``: 4-bit and 6-bit code packing;
- ``block_formats`` / ``block_scales`` / ``block_quantizer``: OCP MX (``mxfp4``, ``mxfp6_e2m3``, ``mxfp6_e3m2``,
  ``mxfp8_e4m3``) and NVIDIA ``nvfp4``: ``quantize_codes`` / ``dequantize_codes`` / ``quantize_dequantize``,
  ``pack_block`` / ``unpack_block``, ``bits_per_value`` (docs/formats.md);
- ``block_dfq``: DFQ-FP4 with MXFP4 / NVFP4 block scales per side (``block_dfq_fake_quantize``);
- ``report``: value tables and per-format error on a seeded random tensor (CLI / demo).
"""

from importlib import import_module
from typing import TYPE_CHECKING

from fpqvar.formats.block_formats import (
    BLOCK_FORMATS,
    MX_SCALE_RULES,
    BlockFormat,
    bits_per_value,
    block_format_names,
    get_block_format,
)
from fpqvar.formats.spec import FORMATS, FloatFormat, Format, IntFormat, format_names, get_format

# Torch-based modules load on first use, so that numpy-only users (fpqvar.hw.datapath) import fast.
_LAZY = {
    **dict.fromkeys(["BlockQuantized", "block_scale_values", "dequantize_codes", "pack_block", "quantize_codes",
                     "quantize_dequantize", "unpack_block"], "block_quantizer"),
    **dict.fromkeys(["nvfp4_tensor_scale"], "block_scales"),
    **dict.fromkeys(["BLOCK_DFQ_FORMATS", "block_dfq_fake_quantize"], "block_dfq"),
    **dict.fromkeys(["DFQ_VARIANTS", "DFQTensor", "dfq_dequantize", "dfq_fake_quantize", "dfq_quantize"], "dfq"),
    **dict.fromkeys(["ROUNDINGS", "decode", "encode", "grid_step", "round_to_grid"], "grid"),
    **dict.fromkeys(["pack_int4", "pack_int6", "unpack_int4", "unpack_int6"], "packing"),
    **dict.fromkeys(["QuantizedTensor", "dequantize", "fake_quantize", "quantize"], "quantizer"),
    **dict.fromkeys(["format_error_table", "format_summary", "value_table"], "report"),
    **dict.fromkeys(["DEFAULT_GROUP_SIZE", "GRANULARITIES", "Layout", "absmax_scale", "minmax_scale_zero_point",
                     "resolve_layout"], "scales"),
}

if TYPE_CHECKING:
    from fpqvar.formats.block_quantizer import (  # noqa
        BlockQuantized, block_scale_values, dequantize_codes, pack_block, quantize_codes, quantize_dequantize,
        unpack_block)
    from fpqvar.formats.block_scales import nvfp4_tensor_scale  # noqa
    from fpqvar.formats.block_dfq import BLOCK_DFQ_FORMATS, block_dfq_fake_quantize  # noqa
    from fpqvar.formats.dfq import DFQ_VARIANTS, DFQTensor, dfq_dequantize, dfq_fake_quantize, dfq_quantize  # noqa
    from fpqvar.formats.grid import ROUNDINGS, decode, encode, grid_step, round_to_grid  # noqa
    from fpqvar.formats.packing import pack_int4, pack_int6, unpack_int4, unpack_int6  # noqa
    from fpqvar.formats.quantizer import QuantizedTensor, dequantize, fake_quantize, quantize  # noqa
    from fpqvar.formats.report import format_error_table, format_summary, value_table  # noqa
    from fpqvar.formats.scales import (  # noqa
        DEFAULT_GROUP_SIZE, GRANULARITIES, Layout, absmax_scale, minmax_scale_zero_point, resolve_layout)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f"fpqvar.formats.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fpqvar.formats' has no attribute {name!r}")


__all__ = [
    "BLOCK_DFQ_FORMATS",
    "BLOCK_FORMATS",
    "BlockFormat",
    "BlockQuantized",
    "MX_SCALE_RULES",
    "bits_per_value",
    "block_dfq_fake_quantize",
    "block_format_names",
    "block_scale_values",
    "dequantize_codes",
    "get_block_format",
    "nvfp4_tensor_scale",
    "pack_block",
    "quantize_codes",
    "quantize_dequantize",
    "unpack_block",
    "DEFAULT_GROUP_SIZE",
    "DFQTensor",
    "DFQ_VARIANTS",
    "FORMATS",
    "FloatFormat",
    "Format",
    "GRANULARITIES",
    "IntFormat",
    "Layout",
    "QuantizedTensor",
    "ROUNDINGS",
    "absmax_scale",
    "decode",
    "dequantize",
    "dfq_dequantize",
    "dfq_fake_quantize",
    "dfq_quantize",
    "encode",
    "fake_quantize",
    "format_error_table",
    "format_names",
    "format_summary",
    "get_format",
    "grid_step",
    "minmax_scale_zero_point",
    "pack_int4",
    "pack_int6",
    "quantize",
    "resolve_layout",
    "round_to_grid",
    "unpack_int4",
    "unpack_int6",
    "value_table",
]
