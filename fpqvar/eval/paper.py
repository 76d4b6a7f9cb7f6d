"""The paper's results table (FPQVAR, arXiv 2505.16335): VAR-d30, ImageNet 256x256, 50k samples, ADM evaluator.

Transcribed from shared/spec/fpqvar-method.md section 10 (the upstream results figure; the FP4 FPQVAR row
matches the paper abstract). ``recipe`` maps a row to this project's recipe name (design.md naming); rows
without a recipe here (FP6 MixedFormat) keep ``recipe=None``. Bits are W/A as in the paper's row names; the FP6
baseline's formats (W E2M3 / A E3M2) come from a third-party review (spec).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SOURCE = ("FPQVAR (arXiv 2505.16335), results table for VAR-d30 on ImageNet 256x256, 50k samples; transcribed "
          "from shared/spec/fpqvar-method.md section 10")
PAPER_MODEL = "var-d30"


@dataclass(frozen=True)
class PaperRow:
    method: str
    bits: str  # "W/A"
    IS: float
    FID: float | None  # None: not given for the ablation rows (fpqvar-method.md, "Ablation figures")
    precision: float | None
    recall: float | None
    recipe: str | None

    def to_dict(self) -> dict:
        return asdict(self)


PAPER_TABLE: tuple[PaperRow, ...] = (
    PaperRow("FP16", "16/16", 302.0, 1.98, 0.82, 0.60, "fp16"),
    PaperRow("INT6 RTN", "6/6", 253.6, 2.99, 0.76, 0.63, "int6-rtn"),
    PaperRow("INT6 LiteVAR", "6/6", 257.0, 3.04, 0.77, 0.62, "litevar-w6a6"),
    PaperRow("FP6 baseline", "6/6", 284.6, 2.14, 0.80, 0.61, "fp6-rtn"),
    PaperRow("FP6 MixedFormat", "6/6", 289.4, 2.09, 0.80, 0.60, "fp6-mixed"),
    PaperRow("FP6 FPQVAR", "6/6", 295.0, 2.03, 0.80, 0.61, "fpqvar-w6a6"),
    PaperRow("FP6 FPQVAR KV6", "6/6", 296.8, 2.00, 0.81, 0.61, "fpqvar-w6a6-kv6"),
    PaperRow("INT4 RTN", "4/4", 64.6, 38.60, 0.53, 0.58, "int4-rtn"),
    PaperRow("INT4 LiteVAR", "4/4", 175.9, 10.83, 0.69, 0.60, "litevar-w4a4"),
    PaperRow("FP4 baseline", "4/4", 167.0, 10.72, 0.69, 0.60, "fp4-rtn"),
    PaperRow("FP4 MixedFormat", "4/4", 177.1, 8.80, 0.70, 0.60, "fp4-mixed"),
    PaperRow("FP4 + DFQ (ablation)", "4/4", 189.5, 8.25, None, None, "fpqvar-dfq"),
    PaperRow("FP4 + DFQ + GHT (ablation)", "4/4", 219.7, None, None, None, "fpqvar-dfq-ght"),
    PaperRow("FP4 + DFQ + full Hadamard (ablation)", "4/4", 232.3, None, None, None, "fpqvar-dfq-fullht"),
    PaperRow("FP4 FPQVAR", "4/4", 241.5, 3.58, 0.77, 0.60, "fpqvar-w4a4"),
    PaperRow("FP4 FPQVAR KV6", "4/4", 241.3, 3.64, 0.77, 0.60, "fpqvar-w4a4-kv6"),
)


def paper_row(recipe: str) -> PaperRow | None:
    for r in PAPER_TABLE:
        if r.recipe == recipe:
            return r
    return None
