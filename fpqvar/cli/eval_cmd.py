"""``fpqvar eval``: sample a class-balanced set per recipe (sharded with torchrun, resumable), measure FID / IS /
precision / recall, write the table, figures and HTML report. ``fpqvar eval build-reference``: the default
model's shipped reference statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fpqvar.cli.common import (
    check_device,
    check_outputs,
    check_seed,
    choose,
    choose_recipe,
    fail,
    parse_classes,
    print_json,
)
from fpqvar.model.zoo import MODELS
from fpqvar.quant.recipes import recipe_names

_EVAL_HELP = """Evaluate a model (float or quantized) on the class-balanced protocol.

Examples: fpqvar eval --model default --recipes fp16,fp4-rtn,fpqvar-w4a4 --per-class 100 --out runs/eval;
torchrun --nproc_per_node 8 -m fpqvar eval --model var-d30 --recipe fpqvar-w4a4 --per-class 50
--reference VIRTUAL_imagenet256_labeled.npz --out runs/d30. Rerunning the same command resumes."""


def register(app: typer.Typer, hw_app: typer.Typer) -> None:
    eval_app = typer.Typer(help=_EVAL_HELP, invoke_without_command=True, no_args_is_help=False)

    @eval_app.callback()
    def eval_main(
        ctx: typer.Context,
        model: str = typer.Option("default", help="model name: default, var-d16 .. var-d30"),
        ckpt: Optional[Path] = typer.Option(None, help="VAR checkpoint (official models)"),
        vae: Optional[Path] = typer.Option(None, help="VQVAE checkpoint (official models)"),
        recipe: Optional[str] = typer.Option(None, help="one recipe name or recipe JSON (default: fp16 = float)"),
        recipes: Optional[str] = typer.Option(None, help="comma-separated recipes, e.g. fp16,int4-rtn,fpqvar-w4a4; "
                                               "'all' = every named recipe (fpqvar quantize --list-recipes)"),
        quantized: Optional[list[Path]] = typer.Option(None, help="packed quantized file(s) to evaluate"),
        per_class: int = typer.Option(50, help="images per class (ImageNet protocol: 50)"),
        classes: Optional[str] = typer.Option(None, help="class ids, as in `fpqvar sample`: 3 (class 3), 0-9, or "
                                              "0,3,5-9; default all"),
        batch: int = typer.Option(25, help="images per work unit and batch (fixes the images: keep it on resume)"),
        cfg: float = typer.Option(1.5, help="classifier-free guidance"),
        top_k: int = typer.Option(900, help="top-k"),
        top_p: float = typer.Option(0.96, help="top-p"),
        seed: int = typer.Option(0, help="base seed of the per-unit seeds"),
        dtype: str = typer.Option("float32", help="sampling dtype: float32, bfloat16, float16 (autocast)"),
        device: str = typer.Option("auto", help="auto (cuda:LOCAL_RANK if available), cpu, cuda"),
        calib_samples: int = typer.Option(100, help="calibration samples (float model, once for all recipes)"),
        backend: str = typer.Option("reference", help="QuantLinear forward: reference, exact, compile, triton"),
        classifier: Optional[Path] = typer.Option(None, help="default model: DigitNet weights (default: shipped)"),
        reference: Optional[Path] = typer.Option(None, help="reference stats: ADM npz (ImageNet) or domain npz"),
        inception_weights: Optional[Path] = typer.Option(None, help="ImageNet: Inception-v3 weights file"),
        out: Path = typer.Option(Path("runs/eval"), help="output folder (resumable)"),
        figures: bool = typer.Option(True, help="figures + HTML report"),
        threads: int = typer.Option(0, help="torch CPU threads (0: torch's default); images depend on it, so it "
                                    "is recorded and a folder is never resumed with another count"),
        paired: bool = typer.Option(True, help="damage metrics vs the float model's own samples (adds fp16)"),
        bootstrap: int = typer.Option(200, help="bootstrap resamples for the metric intervals (0: none)"),
        progress: bool = typer.Option(True, help="progress bars"),
        json_out: bool = typer.Option(False, "--json", help="print the table as JSON"),
    ) -> None:
        if ctx.invoked_subcommand is not None:
            return
        if recipe is not None and recipes is not None:
            fail("give --recipe or --recipes, not both")
        model = choose(model, MODELS, "--model")
        if recipes is not None and recipes.strip() == "all":
            recipes = ",".join(recipe_names())
        names = tuple(choose_recipe(r.strip()) for r in (recipes or recipe or "").split(",") if r.strip())
        if not names and not quantized:
            names = ("fp16",)
        check_seed(seed)
        device = check_device(device, allow_auto=True)
        if threads < 0:
            fail(f"--threads must be >= 0 (0: torch's default), got {threads}")
        try:
            class_ids = None if classes is None else tuple(parse_classes(classes, MODELS[model].var.num_classes))
        except ValueError as e:
            fail(str(e))
        import torch

        from fpqvar.eval.distributed import init_from_env, shutdown
        from fpqvar.eval.pipeline import EvalPlan, run_plan
        from fpqvar.eval.plan import check_plan_inputs, input_paths

        if threads > 0:
            torch.set_num_threads(threads)  # the entry point owns the thread count; the plan records it
        try:
            plan = EvalPlan(model=model, recipes=names, quantized=tuple(str(q) for q in quantized or ()),
                            classes=class_ids, per_class=per_class, batch=batch, cfg=cfg, top_k=top_k,
                            top_p=top_p, seed=seed, dtype=dtype, calib_samples=calib_samples, backend=backend,
                            ckpt=None if ckpt is None else str(ckpt), vae=None if vae is None else str(vae),
                            classifier=None if classifier is None else str(classifier),
                            reference=None if reference is None else str(reference),
                            inception_weights=None if inception_weights is None else str(inception_weights),
                            figures=figures, threads=torch.get_num_threads(), paired=paired, bootstrap=bootstrap)
        except ValueError as e:
            fail(str(e))
        check_outputs({"--out": out}, input_paths(plan), folders=("--out",))
        try:
            check_plan_inputs(plan)  # every recipe, quantized file and metric asset, before any work
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            fail(str(e))
        dctx = init_from_env("cuda" if device.startswith("cuda") else device)
        try:
            table = run_plan(plan, out, dctx, progress=progress)
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            fail(str(e))
        finally:
            shutdown(dctx)
        if table is None:
            return
        if json_out:
            print_json(table)
        else:
            typer.echo((out / "table.md").read_text())
            if plan.figures:
                typer.echo(f"report: {out / 'report.html'}")

    @eval_app.command("build-reference")
    def build_reference_cmd(
        classifier: Optional[Path] = typer.Option(None, help="DigitNet weights (default: the shipped classifier)"),
        out: Optional[Path] = typer.Option(None, help="output npz (default: fpqvar/assets/default/"
                                                      "reference_stats.npz)"),
        json_out: bool = typer.Option(False, "--json", help="print the stored metadata as JSON"),
    ) -> None:
        """Compute the default model's domain reference: held-out features, mu / sigma, real-vs-real floor."""
        from fpqvar.eval.build_reference import build_reference
        from fpqvar.eval.reference import load_domain_reference

        try:
            path = build_reference(classifier, out)
        except (ValueError, FileNotFoundError, ImportError) as e:
            fail(str(e))
        meta = load_domain_reference(path).meta
        if json_out:
            print_json({"path": str(path), **meta})
        else:
            fl = meta["floor"]
            typer.echo(f"wrote {path}\nreal-vs-real floor ({fl['description']}): FID {fl['fid']:.3f}, "
                       f"IS {fl['is']:.3f}, precision {fl['precision']:.3f}, recall {fl['recall']:.3f}, class "
                       f"accuracy {fl['class_accuracy']:.3f}; held-out IS {meta['heldout_is']:.3f}, accuracy "
                       f"{meta['heldout_class_accuracy']:.3f}")
            for n, f in fl.get("by_n", {}).items():
                typer.echo(f"  floor at {n} real images (mean of {f['draws']}): FID {f['fid']:.3f}, precision "
                           f"{f['precision']:.3f}, recall {f['recall']:.3f}")

    app.add_typer(eval_app, name="eval")
