"""Amaranth generators of the accelerator's units (one file per unit), simulated against ``fpqvar.hw.datapath``.

``units`` names them and exports Verilog; ``sim`` drives simulations; ``timing.rtl_timing`` gives measured
latency / initiation interval (for ``fpqvar.hw.perf``). Synthesis lives in ``fpqvar.hw.synth``.
"""
