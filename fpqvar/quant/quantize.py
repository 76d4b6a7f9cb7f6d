"""``quantize_(model, recipe, calibration)``: the one entry point (torchao style; design.md "configs as data").

Phases (issue 13):

1. **resolve**: each site of the model's site table (``fpqvar.model.sites``) gets the specs of the first rule
   that selects it; a rule that selects no site (or only sites earlier rules already took) is an error naming
   it, as is a weight spec on an attention operand. Each transform step selects its linear sites.
2. **plan**: the steps run in recipe order on per-site :class:`~fpqvar.quant.steps.SiteState` objects, seeing
   the calibration rows as transformed by the earlier steps (``state.rows()``). The result per site: one input
   transform ``x -> (x lam) Q`` and the final specs.
3. **apply**: ``fpqvar.transforms.sites.transform_site_`` (the public API) folds lam into the modulation that
   produces the input (or multiplies it online) and absorbs ``(W / lam) Q`` in float64.
4. **swap**: each linear site with a rule or a transform becomes a :class:`QuantLinear` (weights quantized now;
   an online scale / rotation from step 3, or from a ``transform_site_`` the caller applied before, moves into
   it, so activation quantization sees the transformed input); attention-operand and KV quantizers are
   installed.
5. **report**: per-layer, per-scale SQNR after every stage (``fpqvar.quant.report``) when calibration rows exist.
"""

from __future__ import annotations

import fnmatch
import time

import torch
import torch.nn as nn

from fpqvar.model.sites import model_sites
from fpqvar.quant.calibrate import CalibConfig, CalibrationData, calibrate
from fpqvar.quant.operands import install_operand_quantizers
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.recipes import Recipe, load_recipe
from fpqvar.quant.report import QuantReport, layer_sqnr_rows
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import PlanContext, SiteState, handler_for
from fpqvar.transforms.sites import TransformedInput, set_module, transform_site_

__all__ = ["quantize_", "is_quantized", "set_backend", "resolve_rules", "static_act_scale"]


def is_quantized(model: nn.Module) -> bool:
    if any(isinstance(m, QuantLinear) for m in model.modules()):
        return True
    for b in getattr(model, "blocks", []):
        attn = getattr(b, "attn", None)
        if getattr(attn, "kv_quantizer", None) is not None or getattr(attn, "operand_hooks", None):
            return True
    return False


def set_backend(model: nn.Module, backend: str) -> int:
    """Set ``backend`` on every QuantLinear ("reference" or a fast path of ``fpqvar.quant.fast``)."""
    n = 0
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.backend = backend
            n += 1
    return n


def resolve_rules(recipe: Recipe, sites) -> dict[str, tuple[QuantSpec | None, QuantSpec | None]]:
    """Site name -> (weight spec, act spec) of its first matching rule (sites without a rule are absent)."""
    out: dict[str, tuple] = {}
    won = [0] * len(recipe.rules)
    for s in sites:
        for i, r in enumerate(recipe.rules):
            if r.matches(s):
                won[i] += 1
                if s.kind != "linear" and r.weight is not None:
                    raise ValueError(f"recipe {recipe.name!r}: rule {i} ({r.pattern!r}) gives a weight spec to "
                                     f"{s.name!r}, a {s.kind} site without weights; restrict it with 'roles' or "
                                     "a narrower pattern")
                if r.act is not None and r.act.granularity == "channel" and s.role != "v":
                    raise ValueError(f"recipe {recipe.name!r}: rule {i} ({r.pattern!r}) gives {s.name!r} an "
                                     "activation spec with granularity 'channel', which only the attention V "
                                     "operand takes (one scale per channel across tokens)")
                if r.indivisible(s):
                    if r.skip_indivisible:
                        break  # the rule takes the site and leaves it float
                    g = [sp.group_size for sp in (r.weight, r.act) if sp is not None and sp.granularity == "group"]
                    raise ValueError(f"recipe {recipe.name!r}: rule {i} ({r.pattern!r}) groups {s.name!r} in "
                                     f"blocks of {g}, which do not divide its in_features {s.in_features}; "
                                     "narrow the rule or set skip_indivisible=True")
                out[s.name] = (r.weight, r.act)
                break
    for i, r in enumerate(recipe.rules):
        if won[i]:
            continue
        if any(r.matches(s) for s in sites):
            raise ValueError(f"recipe {recipe.name!r}: rule {i} ({r.pattern!r}) is shadowed: earlier rules take "
                             "every site it selects")
        raise ValueError(f"recipe {recipe.name!r}: rule {i} ({r.pattern!r}"
                         f"{'' if r.roles is None else ', roles ' + str(list(r.roles))}) selects no site of this "
                         f"model; site names look like 'blocks.0.attn.mat_qkv', 'blocks.0.ada_lin', 'head', "
                         f"'blocks.0.attn.k', 'blocks.0.attn.kv'")
    return out


