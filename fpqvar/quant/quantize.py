"""``quantize_(model, recipe, calibration)``: the one entry point (torchao style; design.md "configs as data").

Per block, per quantizable site (fpqvar-method.md section 13), in this order:

1. input scaling of the AdaLN-modulated sites (``attn.mat_qkv``, ``ffn.fc1``): SmoothQuant scales from the
   calibration absmax, or GALT's lambda learned on the calibration rows (pre-rotation inputs; the GALT loss
   applies lambda then Q itself). lambda is fused into ada_lin's scale / shift rows (zero run-time cost,
   ``transforms.fuse``); the weight gets ``W / lambda``;
2. rotation (GHT block 128, or the full randomized Hadamard) of the same sites: the weight absorbs it offline in
   float64 (``W <- (W / lambda) Q``, one cast), the activation is rotated online inside the QuantLinear;
3. format search (``fp4-mixed``) on the transformed weight and calibration rows;
4. the ``nn.Linear`` is swapped for a :class:`QuantLinear` (weights quantized now, activations in the forward);
5. the report rows for this layer (SQNR before / after each transform) when calibration rows are available.

Then KV-cache quantizers are installed (section 9). Steps 1 and 2 are ordered so that lambda divides the
unrotated weight, as the GALT objective defines it; the rotation itself needs no calibration.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from fpqvar.quant.calibrate import CalibConfig, CalibrationData, calibrate
from fpqvar.quant.format_search import search_act_format, search_weight_format
from fpqvar.quant.kv import install_kv_quantizers
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.recipes import QUANT_SITES, ROTATED_SITES, Recipe, load_recipe
from fpqvar.quant.report import QuantReport, layer_sqnr_rows
from fpqvar.quant.spec import QuantSpec

__all__ = ["quantize_", "is_quantized", "rotation_matrix", "set_backend"]

_ADALN_SITE = {"attn.mat_qkv": "attn", "ffn.fc1": "ffn"}


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantLinear) for m in model.modules()) or any(
        getattr(getattr(b, "attn", None), "kv_quantizer", None) is not None for b in getattr(model, "blocks", []))


def set_backend(model: nn.Module, backend: str) -> int:
    """Set ``backend`` on every QuantLinear ("reference" or a fast path of ``fpqvar.quant.fast``)."""
    n = 0
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.backend = backend
            n += 1
    return n


def rotation_matrix(recipe: Recipe, C: int) -> torch.Tensor | None:
    """The site rotation's ``(b, b)`` float64 matrix: one GHT block, or the full C x C randomized Hadamard."""
    from fpqvar.transforms.hadamard import block_hadamard_matrix, random_hadamard

    if recipe.ght:
        if C % recipe.ght_block:
            raise ValueError(f"recipe {recipe.name!r}: GHT block {recipe.ght_block} does not divide C={C}")
        return block_hadamard_matrix(recipe.ght_block, recipe.hadamard_seed)
    if recipe.full_hadamard:
        return random_hadamard(C, recipe.hadamard_seed)
    return None


def _static_act_scale(x_rows: torch.Tensor | None, absmax_C: torch.Tensor | None, spec: QuantSpec) -> torch.Tensor:
    """Calibrated static scale (symmetric): absmax over calibration / fmt max, per tensor or per channel group."""
    a = absmax_C if absmax_C is not None else x_rows.abs().amax(dim=0)
    if spec.granularity == "tensor":
        a = a.amax().reshape(1)
    else:
        a = a.reshape(-1, spec.group_size).amax(dim=1)
    s = a.float() / spec.format.max_value
    return torch.where(s > 0, s, torch.ones_like(s))


def _lam_summary(lam: torch.Tensor) -> str:
    return f"min {float(lam.min()):.3g} mean {float(lam.mean()):.3g} max {float(lam.max()):.3g}"


def _history_summary(hist) -> dict:
    if isinstance(hist, dict):
        losses = hist.get("loss") or hist.get("losses") or []
    else:
        losses = list(hist or [])
    losses = [float(v) for v in losses]
    return {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "num_steps": len(losses)}


