"""Quantize -> sample -> evaluate for a list of recipes, sharded over ranks and resumable; one table at the end.

Layout of ``out``:

    out/<method>/quantized.safetensors   packed quantized model (rank 0 quantizes, the other ranks load it)
    out/<method>/quant_report.json       what quantize_ did (per-layer specs, SQNR rows, timings)
    out/<method>/sample_set.json, units/, samples.npz   (fpqvar.eval.sample_set)
    out/<method>/metrics.json            metrics + timings of this method
    out/table.md, table.json, figures/*.png, report.html

Calibration runs once (rank 0, on the float model) and is reused by every recipe that needs it. A rerun skips
methods whose metrics.json matches the plan, reuses quantized files, and samples only the missing units. All of
these are keyed by a fingerprint of the float model's checkpoint files (``model_fingerprint``), so a folder is
never resumed after the weights changed: the run stops with an error instead.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fpqvar.io_utils import atomic_write_json

PLAN_VERSION = 1
_FP_KEY = "fpqvar.eval.float_fingerprint"  # metadata of quantized files made by the pipeline
FLOAT_RECIPE = "fp16"  # the float model under its paper name (float32 on CPU unless --dtype says otherwise)


@dataclass(frozen=True)
class EvalPlan:
    model: str = "default"
    recipes: tuple[str, ...] = (FLOAT_RECIPE,)  # recipe names or recipe JSON paths
    quantized: tuple[str, ...] = ()  # packed quantized files, evaluated as they are
    classes: tuple[int, ...] | None = None  # None: all classes of the model
    per_class: int = 50
    batch: int = 25  # images per work unit (part of the set's identity)
    cfg: float = 1.5
    top_k: int = 900
    top_p: float = 0.96
    seed: int = 0
    dtype: str = "float32"
    calib_samples: int = 100
    backend: str = "reference"  # QuantLinear forward: reference, or a fast path of fpqvar.quant.fast (exact, ...)
    ckpt: str | None = None
    vae: str | None = None
    classifier: str | None = None
    reference: str | None = None
    inception_weights: str | None = None
    figures: bool = True
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipes", tuple(self.recipes))
        object.__setattr__(self, "quantized", tuple(str(q) for q in self.quantized))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        if not self.recipes and not self.quantized:
            raise ValueError("EvalPlan: give at least one recipe or quantized file")
        for name in ("per_class", "batch", "calib_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"EvalPlan.{name} must be >= 1, got {getattr(self, name)}")
        if self.backend not in ("reference", "exact", "compile", "triton"):
            raise ValueError(f"EvalPlan.backend must be reference, exact, compile or triton, got {self.backend!r}")
        if self.version != PLAN_VERSION:
            raise ValueError(f"EvalPlan.version must be {PLAN_VERSION}, got {self.version}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalPlan":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"EvalPlan: unknown keys {unknown}")
        return cls(**d)

    def settings(self) -> dict:
        return {"per_class": self.per_class, "cfg": self.cfg, "top_k": self.top_k, "top_p": self.top_p,
                "seed": self.seed, "dtype": self.dtype, "batch": self.batch, "calib_samples": self.calib_samples,
                "backend": self.backend}


_FULL_HASH_MAX_BYTES = 1 << 30
_PARTIAL_BYTES = 64 << 20


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of the file; above 1 GiB (official checkpoints) of its size + first and last 64 MiB."""
    import hashlib

    from fpqvar.eval.reference import file_sha256

    path = Path(path)
    size = path.stat().st_size
    if size <= _FULL_HASH_MAX_BYTES:
        return file_sha256(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_PARTIAL_BYTES))
        f.seek(size - _PARTIAL_BYTES)
        h.update(f.read(_PARTIAL_BYTES))
    return "partial:" + h.hexdigest()


def model_files(plan: "EvalPlan") -> tuple[Path, Path]:
    """(VAR, VQVAE) checkpoint files that load_model reads for this plan."""
    if plan.model == "default":
        from fpqvar.model.default import default_paths

        p = default_paths()
        return Path(plan.ckpt or p.var), Path(plan.vae or p.vae)
    from fpqvar.model.checkpoints import official_checkpoint
    from fpqvar.model.zoo import get_model_spec

    spec = get_model_spec(plan.model)
    return (Path(plan.ckpt) if plan.ckpt else official_checkpoint(spec.var_ckpt),
            Path(plan.vae) if plan.vae else official_checkpoint(spec.vae_ckpt))


