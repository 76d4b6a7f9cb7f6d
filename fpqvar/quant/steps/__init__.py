"""Recipe transform steps: configs + registered handlers (see ``base.py``). Importing this package registers the
built-in steps."""

from fpqvar.quant.steps.base import (
    ADALN_LINEAR_SITES,
    PlanContext,
    SiteState,
    Transform,
    handler_for,
    register_transform,
    transform_kinds,
)
from fpqvar.quant.steps.gptq import GPTQ
from fpqvar.quant.steps.ptq4arvg import GPS
from fpqvar.quant.steps.rotation import GHT, FullHadamard
from fpqvar.quant.steps.scaling import GALT, SmoothQuant, galt_defaults_for
from fpqvar.quant.steps.search import BLOCK_LINEAR_SITES, FormatSearch
from fpqvar.quant.steps.svdquant import SVDQuant

__all__ = ["ADALN_LINEAR_SITES", "BLOCK_LINEAR_SITES", "PlanContext", "SiteState", "Transform", "handler_for",
           "register_transform", "transform_kinds", "GHT", "FullHadamard", "GALT", "SmoothQuant", "FormatSearch",
           "galt_defaults_for", "GPTQ", "SVDQuant", "GPS"]
