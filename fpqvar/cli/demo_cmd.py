"""``fpqvar demo``: the whole mission on the embedded default model in a few minutes on a CPU: calibrate once,
quantize with the main recipes, sample a class-balanced set per recipe (same seeds), measure the damage against
the float model's own samples (FID / PSNR / token agreement to float) and the domain FID / IS / precision /
recall / class accuracy against real digits, each with a bootstrap interval; print the table and write the
figures and the HTML report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from fpqvar.cli.common import check_outputs, check_seed, choose_recipe, fail, print_json

DEMO_RECIPES = "fp16,int4-rtn,fp4-rtn,fpqvar-w4a4,fpqvar-w6a6"
# 500 images per recipe: the whole demo in ~3 minutes on an idle 2-core CPU (benchmarks/bench_demo.py: 2.97 min
# AVX512, 3.02 min under AVX2 caps; 17-34 images/s per recipe, ~55 s of calibration + GALT for fpqvar-w4a4).
# FID of 500 samples is biased upwards: compare with the floor at 500.
DEMO_PER_CLASS = 50


def _check_assets(classifier: Optional[Path], reference: Optional[Path]) -> None:
    from fpqvar.eval import reference as R
    from fpqvar.model.default import default_paths

    default_paths(check=True)  # VAR + VQVAE weights
    cls_path = classifier or R.default_classifier_path()
    ref_path = reference or R.default_reference_path()
    missing = [str(p) for p in (cls_path, ref_path) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"the default model's metric assets are missing: {missing} (they ship in "
                                f"fpqvar/assets/default/; rebuild the reference with `fpqvar eval build-reference`)")


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("fpqvar-demo"), help="output folder (rerun to resume)"),
        recipes: str = typer.Option(DEMO_RECIPES, help="comma-separated recipes"),
        per_class: int = typer.Option(DEMO_PER_CLASS, help="images per class (10 classes)"),
        calib_samples: int = typer.Option(100, help="calibration samples (float model, once)"),
        backend: str = typer.Option("reference", help="QuantLinear forward: reference, exact (fast integer path)"),
        seed: int = typer.Option(0, help="base seed"),
        classifier: Optional[Path] = typer.Option(None, help="DigitNet weights (default: shipped)"),
        reference: Optional[Path] = typer.Option(None, help="domain reference npz (default: shipped)"),
        progress: bool = typer.Option(True, help="progress bars"),
        json_out: bool = typer.Option(False, "--json", help="print the table as JSON"),
        threads: int = typer.Option(0, help="CPU threads for torch (0: measured, 1 vs all CPUs of this process)"),
    ) -> None:
        """Run the main recipes end to end on the embedded default model; print the table, write the report."""
        try:
            _check_assets(classifier, reference)
        except FileNotFoundError as e:
            fail(str(e))
        from fpqvar import kernels
        from fpqvar.eval.pipeline import EvalPlan, run_plan
        from fpqvar.eval.plan import check_plan_inputs, input_paths

        kernels.apply_default_threads(threads)
        check_seed(seed)
        names = tuple(choose_recipe(r.strip()) for r in recipes.split(",") if r.strip())
        try:
            plan = EvalPlan(model="default", recipes=names, per_class=per_class, batch=min(25, max(1, per_class)),
                            seed=seed, calib_samples=calib_samples, backend=backend,
                            classifier=None if classifier is None else str(classifier),
                            reference=None if reference is None else str(reference))
        except ValueError as e:
            fail(str(e))
        check_outputs({"--out": out}, input_paths(plan), folders=("--out",))
        try:
            check_plan_inputs(plan)
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            fail(str(e))
        if not json_out:
            typer.echo(f"fpqvar demo: {len(names)} recipes x {10 * per_class} samples on the embedded default model "
                       f"(domain metrics: DigitNet features, not comparable to ImageNet FID) -> {out}")
        t = time.perf_counter()
        try:
            table = run_plan(plan, out, progress=progress)
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            fail(str(e))
        table["wall_s"] = time.perf_counter() - t
        table["kernels"] = kernels.selection_report()
        if json_out:
            print_json(table)
            return
        typer.echo((out / "table.md").read_text())
        typer.echo(f"report: {out / 'report.html'}  (figures in {out / 'figures'}; {table['wall_s']:.0f} s)")
        typer.echo(f"kernels: {kernels.summary_line()}")