def _method_name(recipe: str) -> str:
    return Path(recipe).stem if recipe.endswith(".json") else recipe


def _sample_config(plan: EvalPlan, classes, model_id: str):
    from fpqvar.eval.sample_set import SampleSetConfig

    return SampleSetConfig(classes=tuple(classes), per_class=plan.per_class,
                           chunk_size=min(plan.batch, plan.per_class), cfg=plan.cfg, top_k=plan.top_k,
                           top_p=plan.top_p, base_seed=plan.seed, dtype=plan.dtype, model_id=model_id)


class _Runner:
    def __init__(self, plan: EvalPlan, out: Path, ctx, progress: bool):
        self.plan, self.out, self.ctx, self.progress = plan, out, ctx, progress
        self._calib = None
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        """16 hex digits identifying the float model's weights (VAR + VQVAE files)."""
        if self._fingerprint is None:
            import hashlib

            var_f, vae_f = model_files(self.plan)
            text = f"var:{file_fingerprint(var_f)}|vae:{file_fingerprint(vae_f)}"
            self._fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._fingerprint

    def load_float(self):
        from fpqvar.model import load_model

        return load_model(self.plan.model, ckpt=self.plan.ckpt, vae_ckpt=self.plan.vae, device=self.ctx.device)

    def var_config(self):
        """The VAR config without loading weights (a checkpoint may change attn_l2_norm, not the shapes)."""
        from fpqvar.model.zoo import get_model_spec

        return get_model_spec(self.plan.model).var

    def load_quantized(self, qpath: Path, float_var=None):
        from fpqvar.quant.load import load_quantized
        from fpqvar.quant.quantize import set_backend

        var = load_quantized(qpath, model=float_var if float_var is not None else self.load_float(),
                             device=self.ctx.device)
        if self.plan.backend != "reference":
            set_backend(var, self.plan.backend)
        return var

    def calibration(self):
        if self._calib is None:
            from fpqvar.quant.calibrate import CalibConfig, calibrate

            p = self.plan
            cc = CalibConfig(num_samples=p.calib_samples, seed=p.seed, cfg=p.cfg, top_k=p.top_k, top_p=p.top_p)
            self._calib = calibrate(self.load_float(), cc, progress=self.progress)
        return self._calib

    def quantize_to_file(self, recipe_name: str, mdir: Path) -> Path:
        """Rank 0: quantize the float model with the recipe, save the packed file and the PTQ report."""
        from fpqvar.quant.export import save_quantized
        from fpqvar.quant.quantize import quantize_
        from fpqvar.quant.recipes import load_recipe

        path = mdir / "quantized.safetensors"
        if path.is_file():
            from fpqvar.quant.export import read_header

            made_from = (read_header(path).get("metadata") or {}).get(_FP_KEY)
            if made_from != self.fingerprint():
                raise ValueError(f"{path}: quantized from another float model (fingerprint {made_from} vs now "
                                 f"{self.fingerprint()}); use another --out or delete {mdir}")
            return path
        recipe = load_recipe(recipe_name)
        var = self.load_float()
        t = time.perf_counter()
        calib = self.calibration() if recipe.needs_calibration else None
        rep = quantize_(var, recipe, calib, progress=self.progress)
        atomic_write_json(mdir / "quant_report.json", {**rep.to_dict(), "wall_s": time.perf_counter() - t})
        return save_quantized(var, recipe, path, model_name=self.plan.model,
                              metadata={_FP_KEY: self.fingerprint()})

    def run_method(self, method: str, recipe_or_file: str, is_file: bool, classes) -> dict | None:
        from fpqvar.eval.distributed import run_sample_set
        from fpqvar.eval.reference import file_sha256

        ctx, mdir = self.ctx, self.out / method
        metrics_path = mdir / "metrics.json"
        float_model = not is_file and recipe_or_file == FLOAT_RECIPE
        qpath = Path(recipe_or_file) if is_file else mdir / "quantized.safetensors"
        if ctx.is_main:
            mdir.mkdir(parents=True, exist_ok=True)
            if not float_model and not is_file and not _done(metrics_path, self.plan, self.fingerprint()):
                self.quantize_to_file(recipe_or_file, mdir)
        ctx.barrier()
        if _done(metrics_path, self.plan, self.fingerprint()):
            return json.loads(metrics_path.read_text())["row"] if ctx.is_main else None
        model_id = f"{self.plan.model}@{self.fingerprint()}|{method}|" + (
            "float" if float_model else f"{file_sha256(qpath)[:16]}|{self.plan.backend}")
        config = _sample_config(self.plan, classes, model_id)

        def build():
            var = self.load_float()
            if float_model:
                return var
            return self.load_quantized(qpath, var)

        t = time.perf_counter()
        from fpqvar.eval.sample_set import missing_units

        new_images = sum(u.n for u in missing_units(config, mdir))  # a resumed run times only these
        packed = run_sample_set(build, config, mdir, ctx, progress=self.progress)
        sample_s = time.perf_counter() - t
        row = None
        if ctx.is_main:
            row = self._evaluate(method, recipe_or_file, is_file, float_model, qpath, packed, sample_s, new_images)
            atomic_write_json(metrics_path, {"plan": self.plan.to_dict(), "fingerprint": self.fingerprint(),
                                             "row": row})
        ctx.barrier()
        return row

    def _evaluate(self, method, recipe_or_file, is_file, float_model, qpath, packed, sample_s, new_images) -> dict:
        from fpqvar.eval.evaluate import evaluate_images
        from fpqvar.eval.report import float_weight_bytes, make_row, weight_bytes_from_file
        from fpqvar.eval.sample_set import load_packed
        from fpqvar.quant.recipes import load_recipe

        images, labels = load_packed(packed)
        t = time.perf_counter()
        m = evaluate_images(images, labels, model=self.plan.model, classifier=self.plan.classifier,
                            reference=self.plan.reference, inception_weights=self.plan.inception_weights,
                            device=self.ctx.device)
        if is_file:
            from fpqvar.quant.export import read_header

            recipe = load_recipe(read_header(qpath)["recipe"])
        else:
            recipe = load_recipe(recipe_or_file)
        cfg = self.var_config()
        wbytes = float_weight_bytes(cfg) if float_model else weight_bytes_from_file(qpath, cfg)
        qrep = Path(qpath).parent / "quant_report.json"
        quant_s = json.loads(qrep.read_text()).get("wall_s") if qrep.is_file() and not float_model else None
        extra = {"recipe": recipe.name, "floor_fid": m.get("floor_fid"), "floor_n": m.get("floor_n"),
                 "floor_fid_std": m.get("floor_fid_std"),
                 "reference": m["reference"],
                 "is_std": m.get("is_std"), "sample_s": sample_s, "eval_s": time.perf_counter() - t,
                 "quantize_s": quant_s, "sampled_images": new_images,
                 "images_per_s": new_images / sample_s if new_images and sample_s > 0 else None}
        return make_row(method, recipe, m, wbytes, extra)