def quantize_(model: nn.Module, recipe, calibration: CalibrationData | CalibConfig | None = None, *,
              progress: bool = True, report: bool = True) -> QuantReport:
    """Quantize ``model`` (a float VAR) in place with ``recipe`` (a name, Recipe, dict or JSON path).

    ``calibration``: data from :func:`fpqvar.quant.calibrate.calibrate`, or a :class:`CalibConfig` to run it
    now. Needed by recipes with GALT, SmoothQuant, format search or static activation scales (ValueError
    otherwise). ``report``: compute the per-layer, per-scale SQNR rows (needs calibration rows).
    """
    t0 = time.perf_counter()
    recipe = load_recipe(recipe)
    if is_quantized(model):
        raise ValueError("quantize_: the model is already quantized (it holds QuantLinear modules or KV "
                         "quantizers); start from a float model")
    timings: dict[str, float] = {}
    if isinstance(calibration, CalibConfig):
        tc = time.perf_counter()
        calibration = calibrate(model, calibration, progress=progress)
        timings["calibration_s"] = time.perf_counter() - tc
    if recipe.needs_calibration and calibration is None:
        need = [k for k, v in (("galt", recipe.galt is not None), ("smoothquant",
                recipe.smoothquant_alpha is not None), ("format_search", recipe.format_search)) if v] or ["static"]
        raise ValueError(f"quantize_: recipe {recipe.name!r} needs calibration data ({', '.join(need)}); pass "
                         "calibration=fpqvar.quant.calibrate.calibrate(model) or a CalibConfig")
    if calibration is not None and tuple(calibration.patch_nums) != tuple(model.patch_nums):
        raise ValueError(f"quantize_: calibration patch_nums {calibration.patch_nums} do not match the model's "
                         f"{tuple(model.patch_nums)}")
    rep = QuantReport(recipe.to_dict(), calibration=None if calibration is None else calibration.config.to_dict())
    C = int(model.C)
    Q = rotation_matrix(recipe, C)
    galt_s = 0.0
    blocks = list(enumerate(model.blocks))
    it = blocks
    if progress and recipe.quantizes_anything:
        from tqdm import tqdm

        it = tqdm(blocks, desc=f"quantize {recipe.name}", unit="block")
    for i, block in it:
        for site in QUANT_SITES:
            name = f"blocks.{i}.{site}"
            rule = recipe.rule_for(name)
            wspec, aspec = (None, None) if rule is None else (rule.weight, rule.act)
            transformed = site in ROTATED_SITES and (recipe.rotation is not None or recipe.galt is not None
                                                     or recipe.smoothquant_alpha is not None)
            # no rule: untouched. A rule with both specs None still gets the site transforms (a float layer,
            # function-preserving) so that transforms can be checked with quantization off.
            if rule is None or (wspec is None and aspec is None and not transformed):
                continue
            t = time.perf_counter()
            _quantize_site(model, block, i, site, name, wspec, aspec, recipe, Q, calibration, rep, report)
            galt_s += rep.galt.get(name, {}).pop("_time_s", 0.0)
            timings.setdefault("sites_s", 0.0)
            timings["sites_s"] += time.perf_counter() - t
    if recipe.kv is not None:
        install_kv_quantizers(model, recipe.kv)
        rep.kv = {"spec": recipe.kv.to_dict(), "blocks": len(model.blocks)}
    timings["galt_s"] = galt_s
    timings["quantize_total_s"] = time.perf_counter() - t0
    rep.timings_s = timings
    return rep


