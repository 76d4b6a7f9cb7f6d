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


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    @hw_app.command("perf")
    def perf(
        model: str = typer.Option("var-d30", help="model name (var-d16 .. var-d30, default)"),
        recipe: str = typer.Option("fpqvar-w4a4", help="fpqvar-w4a4 (FPQVAR design); int8, int4, int8-fc2, "
                                   "int4-fc2, fp16 (DSP-based integer design)"),
        schedule: str = typer.Option("level2", help="sequential, level1 or level2"),
        config: Path = typer.Option(None, help="JSON overrides: accelerator, integer_accelerator, gpu, luts_json"),
        luts_json: Path = typer.Option(None, help="LUT counts measured by `fpqvar hw area --json` (else the "
                                       "given counts of hardware.md section 6)"),
        batch: int = typer.Option(1, min=1, help="images per generation call"),
        ada_lin_once: bool = typer.Option(False, help="compute ada_lin once per sample (upstream: every scale)"),
        vae_on_accelerator: bool = typer.Option(False, help="run the VQVAE decoder on the DSP array in FP16 "
                                                "(default: kept on the host, reported but not timed)"),
        claims: bool = typer.Option(True, help="evaluate the paper's claims (var-d30) beside the model"),
        assumptions: bool = typer.Option(False, help="list every hardware field with unit and source"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
        sweep: bool = typer.Option(False, help="sweep array size, clock and bandwidth; needs --out"),
        out: Path = typer.Option(None, help="folder for sweep.json and sweep.png"),
    ) -> None:
        """Latency, images/s, per-scale and per-operator breakdown, utilisation and energy per image."""
        from fpqvar.cli.common import fail, print_json
        from fpqvar.hw.perf import report
        from fpqvar.hw.perf.estimate import EstimateOptions, estimate
        from fpqvar.hw.perf.gpu import estimate_gpu
        from fpqvar.hw.perf.hardware import assumptions as assumption_rows
        from fpqvar.hw.perf.recipes import get_hw_recipe
        from fpqvar.hw.perf.schedule import SCHEDULES
        from fpqvar.model.zoo import get_model_spec

        if schedule not in SCHEDULES:
            fail(f"--schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if sweep and out is None:
            fail("--sweep needs --out DIR")
        try:
            spec = get_model_spec(model)
            rec = get_hw_recipe(recipe)
        except ValueError as e:
            fail(str(e))
        acc, int_acc, gpu = _designs(config, luts_json)
        hw = acc if rec.needs_fmu else int_acc
        opts = EstimateOptions(schedule=schedule, batch_images=batch, ada_lin_per_scale=not ada_lin_once,
                               vae_on_host=not vae_on_accelerator)
        try:
            result = estimate(model, spec.var, spec.vae, hw, rec, opts)
        except ValueError as e:
            fail(str(e))
        g = estimate_gpu(spec.var, spec.vae, gpu, batch, True, not vae_on_accelerator)
        payload = {"result": result.to_dict(), "gpu": g.to_dict(), "options": opts.__dict__}
        text = [report.format_result(result), report.format_gpu(g)]
        if claims:
            from fpqvar.hw.perf.claims import CLAIM_MODEL, evaluate_claims

            cl, _ = evaluate_claims(acc, int_acc, gpu, opts=opts)
            payload["claims"] = [c.to_dict() for c in cl]
            text += ["", report.format_claims(cl, CLAIM_MODEL)]
        rows = assumption_rows(hw)
        payload["assumptions"] = rows
        if assumptions:
            text += ["", f"assumptions of {hw.name}:", report.format_assumptions(rows)]
        else:
            text += ["", "key assumptions (all: --assumptions):",
                     report.format_assumptions(rows, report.KEY_ASSUMPTIONS)]
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
        if as_json:
            print_json(payload)
        else:
            typer.echo("\n".join(text))
