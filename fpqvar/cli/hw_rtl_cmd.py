"""``fpqvar hw rtl`` (Verilog of one unit, optionally synthesized) and ``fpqvar hw area`` (the area table)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

from fpqvar.cli.common import check_outputs, choose, fail, print_json
from fpqvar.hw.rtl.units import unit_names  # light: no Amaranth import until a unit is built
from fpqvar.hw.synth import AREA_UNITS  # light: standard library only

_UNITS_HELP = ", ".join(unit_names())


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    @hw_app.command("rtl")
    def rtl(
        unit: str = typer.Option(..., "--unit", help=f"Unit to generate (hyphens or underscores): {_UNITS_HELP}."),
        out: Path = typer.Option(..., "--out", help="Output directory (gets UNIT.v, and UNIT.synth/ with --synth)."),
        synth: bool = typer.Option(False, "--synth", help="Also run Yosys synth_xilinx and report cell counts."),
        timing: bool = typer.Option(False, "--timing", help="Measure latency / initiation interval by simulation "
                                    "(pipelined units: pe_*, fht128)."),
        json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Write the Verilog of one generated unit (deterministic), optionally synthesize it."""
        from fpqvar.hw import synth as sy
        from fpqvar.hw.rtl.timing import TIMED_UNITS, rtl_timing
        from fpqvar.hw.rtl.units import UNITS, unit_verilog
        from fpqvar.io_utils import atomic_write_text

        unit = choose(unit, UNITS, "--unit", "unit")
        check_outputs({"--out": out}, folders=("--out",))
        if timing and unit not in TIMED_UNITS:
            fail(f"--timing applies to the pipelined units {', '.join(TIMED_UNITS)}, not {unit!r}")
        if synth and sy.find_yosys() is None:
            fail(sy.YOSYS_INSTALL_HINT)
        verilog = unit_verilog(unit)
        path = atomic_write_text(out / f"{unit}.v", verilog)
        result: dict = {"unit": unit, "description": UNITS[unit].description, "verilog": str(path),
                        "verilog_bytes": len(verilog.encode()),
                        "verilog_sha256": hashlib.sha256(verilog.encode()).hexdigest()}
        if timing:
            result["timing"] = rtl_timing(unit).to_dict()
        if synth:
            try:
                r = sy.synthesize_verilog(verilog, unit, workdir=out / f"{unit}.synth")
            except sy.SynthError as e:
                fail(str(e))
            result["synth"] = r.to_dict()
        if json_out:
            print_json(result)
            return
        typer.echo(f"{unit}: wrote {path} ({result['verilog_bytes']} bytes)")
        if timing:
            t = result["timing"]
            typer.echo(f"  latency {t['latency_cycles']} cycles, initiation interval "
                       f"{t['initiation_interval_cycles']} cycle(s)")
        if synth:
            s = result["synth"]
            sizes = ", ".join(f"{v} {k}" for k, v in s["luts_by_size"].items())
            typer.echo(f"  {s['yosys_version']}, {s['flow']}: {s['luts']} LUTs ({sizes}), {s['ffs']} FFs, "
                       f"{s['carry']} CARRY, {s['muxf']} MUXF, {s['dsp']} DSP ({s['seconds']} s)")

    @hw_app.command("area")
    def area(
        out: Path = typer.Option(Path("out/hw_area"), "--out", help="Directory for area.json and area.md."),
        units: str = typer.Option(",".join(AREA_UNITS), "--units",
                                  help="Comma-separated units (the PEs and FHT take ~1 min each)."),
        json_out: bool = typer.Option(False, "--json", help="Print the table as JSON."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Synthesize again even if a cached result "
                                      "(same Verilog, flow and Yosys version) exists."),
    ) -> None:
        """Synthesize the multipliers, quantizers, PEs and FHT unit; write the LUT / FF table (JSON + Markdown)."""
        from fpqvar.hw import synth as sy
        from fpqvar.hw.rtl.units import UNITS

        names = tuple(choose(u.strip(), UNITS, "--units", "unit") for u in units.split(",") if u.strip())
        if not names:
            fail(f"--units: empty; known: {', '.join(UNITS)}")
        check_outputs({"--out": out}, folders=("--out",))
        if sy.find_yosys() is None:
            fail(sy.YOSYS_INSTALL_HINT)
        try:
            table = sy.area_table(names, progress=None if json_out else
                                  lambda u: typer.echo(f"synthesizing {u} ...", err=True), cache=not no_cache)
        except sy.SynthError as e:
            fail(str(e))
        json_path, md_path = sy.write_area_table(table, out)
        if json_out:
            print_json(table)
            return
        typer.echo(md_path.read_text())
        typer.echo(f"wrote {json_path} and {md_path}")