def static_act_scale(st: SiteState, spec: QuantSpec) -> torch.Tensor:
    """Calibrated static scale (symmetric): absmax / fmt max, per tensor or per channel group, of the input as
    the quantizer sees it (transformed: over the reservoir rows; untransformed: over all calibration tokens)."""
    if st.transformed:
        a = torch.cat(st.rows()).abs().amax(dim=0)
    else:
        a = st.absmax_C().float()
    a = a.amax().reshape(1) if spec.granularity == "tensor" else a.reshape(-1, spec.group_size).amax(dim=1)
    s = a.float() / spec.format.max_value
    return torch.where(s > 0, s, torch.ones_like(s))


def _check_calibration(recipe: Recipe, model, calibration) -> None:
    if recipe.needs_calibration and calibration is None:
        need = [t.KIND for t in recipe.transforms if t.NEEDS_CALIBRATION] or ["static activation scales"]
        raise ValueError(f"quantize_: recipe {recipe.name!r} needs calibration data ({', '.join(need)}); pass "
                         "calibration=fpqvar.quant.calibrate.calibrate(model) or a CalibConfig")
    if calibration is not None and tuple(calibration.patch_nums) != tuple(model.patch_nums):
        raise ValueError(f"quantize_: calibration patch_nums {calibration.patch_nums} do not match the model's "
                         f"{tuple(model.patch_nums)}")


def quantize_(model: nn.Module, recipe, calibration: CalibrationData | CalibConfig | None = None, *,
              progress: bool = True, report: bool = True) -> QuantReport:
    """Quantize ``model`` (a float VAR, possibly transformed with ``transform_site_``) in place with ``recipe``
    (a name, Recipe, dict or JSON path).

    ``calibration``: data from :func:`fpqvar.quant.calibrate.calibrate`, or a :class:`CalibConfig` to run it
    now; needed by recipes with calibrated steps or static activation scales (ValueError otherwise). ``report``:
    compute the per-layer, per-scale SQNR rows (needs calibration rows).
    """
    t0 = time.perf_counter()
    recipe = load_recipe(recipe)
    if is_quantized(model):
        raise ValueError("quantize_: the model is already quantized (it holds QuantLinear modules or attention / "
                         "KV quantizers); start from a float model")
    timings: dict[str, float] = {}
    if isinstance(calibration, CalibConfig):
        tc = time.perf_counter()
        calibration = calibrate(model, calibration, progress=progress)
        timings["calibration_s"] = time.perf_counter() - tc
    _check_calibration(recipe, model, calibration)
    rep = QuantReport(recipe.to_dict(), calibration=None if calibration is None else calibration.config.to_dict())
    sites = model_sites(model)
    specs = resolve_rules(recipe, sites)
    linear = [s for s in sites if s.kind == "linear"]
    selections = []
    for k, cfg in enumerate(recipe.transforms):
        sel = [s for s in linear if any(fnmatch.fnmatchcase(s.name, p) for p in cfg.sites)]
        if not sel:
            raise ValueError(f"recipe {recipe.name!r}: transform {k} ({cfg.KIND}) sites {list(cfg.sites)} select no "
                             "linear site of this model")
        selections.append((cfg, sel))
    touched = {s.name for _, sel in selections for s in sel}
    states: dict[str, SiteState] = {}
    initial: dict[str, tuple] = {}  # the rule's specs before any step (the report's rtn stage)
    for s in linear:
        if s.name not in touched and specs.get(s.name, (None, None)) == (None, None):
            continue
        mod = model.get_submodule(s.module)
        inner = mod.linear if isinstance(mod, TransformedInput) else mod
        if s.name in touched and isinstance(mod, TransformedInput):
            raise ValueError(f"quantize_: {s.name} was already transformed with transform_site_; the recipe's "
                             "transforms would transform it twice (drop them or start from the float model)")
        w, a = specs.get(s.name, (None, None))
        initial[s.name] = (w, a)
        states[s.name] = SiteState(s, inner.weight.detach().float().clone(),
                                   None if inner.bias is None else inner.bias.detach().float().clone(), w, a,
                                   s.name in specs, calibration)
    ctx = PlanContext(model, calibration, progress, timings, rep)
    # 2. plan
    for cfg, sel in selections:
        t = time.perf_counter()
        handler_for(cfg)(cfg, [states[s.name] for s in sel], ctx)
        timings[f"{cfg.KIND}_s"] = timings.get(f"{cfg.KIND}_s", 0.0) + time.perf_counter() - t
    # 3. apply, 4. swap
    t = time.perf_counter()
    items = list(states.values())
    it = items
    if progress and recipe.quantizes_anything and len(items) > 8:
        from tqdm import tqdm

        it = tqdm(items, desc=f"quantize {recipe.name}", unit="layer")
    # apply every transform before any swap: a site's lam may fold into the ada_lin that produces its input,
    # and that ada_lin (a site itself in some recipes) must be quantized with the folded weight
    pretransformed = {st.name: isinstance(model.get_submodule(st.site.module), TransformedInput) for st in items}
    for st in items:
        if st.transformed:
            transform_site_(model, st.name, lam_C=st.lam_C, Q=st.Q_bb)
    for st in it:
        if not st.transformed:  # the float reference of a modulation producer is its folded weight
            inner = model.get_submodule(st.site.module)
            inner = inner.linear if isinstance(inner, TransformedInput) else inner
            folded = inner.weight.detach().float()
            if (st.weight_q is not None or st.lowrank is not None) and not torch.equal(folded, st.w0_OI):
                raise ValueError(f"quantize_: {st.name} was rounded / split (GPTQ / SVDQuant) before another site's "
                                 "input scale was folded into it; leave this modulation linear out of those steps")
            st.w0_OI = folded.clone()
            st.bias_O = None if inner.bias is None else inner.bias.detach().float().clone()
        _install(model, st, initial[st.name], rep, report, pretransformed[st.name])
    operand = {name: a for name, (_, a) in specs.items() if a is not None and not name.endswith(".kv")
               and _is_operand(name, sites)}
    kv = {name: a for name, (_, a) in specs.items() if a is not None and name.endswith(".kv")}
    install_operand_quantizers(model, {**operand, **kv})
    if kv:
        first = next(iter(kv.values()))
        rep.kv = {"spec": first.to_dict(), "blocks": len(kv)}
    if operand:
        rep.operands = {n: a.short() for n, a in operand.items()}
    timings["sites_s"] = time.perf_counter() - t
    timings.setdefault("galt_s", 0.0)
    timings["quantize_total_s"] = time.perf_counter() - t0
    rep.timings_s = timings
    return rep


