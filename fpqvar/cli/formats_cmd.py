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
        """Print each number format's full value table (code, bits, value), then the block-scaled formats
        (MX / NVFP4: element, block, scale types, bits per value)."""
        from fpqvar.formats import BLOCK_FORMATS, FORMATS
        from fpqvar.formats.report import block_format_summary, format_error_table, format_summary, value_table

        names = list(name) if name else list(FORMATS) + list(BLOCK_FORMATS)
        unknown = [n for n in names if n not in FORMATS and n not in BLOCK_FORMATS]
        if unknown:
            fail(f"unknown format(s) {', '.join(unknown)}; known: {', '.join([*FORMATS, *BLOCK_FORMATS])}")
        out = {"formats": [{**format_summary(n), "codes": value_table(n)} for n in names if n in FORMATS]}
        blocks = [block_format_summary(n) for n in names if n in BLOCK_FORMATS]
        if blocks:
            out["block_formats"] = blocks
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
        if blocks:
            typer.echo("block-scaled formats (docs/formats.md; element codes: the element format's table):")
            typer.echo(f"  {'format':<11} {'element':<7} {'block':>5} {'block scale':<11} {'tensor scale':<12} "
                       f"{'bits/value':>10}")
            for b in blocks:
                typer.echo(f"  {b['name']:<11} {b['element']:<7} {b['block_size']:>5} {b['block_scale']:<11} "
                           f"{b['tensor_scale'] or '-':<12} {b['bits_per_value']:>10g}")
            typer.echo("")
        if errors:
            typer.echo(f"quantization error (seed {seed}; RNE; absmax scales):")
            typer.echo(f"  {'format':<8} {'input':<6} {'granularity':<12} {'bits':>4} {'mse':>12} {'sqnr_db':>8}")
            for r in out["errors"]:
                sq = r["sqnr_db"]
                sq = f"{sq:8.2f}" if isinstance(sq, float) else f"{sq:>8}"
                typer.echo(f"  {r['format']:<8} {r['input']:<6} {r['granularity']:<12} {r['bits']:>4} "
                           f"{r['mse']:12.4e} {sq}")