def _done(metrics_path: Path, plan: EvalPlan, fingerprint: str) -> bool:
    if not metrics_path.is_file():
        return False
    try:
        d = json.loads(metrics_path.read_text())
    except (json.JSONDecodeError, OSError):
        return False
    return d.get("plan") == json.loads(json.dumps(plan.to_dict())) and d.get("fingerprint") == fingerprint


def run_plan(plan: EvalPlan, out_dir: str | os.PathLike, ctx=None, *, progress: bool = True) -> dict | None:
    """Run every method of the plan; returns the table dict on rank 0 (None elsewhere)."""
    from fpqvar.eval.distributed import DistContext
    from fpqvar.eval.report import write_tables

    ctx = ctx or DistContext()
    out = Path(out_dir)
    runner = _Runner(plan, out, ctx, progress)
    num_classes = runner.var_config().num_classes
    classes = plan.classes if plan.classes is not None else tuple(range(num_classes))
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"classes {bad[:5]} out of range for model {plan.model!r} ({num_classes} classes)")
    methods = [(_method_name(r), r, False) for r in plan.recipes]
    methods += [(Path(q).stem, q, True) for q in plan.quantized]
    names = [m for m, _, _ in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"EvalPlan: method names collide: {names}")
    rows = []
    for method, src, is_file in methods:
        row = runner.run_method(method, src, is_file, classes)
        if ctx.is_main:
            rows.append(row)
    if not ctx.is_main:
        return None
    reference_label = rows[0]["reference"] if rows else ""
    settings = {**plan.settings(), "classes": len(classes), "num_samples": len(classes) * plan.per_class}
    write_tables(out, rows, model=plan.model, reference_label=reference_label, settings=settings)
    from fpqvar.eval.report import table_json

    table = table_json(rows, model=plan.model, reference_label=reference_label, settings=settings)
    if plan.figures:
        from fpqvar.eval.figures import make_figures_and_report

        table["figures"] = make_figures_and_report(runner, methods, classes, table, out)
    return table