def _is_operand(name: str, sites) -> bool:
    return any(s.name == name and s.kind == "operand" for s in sites)


def _install(model: nn.Module, st: SiteState, initial: tuple, rep: QuantReport, want_report: bool,
             pretransformed: bool) -> None:
    s = st.site
    mod = model.get_submodule(s.module)
    inner, scale, rot = (mod.linear, mod.scale, mod.rotation) if isinstance(mod, TransformedInput) else \
        (mod, None, None)
    if not isinstance(inner, nn.Linear):
        raise ValueError(f"quantize_: {s.name} holds a {type(inner).__name__}, expected nn.Linear")
    act_scale = act_zp = None
    if st.aspec is not None and st.aspec.static:
        if st.aspec.asymmetric or st.aspec.static_sets is not None:
            from fpqvar.quant.static_act import calibrate_static

            act_scale, act_zp = calibrate_static(st.rows(), st.aspec, st.name)
            act_zp = None if act_zp is None else act_zp.to(inner.weight.device)
        else:
            act_scale = static_act_scale(st, st.aspec)
        act_scale = act_scale.to(inner.weight.device)
    weight_q = None
    if st.weight_q is not None:
        weight_q = st.weight_q.for_spec(st.wspec, st.name)
    q = QuantLinear.from_linear(inner, st.wspec, st.aspec, rotation=rot, act_scale=act_scale, input_scale=scale,
                                act_zero_point=act_zp, weight_q=weight_q, lowrank=st.lowrank,
                                weight_OI=None if st.lowrank is None else st.weight_to_quantize(),
                                patch_nums=tuple(model.patch_nums))
    if st.lam_C is not None:
        q.set_input_lambda(st.lam_C.float().to(inner.weight.device))
    set_module(model, s.module, q)
    info = {"rotation": st.rotation or (f"user{rot.block}" if rot is not None else None),
            "lambda": st.info.get("lambda"), "weight": None if st.wspec is None else st.wspec.short(),
            "act": None if st.aspec is None else st.aspec.short()}
    if scale is not None:
        info["online_scale"] = True
    if "formats" in st.info:
        info["formats"] = st.info["formats"]
    rep.layers[s.name] = info
    if want_report and st.has_rows():
        stages = [(name, snap.lam_C, snap.Q_bb, snap.wspec, snap.aspec, snap.fn) for name, snap in st.stages]
        dev = inner.weight.device
        rows_x = [x.to(dev) for x in st.raw_rows()]
        rep.sqnr.extend(layer_sqnr_rows(s.name, rows_x, st.w0_OI.to(dev), st.bias_O, *initial,
                                        stages=stages, module=None if pretransformed else q,
                                        module_lam=st.lam_C, act_scale=act_scale, act_zero_point=act_zp))
