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
from fpqvar.quant.steps.rotation import GHT, FullHadamard
from fpqvar.quant.steps.scaling import GALT, SmoothQuant, galt_defaults_for
from fpqvar.quant.steps.search import BLOCK_LINEAR_SITES, FormatSearch
from fpqvar.quant.steps.gptq import GPTQ  # noqa: E402  (after the built-ins: registration order)
from fpqvar.quant.steps.svdquant import SVDQuant  # noqa: E402
from fpqvar.quant.steps.ptq4arvg import GPS  # noqa: E402

__all__ = ["ADALN_LINEAR_SITES", "BLOCK_LINEAR_SITES", "PlanContext", "SiteState", "Transform", "handler_for",
           "register_transform", "transform_kinds", "GHT", "FullHadamard", "GALT", "SmoothQuant", "FormatSearch",
           "galt_defaults_for", "GPTQ", "SVDQuant", "GPS"]
