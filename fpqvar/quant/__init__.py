"""Post-training quantization of VAR (fpqvar-method.md): specs, recipes, quantized linears, calibration, the
``quantize_`` entry point, packed checkpoints and the SQNR report.

    from fpqvar.quant import calibrate, quantize_, save_quantized
    calib = calibrate(var)                       # float model's own samples, inputs per block / site / scale
    report = quantize_(var, "fpqvar-w4a4", calib)  # in place; returns a QuantReport
    save_quantized(var, "fpqvar-w4a4", "q.safetensors")
"""

from fpqvar.quant.calibrate import CalibConfig, CalibrationData, calibrate
from fpqvar.quant.export import save_quantized
from fpqvar.quant.load import load_quantized
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.quantize import is_quantized, quantize_, set_backend
from fpqvar.quant.recipes import LayerRule, Recipe, Rule, get_recipe, load_recipe, recipe_names
from fpqvar.quant.report import QuantReport
from fpqvar.quant.spec import QuantSpec

__all__ = [
    "CalibConfig",
    "CalibrationData",
    "LayerRule",
    "QuantLinear",
    "QuantReport",
    "QuantSpec",
    "Recipe",
    "Rule",
    "calibrate",
    "get_recipe",
    "is_quantized",
    "load_quantized",
    "load_recipe",
    "quantize_",
    "recipe_names",
    "save_quantized",
    "set_backend",
]
