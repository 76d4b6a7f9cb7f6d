"""Command line: the only place that parses arguments (typer). Heavy imports stay inside commands.

Each ``*_cmd`` module exposes ``register(app)`` and owns its subcommands, so parts of the CLI grow
independently. ``hw`` is a command group shared by the hardware modules.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="fpqvar",
    help="FPQVAR: FP post-training quantization of VAR image generators, and its FPGA accelerator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
hw_app = typer.Typer(help="Hardware: bit-exact datapath, RTL generation / synthesis, performance model.",
                     no_args_is_help=True)

# Order = order in --help. A module that is not written yet is simply absent.
_COMMAND_MODULES = [
    "formats_cmd",
    "demo_cmd",
    "sample_cmd",
    "train_cmd",
    "quantize_cmd",
    "eval_cmd",
    "hw_rtl_cmd",
    "hw_perf_cmd",
    "doctor_cmd",
]


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"fpqvar.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"fpqvar.cli.{name}":
                continue
            raise
        mod.register(app, hw_app)
    app.add_typer(hw_app, name="hw")


_register_all()


def main() -> None:
    app()
