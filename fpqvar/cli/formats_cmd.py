"""``fpqvar formats``: every number format's value table (code, bits, value), optionally its error."""

from __future__ import annotations

import typer

from fpqvar.cli.common import fail, print_json


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    @app.command("formats")
    def formats(
        name: list[str] = typer.Option(None, "--format", "-f", help="Only these formats (repeatable)."),
        errors: bool = typer.Option(False, "--errors", help="Also quantize a seeded random tensor with each "
                                    "format and report MSE / SQNR."),
        seed: int = typer.Option(0, help="Seed of the random tensor for --errors."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Print each number format's full value table (code, bits, value)."""
        from fpqvar.formats import FORMATS
        from fpqvar.formats.report import format_error_table, format_summary, value_table

        names = list(name) if name else list(FORMATS)
        unknown = [n for n in names if n not in FORMATS]
        if unknown:
            fail(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
        out = {"formats": [{**format_summary(n), "codes": value_table(n)} for n in names]}
        if errors:
            out["errors"] = format_error_table(seed=seed)
        if as_json:
            print_json(out)
            return
        for f in out["formats"]:
            desc = ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("name", "codes"))
            typer.echo(f"{f['name']}: {desc}")
            typer.echo(f"  {'code':>4}  {'bits':>8}  value")
            for r in f["codes"]:
                typer.echo(f"  {r['code']:>4}  {r['bits']:>8}  {r['value']}")
            typer.echo("")
        if errors:
            typer.echo(f"quantization error (seed {seed}; RNE; absmax scales):")
            typer.echo(f"  {'format':<8} {'input':<6} {'granularity':<12} {'bits':>4} {'mse':>12} {'sqnr_db':>8}")
            for r in out["errors"]:
                sq = r["sqnr_db"]
                sq = f"{sq:8.2f}" if isinstance(sq, float) else f"{sq:>8}"
                typer.echo(f"  {r['format']:<8} {r['input']:<6} {r['granularity']:<12} {r['bits']:>4} "
                           f"{r['mse']:12.4e} {sq}")
