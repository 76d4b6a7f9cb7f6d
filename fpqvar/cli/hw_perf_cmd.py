"""``fpqvar hw perf``: the analytical performance / energy model of the FPQVAR accelerator (fpqvar.hw.perf)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

CONFIG_KEYS = ("version", "accelerator", "integer_accelerator", "gpu", "luts_json")


def _read_json(path: Path, what: str) -> dict:
    from fpqvar.cli.common import fail

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"{what} {path}: file not found")
    except json.JSONDecodeError as e:
        fail(f"{what} {path}: not valid JSON ({e})")
    if not isinstance(data, dict):
        fail(f"{what} {path}: expected a JSON object at the top level")
    return data


def _designs(config: Path | None, luts_json: Path | None):
    """(FPQVAR accelerator, integer accelerator, GPU) with the config file's overrides applied.

    Config file (JSON): {"version": 1, "accelerator": {...}, "integer_accelerator": {...}, "gpu": {...},
    "luts_json": "area.json"}; each section overrides fields of the default description by name (nested)."""
    from dataclasses import replace

    from fpqvar.cli.common import fail
    from fpqvar.hw.perf.accelerator import default_gpu, fpqvar_vck190, integer_vck190
    from fpqvar.hw.perf.hardware import LutCosts

    cfg = _read_json(config, "config") if config else {}
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        fail(f"config {config}: unknown keys {unknown}; known: {list(CONFIG_KEYS)}")
    if cfg.get("version", 1) != 1:
        fail(f"config {config}: version {cfg['version']!r} not supported (1)")
    try:
        acc = fpqvar_vck190().with_overrides(cfg.get("accelerator", {}))
        int_acc = integer_vck190().with_overrides(cfg.get("integer_accelerator", {}))
        gpu = default_gpu().with_overrides(cfg.get("gpu", {}))
    except (ValueError, TypeError) as e:
        fail(f"config {config}: {e}")
    lj = luts_json or (Path(config).parent / cfg["luts_json"] if "luts_json" in cfg else None)
    if lj is not None:
        try:
            costs = LutCosts.from_area_json(_read_json(lj, "LUT table"), str(lj))
            acc = replace(acc, fmu=replace(acc.fmu, costs=costs))
        except ValueError as e:
            fail(str(e))
    return acc, int_acc, gpu


def _named(var, rec, cfg_path: Path | None):
    """Named design points with the config file's overrides (accelerator -> FPQVAR family, integer_accelerator
    -> baselines)."""
    from fpqvar.cli.common import fail
    from fpqvar.hw.perf.designs import named_designs, with_overrides

    cfg = _read_json(cfg_path, "config") if cfg_path else {}
    try:
        return with_overrides(named_designs(var, rec), cfg.get("accelerator", {}), cfg.get("integer_accelerator", {}))
    except ValueError as e:
        fail(f"config {cfg_path}: {e}")


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    @hw_app.command("perf")
    def perf(
        model: str = typer.Option("var-d30", help="model name (var-d16 .. var-d30, default)"),
        recipe: str = typer.Option("fpqvar-w4a4", help="quantization recipe with a hardware mapping: fpqvar-w4a4, "
                                   "fpqvar-w6a6, fp4-rtn, int4-rtn, litevar-w4a4, ... (or int8, int4, int8-fc2, "
                                   "int4-fc2, fp16 on the DSP-based design)"),
        schedule: str = typer.Option("level2", help="sequential, level1, level2 or stream"),
        config: Path = typer.Option(None, help="JSON overrides: accelerator, integer_accelerator, gpu, luts_json"),
        luts_json: Path = typer.Option(None, help="LUT counts from `fpqvar hw area --json` (else the area cache's "
                                       "Yosys measurements, formula where a unit is not measured)"),
        batch: int = typer.Option(1, min=1, help="images per generation call"),
        ada_lin: str = typer.Option("per_scale", help="per_scale (upstream), once (per image) or table (per class)"),
        ada_lin_once: bool = typer.Option(False, help="same as --ada-lin once"),
        vae_on_accelerator: bool = typer.Option(False, help="run the VQVAE decoder on the DSP array in FP16 "
                                                "(default: kept on the host, reported but not timed)"),
        designs: bool = typer.Option(True, help="estimate every named design point and baseline"),
        claims: bool = typer.Option(True, help="evaluate the paper's claims (var-d30) against the named designs"),
        assumptions: bool = typer.Option(False, help="list every hardware field with unit and source"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
        sweep: bool = typer.Option(False, help="sweep array size, clock and bandwidth; needs --out"),
        out: Path = typer.Option(None, help="folder for the figures (roofline, heat map, tornado), perf.json, "
                                 "report.html (and sweep.*)"),
        refresh_areas: Path = typer.Option(None, help="synthesize our RTL units with Yosys (minutes) and write the "
                                           "area cache to this JSON file, then use it"),
    ) -> None:
        """Latency, images/s, per-scale and per-operator breakdown, energy; the named designs and the claims."""
        from dataclasses import replace as dc_replace

        from fpqvar.cli.common import fail, print_json
        from fpqvar.hw.perf import report
        from fpqvar.hw.perf.estimate import ADA_LIN_MODES, EstimateOptions, estimate
        from fpqvar.hw.perf.gpu import estimate_gpu
        from fpqvar.hw.perf.hardware import assumptions as assumption_rows
        from fpqvar.hw.perf.recipes import get_hw_recipe
        from fpqvar.hw.perf.schedule import SCHEDULES
        from fpqvar.model.zoo import get_model_spec

        if schedule not in SCHEDULES:
            fail(f"--schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
        ada = "once" if ada_lin_once else ada_lin
        if ada not in ADA_LIN_MODES:
            fail(f"--ada-lin {ada_lin!r}: expected one of {', '.join(ADA_LIN_MODES)}")
        if sweep and out is None:
            fail("--sweep needs --out DIR")
        if refresh_areas is not None:
            import os

            from fpqvar.hw import synth
            from fpqvar.hw.perf import areas

            if synth.find_yosys() is None:
                fail(synth.YOSYS_INSTALL_HINT)
            try:
                areas.refresh(refresh_areas, progress=lambda u: typer.echo(f"synthesizing {u} ...", err=True))
            except (synth.SynthError, ValueError) as e:
                fail(str(e))
            os.environ["FPQVAR_AREA_CACHE"] = str(refresh_areas)
        try:
            spec = get_model_spec(model)
            rec = get_hw_recipe(recipe)
        except ValueError as e:
            fail(str(e))
        acc, int_acc, gpu = _designs(config, luts_json)
        hw = acc if (rec.needs_fmu or rec.needs_ghtu) else int_acc
        opts = EstimateOptions(schedule=schedule, batch_images=batch, ada_lin=ada, vae_on_host=not vae_on_accelerator)
        if schedule == "stream":
            from fpqvar.hw.perf.streaming import size_for_stream

            hw = size_for_stream(hw, spec.var, rec, batch)
        try:
            result = estimate(model, spec.var, spec.vae, hw, rec, opts)
        except ValueError as e:
            fail(str(e))
        g = estimate_gpu(spec.var, spec.vae, gpu, batch, True, not vae_on_accelerator)
        payload = {"result": result.to_dict(), "gpu": g.to_dict(), "options": opts.__dict__,
                   "area_sources": dict(acc.fmu.costs.role_sources) if acc.fmu else {}}
        text = [report.format_result(result), report.format_gpu(g)]
        named, named_res = {}, {}
        if designs or claims or out is not None:
            named = _named(spec.var, rec, config)
            try:
                named_res = {n: d.run(model, spec.var, spec.vae) for n, d in named.items()}
            except ValueError as e:
                fail(str(e))
            payload["designs"] = {n: {**named[n].summary(), "images_per_s": r.images_per_s, "latency_s": r.latency_s,
                                      "energy_per_image_j": r.energy_per_image_j, "dram_gb": r.dram_bytes / 1e9}
                                  for n, r in named_res.items()}
            text += ["", report.format_designs(payload["designs"], model)]
        if claims:
            from fpqvar.hw.perf.claims import CLAIM_MODEL, evaluate_claims

            cspec = get_model_spec(CLAIM_MODEL)
            if model == CLAIM_MODEL:
                c_named, c_res = named, named_res
            else:
                c_named = _named(cspec.var, rec, config)
                c_res = {n: d.run(CLAIM_MODEL, cspec.var, cspec.vae) for n, d in c_named.items()}
            cl = evaluate_claims(c_named, c_res, gpu, cspec.var, cspec.vae)
            payload["claims"] = [c.to_dict() for c in cl]
            text += ["", report.format_claims(cl, CLAIM_MODEL)]
        rows = assumption_rows(hw)
        payload["assumptions"] = rows
        if assumptions:
            text += ["", f"assumptions of {hw.name}:", report.format_assumptions(rows)]
        else:
            text += ["", "key assumptions (all: --assumptions):",
                     report.format_assumptions(rows, report.KEY_ASSUMPTIONS)]
        if out is not None:
            from fpqvar.hw.perf import plots
            from fpqvar.hw.perf.designs import DesignPoint
            from fpqvar.hw.perf.html_report import write_report
            from fpqvar.io_utils import atomic_write_json

            chosen = DesignPoint(f"{hw.name} ({recipe}, {schedule})", hw, rec, opts)
            figs = [out / "roofline.png", out / "heatmap.png", out / "tornado.png"]
            plots.plot_roofline(chosen, result, figs[0])
            plots.plot_heatmap(chosen, result, figs[1])
            torn = plots.tornado(dc_replace(chosen, name=chosen.name), model, spec.var, spec.vae, result)
            plots.plot_tornado(chosen, torn, figs[2])
            payload["tornado"] = torn
            payload["figures"] = [str(f) for f in figs]
            text += ["", "figures: " + ", ".join(str(f) for f in figs)]
        if sweep:
            from fpqvar.hw.perf.sweep import format_sweep, plot_sweep
            from fpqvar.hw.perf.sweep import sweep as run_sweep
            from fpqvar.io_utils import atomic_write_json

            points = run_sweep(model, spec.var, spec.vae, hw, rec, opts)
            rows_out = [p.__dict__ for p in points]
            atomic_write_json(out / "sweep.json", {"version": 1, "model": model, "recipe": recipe,
                                                   "schedule": schedule, "points": rows_out})
            plot_sweep(points, out / "sweep.png", f"{model} {recipe} {schedule} on {hw.name}")
            payload["sweep"] = {"points": rows_out, "png": str(out / "sweep.png"), "json": str(out / "sweep.json")}
            text += ["", f"sweep: {len(points)} points -> {out / 'sweep.json'}, {out / 'sweep.png'}"]
            text += format_sweep(points)
            payload.setdefault("figures", []).append(str(out / "sweep.png"))
        if out is not None:
            atomic_write_json(out / "perf.json", payload)
            write_report(out / "report.html", f"fpqvar hw perf: {model}, {recipe}", payload.get("designs", {}),
                         payload.get("claims", []), [Path(f) for f in payload["figures"]], result.notes)
            text.append(f"report: {out / 'report.html'}, {out / 'perf.json'}")
        if as_json:
            print_json(payload)
        else:
            typer.echo("\n".join(text))
