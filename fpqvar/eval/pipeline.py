"""Quantize -> sample -> evaluate for a list of recipes, sharded over ranks and resumable; one table at the end.

Layout of ``out``:

    out/.fpqvar.lock                     held by the running evaluation (fpqvar.io_utils.FolderLock)
    out/<method>/quantized.safetensors   packed quantized model (rank 0 quantizes, the other ranks load it)
    out/<method>/quant_report.json       what quantize_ did (per-layer specs, SQNR rows, timings)
    out/<method>/sample_set.json, units/, samples.npz   (fpqvar.eval.sample_set)
    out/<method>/metrics.json            metrics + intervals of this method, and the key they were computed for
    out/table.md, table.json, figures/*.png, report.html

Every cached artefact is keyed by a fingerprint of everything that produced it (fpqvar.eval.fingerprint;
issue 16.2): the quantized file by (float weights, recipe content, calibration settings, threads, device); the
sample set by (float weights, the quantized file's bytes, sampler settings, threads, device, kernel backend);
the metrics by (the sample set's content, the float set's content, the metric asset files, the bootstrap
settings). A rerun reuses what matches, refuses a folder whose quantized file or samples came from something else
(naming what changed), validates every unit and rebuilds ``samples.npz`` from them (issue 16.6), and recomputes
metrics whose key changed. Calibration runs once (rank 0, on the float model) for every recipe that needs it.

Metrics: the damage against the float model's own samples (same seeds: fpqvar.eval.paired) and the quality
against real data (fpqvar.eval.evaluate), each with a bootstrap interval over the samples; every method is
resampled with the same indices (fpqvar.eval.bootstrap).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from fpqvar.eval import sample_set as ss
from fpqvar.eval.bootstrap import resample_indices
from fpqvar.eval.distributed import DistContext, run_sample_set
from fpqvar.eval.evaluate import load_metric_setup, quality_metrics
from fpqvar.eval.fingerprint import canonical_sha256, file_fingerprint, fingerprint_diff, recipe_sha256, run_fingerprint
from fpqvar.eval.paired import damage_metrics
from fpqvar.eval.plan import FLOAT_RECIPE, PLAN_VERSION, EvalPlan, methods_of, model_files, plan_files_fingerprint  # noqa: F401
from fpqvar.eval.report import float_weight_bytes, make_row, table_json, weight_bytes_from_file, write_tables
from fpqvar.io_utils import FolderLock, atomic_write_json
from fpqvar.quant.recipes import load_recipe

METRICS_VERSION = 3  # 3: intervals centred on the estimate (fpqvar.eval.bootstrap)
_FP_KEY = "fpqvar.eval.quantize_fingerprint"  # metadata of quantized files made by the pipeline (a JSON record)


def stale_message(what: Path, old: dict | None, new: dict, folder: Path) -> str:
    """Why a cached artefact is not reused: the fields that changed; the --threads to rerun with if only that."""
    if not isinstance(old, dict):
        return (f"{what}: made by another fpqvar version or by hand (no fingerprint record); use another --out or "
                f"delete {folder}")
    diff = fingerprint_diff(old, new)
    hint = f"rerun with --threads {old['threads']}, or " if old.get("threads") != new.get("threads") else ""
    return (f"{what}: made from something else ({'; '.join(diff)}); a result is never reused for other inputs: "
            f"{hint}use another --out or delete {folder}")


def _quantized_record(path: Path) -> dict | None:
    from fpqvar.quant.export import read_header

    meta = read_header(path).get("metadata")
    if meta is None:  # a header without the user metadata field: read the safetensors metadata directly
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    try:
        return json.loads(meta[_FP_KEY])
    except (KeyError, TypeError, json.JSONDecodeError):
        return None


def set_digest(images: np.ndarray, labels: np.ndarray | None) -> str:
    """sha256 of a packed set's content (the npz bytes carry zip timestamps; the arrays do not)."""
    import hashlib

    h = hashlib.sha256(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


class _Runner:
    def __init__(self, plan: EvalPlan, out: Path, ctx: DistContext, progress: bool):
        self.plan, self.out, self.ctx, self.progress = plan, out, ctx, progress
        self._calib = None
        self._fingerprint: str | None = None
        self.device_type = torch.device(ctx.device).type

    def fingerprint(self) -> str:
        """16 hex digits identifying the float model's weights (VAR + VQVAE files)."""
        if self._fingerprint is None:
            var_f, vae_f = model_files(self.plan)
            self._fingerprint = canonical_sha256({"var": file_fingerprint(var_f),
                                                  "vae": file_fingerprint(vae_f)})[:16]
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

    def quantize_record(self, recipe_name: str) -> dict:
        return run_fingerprint("quantize", float_model=self.fingerprint(), settings=self.plan.calib_settings(),
                               recipe_sha=recipe_sha256(recipe_name), threads=self.plan.resolved_threads(),
                               device=self.device_type)

    def quantize_to_file(self, recipe_name: str, mdir: Path) -> Path:
        """Rank 0: the method's quantized file, made now or reused when its fingerprint record matches."""
        from fpqvar.quant.export import save_quantized
        from fpqvar.quant.quantize import quantize_

        path = mdir / "quantized.safetensors"
        record = self.quantize_record(recipe_name)
        if path.is_file():
            old = _quantized_record(path)
            if old is None or old.get("sha") != record["sha"]:
                raise ValueError(stale_message(path, old, record, mdir))
            return path
        recipe = load_recipe(recipe_name)
        var = self.load_float()
        t = time.perf_counter()
        calib = self.calibration() if recipe.needs_calibration else None
        rep = quantize_(var, recipe, calib, progress=self.progress)
        atomic_write_json(mdir / "quant_report.json", {**rep.to_dict(), "wall_s": time.perf_counter() - t})
        return save_quantized(var, recipe, path, model_name=self.plan.model,
                              metadata={_FP_KEY: json.dumps(record, sort_keys=True)})

    def sample_method(self, method: str, src: str, is_file: bool, classes) -> dict | None:
        """Quantize (rank 0) and sample one method (all ranks); rank 0 returns what its metrics need."""
        ctx, mdir = self.ctx, self.out / method
        float_model = not is_file and src == FLOAT_RECIPE
        qpath = Path(src) if is_file else mdir / "quantized.safetensors"
        error = None
        if ctx.is_main:
            mdir.mkdir(parents=True, exist_ok=True)
            try:
                if not float_model and not is_file:
                    self.quantize_to_file(src, mdir)
                _check_sample_folder(mdir, *self.sample_identity(method, float_model, qpath, classes))
            except ValueError as e:
                error = str(e)
        error = ctx.broadcast(error)  # every rank stops, none waits at a barrier for rank 0
        if error is not None:
            raise ValueError(error)
        config, record = self.sample_identity(method, float_model, qpath, classes)

        def build():
            var = self.load_float()
            return var if float_model else self.load_quantized(qpath, var)

        new_images = sum(u.n for u in ss.missing_units(config, mdir))  # a resumed run times only these
        t = time.perf_counter()
        packed = run_sample_set(build, config, mdir, ctx, progress=self.progress, provenance=record)
        if not ctx.is_main:
            return None
        return {"method": method, "src": src, "is_file": is_file, "float": float_model, "qpath": qpath,
                "packed": packed, "config": config, "record": record, "sample_s": time.perf_counter() - t,
                "new_images": new_images}

    def sample_identity(self, method: str, float_model: bool, qpath: Path, classes):
        """(SampleSetConfig, fingerprint record) of a method's sample set."""
        p = self.plan
        record = run_fingerprint("sample", float_model=self.fingerprint(), settings=p.sample_settings(classes),
                                 quantized_sha=None if float_model else file_fingerprint(qpath),
                                 backend=None if float_model else p.backend, threads=p.resolved_threads(),
                                 device=self.device_type)
        config = ss.SampleSetConfig(classes=tuple(classes), per_class=p.per_class,
                                    chunk_size=min(p.batch, p.per_class), cfg=p.cfg, top_k=p.top_k, top_p=p.top_p,
                                    base_seed=p.seed, dtype=p.dtype, model_id=f"{p.model}|{method}|{record['sha']}",
                                    threads=p.resolved_threads(), device=self.device_type)
        return config, record

    def recipe_of(self, s: dict):
        if s["is_file"]:
            from fpqvar.quant.export import read_header

            return load_recipe(read_header(s["qpath"])["recipe"])
        return load_recipe(s["src"])

    def row(self, s: dict, setup, idx_BN, float_set: dict | None, files_fp: dict) -> dict:
        """Rank 0: the method's table row, from metrics.json when its key matches, else computed now."""
        mdir = self.out / s["method"]
        images, labels = ss.load_packed(s["packed"])
        tokens = np.concatenate([t for *_, t in ss.iter_units(s["config"], mdir)])
        key = {"version": METRICS_VERSION, "sample_set": s["record"]["sha"], "samples": set_digest(images, labels),
               "float_samples": None if float_set is None or s["float"] else float_set["digest"],
               "files": files_fp, "bootstrap": self.plan.boot().to_dict()}
        metrics_path = mdir / "metrics.json"
        cached = _read_json(metrics_path)
        if cached is not None and cached.get("key") == json.loads(json.dumps(key)):
            return cached["row"]
        t = time.perf_counter()
        feats, logits = setup.features(images)
        conf = self.plan.boot().confidence
        m = quality_metrics(setup, images, labels, idx_BN, confidence=conf, features=(feats, logits))
        if float_set is not None and not s["float"]:
            m.update(damage_metrics(images, float_set["images"], feats, float_set["feats"], tokens,
                                    float_set["tokens"], idx_BN, confidence=conf))
        recipe = self.recipe_of(s)
        cfg = self.var_config()
        wbytes = float_weight_bytes(cfg) if s["float"] else weight_bytes_from_file(s["qpath"], cfg)
        qrep = Path(s["qpath"]).parent / "quant_report.json"
        quant_s = json.loads(qrep.read_text()).get("wall_s") if qrep.is_file() and not s["float"] else None
        n_new, sample_s = s["new_images"], s["sample_s"]
        extra = {k: v for k, v in m.items() if k.endswith("_ci") or k.startswith(("floor_", "fid_to", "psnr_to",
                                                                                   "token_", "identical"))}
        extra.update(recipe=recipe.name, reference=m["reference"], is_std=m.get("is_std"),
                     is_float_reference=s["float"] and float_set is not None, sample_s=sample_s,
                     eval_s=time.perf_counter() - t, quantize_s=quant_s, sampled_images=n_new,
                     images_per_s=n_new / sample_s if n_new and sample_s > 0 else None)
        row = make_row(s["method"], recipe, m, wbytes, extra)
        atomic_write_json(metrics_path, {"plan": self.plan.to_dict(), "key": key, "row": row})
        return row


def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else None
    except (OSError, json.JSONDecodeError):
        return None


def _check_sample_folder(mdir: Path, config, record: dict) -> None:
    """Refuse a sample folder made with other settings or from other inputs, naming what changed."""
    why = ss.config_mismatch(mdir, config)
    if why is None:
        return
    manifest = _read_json(mdir / ss.MANIFEST) or {}
    old = manifest.get("provenance")
    old_threads = (manifest.get("config") or {}).get("threads")
    if isinstance(old, dict) and old_threads == config.threads and old.get("sha") != record["sha"]:
        why = stale_message(mdir / ss.MANIFEST, old, record, mdir)
    raise ValueError(why)


def _float_set(runner: _Runner, s: dict, setup) -> dict:
    images, labels = ss.load_packed(s["packed"])
    tokens = np.concatenate([t for *_, t in ss.iter_units(s["config"], runner.out / s["method"])])
    return {"images": images, "labels": labels, "tokens": tokens, "feats": setup.features(images)[0],
            "digest": set_digest(images, labels)}


def _lock(out: Path, ctx: DistContext) -> FolderLock | None:
    """Rank 0 takes the folder lock; every rank raises if it could not (so no rank waits at a barrier)."""
    lock, error = None, None
    if ctx.is_main:
        try:
            lock = FolderLock(out, f"fpqvar eval (pid {os.getpid()})").acquire()
        except RuntimeError as e:
            error = str(e)
    error = ctx.broadcast(error)
    if error is not None:
        raise RuntimeError(error)
    return lock


def run_plan(plan: EvalPlan, out_dir: str | os.PathLike, ctx: DistContext | None = None, *,
             progress: bool = True) -> dict | None:
    """Run every method of the plan; returns the table dict on rank 0 (None elsewhere)."""
    ctx = ctx or DistContext()
    out = Path(out_dir)
    threads_before = torch.get_num_threads()
    if plan.threads is not None and plan.threads != threads_before:
        torch.set_num_threads(plan.threads)
    lock = _lock(out, ctx)
    try:
        return _run(plan, out, ctx, progress)
    finally:
        if lock is not None:
            lock.release()
        torch.set_num_threads(threads_before)


def _run(plan: EvalPlan, out: Path, ctx: DistContext, progress: bool) -> dict | None:
    runner = _Runner(plan, out, ctx, progress)
    num_classes = runner.var_config().num_classes
    classes = plan.classes if plan.classes is not None else tuple(range(num_classes))
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"classes {bad[:5]} out of range for model {plan.model!r} ({num_classes} classes)")
    methods = methods_of(plan)
    sampled = [runner.sample_method(m, src, is_file, classes) for m, src, is_file in methods]
    if not ctx.is_main:
        return None
    setup = load_metric_setup(model=plan.model, classifier=plan.classifier, reference=plan.reference,
                              inception_weights=plan.inception_weights, device=ctx.device)
    labels = ss.load_packed(sampled[0]["packed"])[1]
    idx_BN = resample_indices(labels, plan.bootstrap, plan.boot().seed) if plan.bootstrap else None
    float_set = next((_float_set(runner, s, setup) for s in sampled if s["float"]), None) if plan.paired else None
    files_fp = plan_files_fingerprint(plan)
    rows = [runner.row(s, setup, idx_BN, float_set, files_fp) for s in sampled]
    reference_label = rows[0]["reference"] if rows else ""
    settings = {**plan.settings(), "classes": len(classes), "num_samples": len(classes) * plan.per_class}
    write_tables(out, rows, model=plan.model, reference_label=reference_label, settings=settings)
    table = table_json(rows, model=plan.model, reference_label=reference_label, settings=settings)
    if plan.figures:
        from fpqvar.eval.figures import make_figures_and_report

        table["figures"] = make_figures_and_report(runner, methods, classes, table, out)
    return table
