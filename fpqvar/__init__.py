"""fpqvar: FPQVAR (arXiv 2505.16335) end to end.

Floating-point post-training quantization of Visual AutoRegressive (VAR) image generators, evaluation at scale,
and the FPGA accelerator co-design (bit-exact datapath, generated RTL, performance / energy model).

Layers (an arrow means "may import"): formats <- model <- transforms, quant <- eval <- cli; formats <- hw.
"""

__version__ = "0.1.0"


def quantize_(model, recipe, calibration=None, **kwargs):
    """Quantize ``model`` in place with ``recipe`` (torchao style). See :func:`fpqvar.quant.quantize.quantize_`."""
    from fpqvar.quant.quantize import quantize_ as _q

    return _q(model, recipe, calibration, **kwargs)
