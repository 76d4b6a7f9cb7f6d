"""Number formats: the single source of numeric truth (needs only numpy / torch / ml_dtypes).

- ``spec``: format definitions (``e2m1`` ... ``e5m2``, ``int2`` .. ``int8``, ``uint2`` .. ``uint8``,
  ``neg32``);
- ``grid``: rounding onto a grid (RNE / ties to the larger value), codes (encode / decode), NaN / Inf policy;
- ``scales``: absmax / min-max scales per tensor, channel, token, group; E8M0 power-of-two scales;
- ``quantizer``: ``fake_quantize``, ``quantize`` / ``dequantize`` (codes + scales);
- ``dfq``: dual-format quantization (FP4: E1M2 negatives / E2M1 positives; FP6: INT -32..0 / E2M3);
- ``packing``: 4-bit and 6-bit code packing;
- ``report``: value tables and per-format error on a seeded random tensor (CLI / demo).
"""

from fpqvar.formats.dfq import DFQ_VARIANTS, DFQTensor, dfq_dequantize, dfq_fake_quantize, dfq_quantize
from fpqvar.formats.grid import ROUNDINGS, decode, encode, grid_step, round_to_grid
from fpqvar.formats.packing import pack_int4, pack_int6, unpack_int4, unpack_int6
from fpqvar.formats.quantizer import QuantizedTensor, dequantize, fake_quantize, quantize
from fpqvar.formats.report import format_error_table, format_summary, value_table
from fpqvar.formats.scales import (
    DEFAULT_GROUP_SIZE,
    GRANULARITIES,
    Layout,
    absmax_scale,
    minmax_scale_zero_point,
    resolve_layout,
)
from fpqvar.formats.spec import FORMATS, FloatFormat, Format, IntFormat, format_names, get_format

__all__ = [
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