def _quantize_site(model, block, i, site, name, wspec, aspec, recipe: Recipe, Q, calib, rep: QuantReport,
                   want_report: bool) -> None:
    linear = block.get_submodule(site)
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"quantize_: {name} is a {type(linear).__name__}, expected nn.Linear")
    w0 = linear.weight.detach().clone()
    rotated = site in ROTATED_SITES and Q is not None
    has_rows = calib is not None and calib.has_rows(name)
    smooth_lam = galt_lam = None
    info: dict = {"rotation": None, "lambda": None}
    if site in ROTATED_SITES and recipe.smoothquant_alpha is not None:
        from fpqvar.transforms.smoothing import smoothquant_scales

        s = smoothquant_scales(calib.absmax(name).to(w0.device), w0, recipe.smoothquant_alpha)
        smooth_lam = (1.0 / s.double()).float()  # SmoothQuant divides x by s: lambda = 1 / s (section 12)
        info["lambda"] = "smooth " + _lam_summary(smooth_lam)
    if site in ROTATED_SITES and recipe.galt is not None:
        from fpqvar.transforms.galt import learn_galt_lambda

        t = time.perf_counter()
        x_list = [x.to(w0.device) for x in calib.x_per_scale(name)]
        b = recipe.galt.block
        Qg = torch.eye(b, dtype=torch.float64) if Q is None else Q  # GALT without rotation: Q = identity
        if Qg.shape[0] != b:
            raise ValueError(f"recipe {recipe.name!r}: galt.block={b} but the site rotation is "
                             f"{Qg.shape[0]}x{Qg.shape[0]}; set galt.block to the rotation size")
        galt_lam, hist = learn_galt_lambda(x_list, w0.float(), Q_block=Qg.float(), config=recipe.galt)
        galt_lam = galt_lam.detach().float()
        rep.galt[name] = {**_history_summary(hist), "lambda_min": float(galt_lam.min()),
                          "lambda_mean": float(galt_lam.mean()), "lambda_max": float(galt_lam.max()),
                          "_time_s": time.perf_counter() - t}
        info["lambda"] = "galt " + _lam_summary(galt_lam)
    lam = galt_lam if galt_lam is not None else smooth_lam
    input_scale = None
    with torch.no_grad():
        if lam is not None:
            from fpqvar.transforms.fuse import OnlineScale, adaln_fusable, fuse_input_scale_into_adaln

            if adaln_fusable(block):
                fuse_input_scale_into_adaln(block, _ADALN_SITE[site], lam)
            else:  # shared AdaLN (var-d36): one ada_lin for all blocks, multiply online instead
                input_scale = OnlineScale(lam).to(w0.device)
                info["online_scale"] = True
        if rotated:
            from fpqvar.transforms.hadamard import rotate_weight_in

            linear.weight.copy_(rotate_weight_in(w0, Q, lam_I=lam))
            info["rotation"] = f"ght{Q.shape[0]}" if recipe.ght else f"full{Q.shape[0]}"
        elif lam is not None:
            linear.weight.copy_((w0.double() / lam.double().to(w0.device)).to(w0.dtype))

    def transform_x(x):
        x = x if lam is None else x * lam.to(x.device)
        if rotated:
            b = Q.shape[0]
            x = (x.reshape(*x.shape[:-1], -1, b) @ Q.to(x.device, x.dtype)).reshape(x.shape)
        return x

    # format search (fp4-mixed) on the transformed weight and calibration rows
    if recipe.format_search:
        fs = {}
        if wspec is not None:
            wspec, fs["weight_mse"] = search_weight_format(linear.weight, wspec, recipe.format_candidates)
        if aspec is not None and has_rows:
            x_all = torch.cat([transform_x(x.to(w0.device)) for x in calib.x_per_scale(name)])
            aspec, fs["act_mse"] = search_act_format(x_all, aspec, recipe.format_candidates)
        fs["weight"] = None if wspec is None else wspec.fmt
        fs["act"] = None if aspec is None else aspec.fmt
        rep.formats[name] = fs
    act_scale = None
    if aspec is not None and aspec.static:
        if lam is None and not rotated:
            act_scale = _static_act_scale(None, calib.absmax(name).to(w0.device), aspec)
        else:  # transformed inputs: absmax over the reservoir rows (the all-token absmax is pre-transform)
            x_all = torch.cat([transform_x(x.to(w0.device)) for x in calib.x_per_scale(name)])
            act_scale = _static_act_scale(x_all, None, aspec)
    rotation = None
    if rotated:
        from fpqvar.transforms.hadamard import OnlineRotation

        rotation = OnlineRotation(Q, width=linear.in_features).to(w0.device)
    q = QuantLinear.from_linear(linear, wspec, aspec, rotation=rotation, act_scale=act_scale,
                                input_scale=input_scale)
    if lam is not None:
        q.set_input_lambda(lam.to(w0.device))
    parent_name, child = site.rsplit(".", 1)
    setattr(block.get_submodule(parent_name), child, q)
    info.update({"weight": None if wspec is None else wspec.short(), "act": None if aspec is None else aspec.short()})
    rep.layers[name] = info
    if want_report and has_rows:
        rows_x = [x.to(w0.device) for x in calib.x_per_scale(name)]
        rot_fn = None
        if rotated:
            b = Q.shape[0]
            Qf = Q.to(w0.device, torch.float32)

            def rot_fn(t):
                return (t.reshape(*t.shape[:-1], -1, b) @ Qf).reshape(t.shape)
        rep.sqnr.extend(layer_sqnr_rows(name, rows_x, w0, linear.bias, wspec, aspec, smooth_lam=smooth_lam,
                                        galt_lam=galt_lam, rotate=rot_fn, module=q, act_scale=act_scale))
