"""What one ``fpqvar eval`` run does (``EvalPlan``), and the checks of every input it names, run before any work.

``check_plan_inputs`` is called before the first calibration batch or sample (issue 16.11): every recipe of the
list loads and fits the model (a bad recipe late in the list used to fail after hours of sampling), every
``--quantized`` file has a readable header, and the metric assets (classifier, reference, Inception weights) load.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from fpqvar.eval import reference as R
from fpqvar.eval.bootstrap import BootstrapConfig
from fpqvar.model.zoo import get_model_spec
from fpqvar.quant.recipes import load_recipe

PLAN_VERSION = 2  # 2: threads, bootstrap and paired (damage metrics against the float model's samples)
FLOAT_RECIPE = "fp16"  # the float model under its paper name (float32 on CPU unless --dtype says otherwise)
BACKENDS = ("reference", "exact", "compile", "triton")


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
    threads: int | None = None  # torch CPU threads while sampling; None: torch's current setting
    paired: bool = True  # damage metrics vs the float model's own samples (adds fp16 to the methods if absent)
    bootstrap: int = 200  # bootstrap resamples for the intervals (0: none); fpqvar.eval.bootstrap
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
        if self.backend not in BACKENDS:
            raise ValueError(f"EvalPlan.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"EvalPlan.threads must be None or an int >= 1, got {self.threads!r}")
        BootstrapConfig(resamples=self.bootstrap)  # validates
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
                "backend": self.backend, "threads": self.resolved_threads(), "bootstrap": self.bootstrap}

    def sample_settings(self, classes) -> dict:
        """What the images depend on besides the weights, threads, device and kernels (fingerprint record)."""
        return {"classes": list(classes), "per_class": self.per_class, "batch": self.batch, "cfg": self.cfg,
                "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed, "dtype": self.dtype}

    def calib_settings(self) -> dict:
        return {"calib_samples": self.calib_samples, "seed": self.seed, "cfg": self.cfg, "top_k": self.top_k,
                "top_p": self.top_p}

    def resolved_threads(self) -> int:
        return torch.get_num_threads() if self.threads is None else self.threads

    def boot(self) -> BootstrapConfig:
        return BootstrapConfig(resamples=self.bootstrap)


def method_name(recipe: str) -> str:
    return Path(recipe).stem if recipe.endswith(".json") else recipe


def methods_of(plan: EvalPlan) -> list[tuple[str, str, bool]]:
    """(method, recipe name / JSON / quantized file, is_file) in table order; the float model first when the
    damage metrics need its samples. Method names must be unique (they name the sub-folders)."""
    recipes = list(plan.recipes)
    if plan.paired and FLOAT_RECIPE not in recipes:
        recipes.insert(0, FLOAT_RECIPE)
    elif FLOAT_RECIPE in recipes:
        recipes.insert(0, recipes.pop(recipes.index(FLOAT_RECIPE)))
    methods = [(method_name(r), r, False) for r in recipes] + [(Path(q).stem, q, True) for q in plan.quantized]
    names = [m for m, _, _ in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"EvalPlan: method names collide: {names} (each names a sub-folder of --out)")
    return methods


def model_files(plan: EvalPlan) -> tuple[Path, Path]:
    """(VAR, VQVAE) checkpoint files that load_model reads for this plan."""
    if plan.model == "default":
        from fpqvar.model.default import default_paths

        p = default_paths()
        return Path(plan.ckpt or p.var), Path(plan.vae or p.vae)
    from fpqvar.model.checkpoints import official_checkpoint

    spec = get_model_spec(plan.model)
    return (Path(plan.ckpt) if plan.ckpt else official_checkpoint(spec.var_ckpt),
            Path(plan.vae) if plan.vae else official_checkpoint(spec.vae_ckpt))


def check_recipe_fits(recipe, var_config, source: str) -> None:
    """Every group size of the recipe divides the input width of the block linear it applies to (ValueError
    naming the recipe, the layer and both numbers). Widths from the config (no model is built: building var-d30,
    even on the meta device, takes a minute)."""
    from fpqvar.eval.report import site_shapes

    for site, (_, width) in site_shapes(var_config).items():
        for i in range(var_config.depth):
            name = f"blocks.{i}.{site}"
            for kind, qs in zip(("weight", "activation"), recipe.specs_for(name)):
                g = getattr(qs, "group_size", None)
                if qs is not None and getattr(qs, "granularity", None) == "group" and g and width % g:
                    raise ValueError(f"{source}: recipe {recipe.name!r}: {kind} group size {g} does not divide the "
                                     f"input width {width} of {name}")


def check_plan_inputs(plan: EvalPlan) -> None:
    """Fail before hours of work: recipes, quantized files, metric assets (errors name the file or recipe)."""
    from fpqvar.quant.export import read_header

    var_config = get_model_spec(plan.model).var
    for r in plan.recipes:
        if r == FLOAT_RECIPE:
            continue
        if r.endswith(".json") and not Path(r).is_file():
            raise FileNotFoundError(f"--recipes: recipe file {r} not found")
        check_recipe_fits(load_recipe(r), var_config, f"--recipes {r}")
    for q in plan.quantized:
        header = read_header(q)
        recipe = header.get("recipe")
        if isinstance(recipe, str):  # read_header decodes JSON fields; a string left here is not a recipe
            raise ValueError(f"{q}: metadata 'recipe' is not a recipe object")
    check_metric_inputs(plan)


def check_metric_inputs(plan: EvalPlan) -> None:
    if plan.model == "default":
        R.load_digit_net(plan.classifier)
        R.load_domain_reference(plan.reference)
        return
    from fpqvar.eval.inception import InceptionUnavailable, check_available

    if plan.reference is None:
        raise ValueError(f"model {plan.model!r}: ImageNet metrics need the ADM reference batch: pass --reference "
                         f"VIRTUAL_imagenet256_labeled.npz")
    try:
        check_available(plan.inception_weights)
    except InceptionUnavailable as e:
        raise RuntimeError(str(e)) from None
    R.load_adm_reference(plan.reference)


def input_paths(plan: EvalPlan) -> dict[str, list[str] | str | None]:
    """Every file the plan reads, by flag (for the output-path checks)."""
    return {"--ckpt": plan.ckpt, "--vae": plan.vae, "--quantized": list(plan.quantized),
            "--classifier": plan.classifier, "--reference": plan.reference,
            "--inception-weights": plan.inception_weights,
            "--recipes": [r for r in plan.recipes if r.endswith(".json")]}


def plan_files_fingerprint(plan: EvalPlan) -> dict:
    """Digests of the metric asset files (classifier, reference, Inception weights) for the metrics cache key."""
    from fpqvar.eval.fingerprint import file_fingerprint

    files = {"classifier": plan.classifier or (R.default_classifier_path() if plan.model == "default" else None),
             "reference": plan.reference or (R.default_reference_path() if plan.model == "default" else None),
             "inception_weights": plan.inception_weights}
    return {k: None if p is None or not os.path.isfile(p) else file_fingerprint(p) for k, p in files.items()}
