"""Analytical performance and energy model of the FPQVAR accelerator (issues 8 and 15), pure Python (no torch).

    workload (fpqvar.model.workload) -> cost.py (tile-level cycles per operator, tiles.py formulas, bytes per
    memory channel) -> schedule.py (sequential / level-1 / level-2 / stream segments) -> estimate.py (latency,
    breakdowns, energy.py)

config.py (fields with unit and source), hardware.py / accelerator.py / memory.py (the designs, every assumption a
field), lut_costs.py + areas.py (PE / unit areas measured by Yosys on our RTL, cached; formula as labelled
fallback), recipes.py (quantization recipe -> units), designs.py (named design points and baselines),
streaming.py (unit widths for the stream schedule), claims.py (the paper's claims per design pair), plots.py /
html_report.py (figures, HTML), gpu.py (GPU roofline), sweep.py, report.py (text). CLI: ``fpqvar hw perf``.
"""
