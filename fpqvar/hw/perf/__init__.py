"""Analytical performance and energy model of the FPQVAR accelerator (issue 8), pure Python (no torch).

    workload (fpqvar.model.workload) -> cost.py (tile-level cycles per operator, tiles.py formulas)
    -> schedule.py (sequential / level-1 / level-2 segments) -> estimate.py (latency, breakdowns, energy.py)

hardware.py / accelerator.py describe the designs (every assumption a field with unit and source), recipes.py
maps a quantization recipe onto units, gpu.py is the GPU roofline, claims.py sets the paper's claims beside
the model, sweep.py explores array size / clock / bandwidth, report.py formats text. CLI: ``fpqvar hw perf``.
"""
