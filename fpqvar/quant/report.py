"""PTQ report: per quantized layer and per scale, the SQNR of the layer output on calibration data, before and
after each transform of the recipe, plus what was chosen per layer (formats, lambdas, rotation).

SQNR (dB) = 10 log10( sum y^2 / sum (y - y_hat)^2 ), y = x W^T + b the float layer on the calibration rows of one
scale (the pre-transform inputs captured by ``calibrate``), y_hat a quantized variant. Stages are cumulative:

- ``rtn``: the recipe's formats on the untransformed layer (DFQ replaced by the plain format of its positive side);
- ``dfq``: + dual-format quantization of the input (fc2, section 6);
- then one stage per recipe step that touched the layer, named by the step (``smooth``: SmoothQuant's x / s,
  W s; ``rotation``: GHT or the full Hadamard (x Q), (W Q); ``galt``: (x lambda) Q, (W / lambda) Q; ``format``:
  the searched formats), each the cumulative plan after that step;
- ``final``: the installed ``QuantLinear`` itself, fed ``x * lambda`` (lambda lives in ada_lin after fusion). It
  equals the last transform stage up to float rounding: a check that the module does what the report measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from fpqvar.quant.qlinear import quantize_activation, quantize_weight, weight_from_codes
from fpqvar.quant.spec import QuantSpec

__all__ = ["QuantReport", "sqnr_db", "layer_sqnr_rows", "fake_quant_linear"]

REPORT_VERSION = 1


def sqnr_db(y_ref: torch.Tensor, y: torch.Tensor) -> float:
    return _db(float(y_ref.double().pow(2).sum()), float((y_ref.double() - y.double()).pow(2).sum()))


def _db(sig: float, err: float) -> float:
    if err == 0:
        return math.inf
    if sig == 0:
        return -math.inf
    return 10.0 * math.log10(sig / err)


def fake_quant_weight(w_OI: torch.Tensor, spec: QuantSpec | None) -> torch.Tensor:
    if spec is None:
        return w_OI
    codes, scale, zp = quantize_weight(w_OI.float(), spec)
    return weight_from_codes(codes, scale, zp, spec, torch.float32)


def fake_quant_linear(x: torch.Tensor, w_OI: torch.Tensor, bias: torch.Tensor | None, wspec: QuantSpec | None,
                      aspec: QuantSpec | None, act_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Reference quantized linear on already-transformed x and W (float32)."""
    xq = x if aspec is None else quantize_activation(x, aspec, act_scale)
    return torch.nn.functional.linear(xq.float(), fake_quant_weight(w_OI, wspec).float(),
                                      None if bias is None else bias.float())


def _plain(spec: QuantSpec | None) -> QuantSpec | None:
    if spec is None or spec.dfq is None:
        return spec
    return QuantSpec(**{**spec.to_dict(), "dfq": None})  # keeps every other field (a block format's scale_rule)


def _rotate_fn(Q_bb: torch.Tensor | None):
    if Q_bb is None:
        return None
    b = Q_bb.shape[0]

    def rot(t):
        return (t.reshape(*t.shape[:-1], -1, b) @ Q_bb.to(t.device, torch.float32)).reshape(t.shape)
    return rot


def _stage_fn(w0, b, lam, rotate, wspec, aspec, act_scale, act_zero_point=None):
    """The stage's quantized layer as a function of the untransformed input x (weight quantized once) and the
    scale index of its rows (static activation sets per scale)."""
    from fpqvar.quant.static_act import quantize_static

    ws = w0 if lam is None else w0 / lam
    ws = rotate(ws) if rotate is not None else ws
    w_hat = fake_quant_weight(ws, wspec).float()

    def f(x, si=None):
        xs = x if lam is None else x * lam
        xs = rotate(xs) if rotate is not None else xs
        if aspec is not None and aspec.static and act_scale is not None:
            xq = quantize_static(xs, aspec, act_scale, act_zero_point, None, 0 if si is None else si)
        else:
            xq = xs if aspec is None else quantize_activation(xs, aspec, act_scale)
        return torch.nn.functional.linear(xq.float(), w_hat, b)
    return f


@torch.no_grad()
def layer_sqnr_rows(name: str, x_per_scale: list[torch.Tensor], w0_OI: torch.Tensor, bias: torch.Tensor | None,
                    wspec: QuantSpec | None, aspec: QuantSpec | None, *, stages=None,
                    smooth_lam: torch.Tensor | None = None, galt_lam: torch.Tensor | None = None, rotate=None,
                    module=None, module_lam: torch.Tensor | None = None,
                    act_scale: torch.Tensor | None = None,
                    act_zero_point: torch.Tensor | None = None) -> list[dict]:
    """Rows ``{layer, scale, stage, sqnr_db, tokens}`` of one layer on its calibration rows.

    ``stages``: ``[(stage, lam_C | None, Q_bb | None, wspec, aspec), ...]``, cumulative plan states after each
    recipe step (``quantize_`` passes them). Without ``stages`` they are built from ``smooth_lam`` / ``galt_lam``
    (total input scales) and ``rotate(t)`` (the site's rotation). ``rtn`` (the given formats, DFQ replaced by its
    positive side's plain format, no transforms) and ``dfq`` come first; ``final`` is ``module`` itself fed
    ``x * module_lam`` (lambda that lives in ada_lin after fusion). A stage tuple may carry a sixth element,
    ``fn(x, scale_index)``: the stage's layer as its step computed it (GPTQ rounding, a low-rank branch).
    """
    w0 = w0_OI.float()
    b = None if bias is None else bias.float()
    zp = act_zero_point
    fns = [("rtn", _stage_fn(w0, b, None, None, wspec, _plain(aspec), act_scale, zp))]
    if aspec is not None and aspec.dfq is not None:
        fns.append(("dfq", _stage_fn(w0, b, None, None, wspec, aspec, act_scale, zp)))
    if stages is None:
        stages = []
        if smooth_lam is not None:
            stages.append(("smooth", smooth_lam, None, wspec, aspec))
        if rotate is not None:
            stages.append(("rotation", smooth_lam, rotate, wspec, aspec))
        if galt_lam is not None:
            stages.append(("galt", galt_lam, rotate, wspec, aspec))
        if module_lam is None:
            module_lam = galt_lam if galt_lam is not None else smooth_lam
    for st, lam, Q, ws, as_, *fn in stages:
        if fn and fn[0] is not None:
            fns.append((st, fn[0]))
            continue
        rot = Q if callable(Q) else _rotate_fn(Q)
        lam32 = None if lam is None else lam.to(w0.device, torch.float32)
        fns.append((st, _stage_fn(w0, b, lam32, rot, ws, as_, act_scale, zp)))
    if module is not None:
        lam_in = module_lam
        if getattr(module, "input_scale", None) is not None:
            lam_in = None  # the module multiplies by lambda itself (shared AdaLN / no modulation to fold into)
        lam_in = None if lam_in is None else lam_in.to(w0.device, torch.float32)
        fns.append(("final", lambda x, si: module(x if lam_in is None else x * lam_in, scale_index=si).float()))
    rows = []
    tot: dict[str, list[float]] = {st: [0.0, 0.0] for st, _ in fns}  # "all" = pooled signal / error sums
    n_all = 0
    for si, x in enumerate(x_per_scale):
        if x.numel() == 0:
            continue
        x = x.float()
        n_all += int(x.shape[0])
        y_ref = torch.nn.functional.linear(x, w0, b).double()
        sig = float(y_ref.pow(2).sum())
        for st, f in fns:
            err = float((y_ref - f(x, si).double()).pow(2).sum())
            tot[st][0] += sig
            tot[st][1] += err
            rows.append({"layer": name, "scale": si, "stage": st, "sqnr_db": _db(sig, err),
                         "tokens": int(x.shape[0])})
    if n_all:
        for st, _ in fns:
            rows.append({"layer": name, "scale": "all", "stage": st, "sqnr_db": _db(*tot[st]), "tokens": n_all})
    return rows


def _fmt_db(v: float) -> str:
    return "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:.2f}"


@dataclass
class QuantReport:
    """What ``quantize_`` did. ``layers``: per module name, the installed specs / transforms; ``sqnr``: rows of
    :func:`layer_sqnr_rows` (empty without calibration data or with ``report=False``)."""

    recipe: dict
    layers: dict[str, dict] = field(default_factory=dict)
    sqnr: list[dict] = field(default_factory=list)
    galt: dict[str, dict] = field(default_factory=dict)
    formats: dict[str, dict] = field(default_factory=dict)
    kv: dict | None = None
    operands: dict[str, str] = field(default_factory=dict)  # attention-operand site -> spec label
    timings_s: dict[str, float] = field(default_factory=dict)
    calibration: dict | None = None
    version: int = REPORT_VERSION

    def to_dict(self) -> dict:
        rows = [{**r, "sqnr_db": (None if not math.isfinite(r["sqnr_db"]) else r["sqnr_db"])} for r in self.sqnr]
        return {"version": self.version, "recipe": self.recipe, "layers": self.layers, "sqnr": rows,
                "galt": self.galt, "formats": self.formats, "kv": self.kv, "operands": self.operands,
                "timings_s": self.timings_s,
                "calibration": self.calibration, "summary": self.summary()}

    def summary(self) -> dict:
        """Per stage, over the layers that have it (scale = all rows): the mean SQNR (dB) and the mean gain over
        the same layers' ``rtn`` stage (stages exist only where their transform applies, so the plain means
        cover different layer sets; the gains compare like with like)."""
        by: dict[str, dict[str, float]] = {}
        for r in self.sqnr:
            if r["scale"] == "all" and math.isfinite(r["sqnr_db"]):
                by.setdefault(r["layer"], {})[r["stage"]] = r["sqnr_db"]
        acc: dict[str, list[float]] = {}
        gain: dict[str, list[float]] = {}
        for d in by.values():
            for st, v in d.items():
                acc.setdefault(st, []).append(v)
                if st != "rtn" and "rtn" in d:
                    gain.setdefault(st, []).append(v - d["rtn"])
        return {"mean_sqnr_db": {k: sum(v) / len(v) for k, v in acc.items()},
                "mean_gain_vs_rtn_db": {k: sum(v) / len(v) for k, v in gain.items()},
                "layers_per_stage": {k: len(v) for k, v in acc.items()},
                "num_quantized_layers": sum(1 for v in self.layers.values() if v.get("weight") or v.get("act"))}

    def to_markdown(self, per_scale: bool = True) -> str:
        name = self.recipe.get("name", "?")
        lines = [f"# PTQ report: {name}", ""]
        lines += ["| layer | weight | act | rotation | lambda |", "| --- | --- | --- | --- | --- |"]
        for k, v in self.layers.items():
            lines.append(f"| {k} | {v.get('weight') or 'float'} | {v.get('act') or 'float'} | "
                         f"{v.get('rotation') or '-'} | {v.get('lambda') or '-'} |")
        if self.sqnr:
            stages = list(dict.fromkeys(r["stage"] for r in self.sqnr))
            scales = list(dict.fromkeys(r["scale"] for r in self.sqnr)) if per_scale else ["all"]
            table: dict[tuple, dict[str, float]] = {}
            for r in self.sqnr:
                if r["scale"] in scales:
                    table.setdefault((r["layer"], r["scale"]), {})[r["stage"]] = r["sqnr_db"]
            lines += ["", "## Layer-output SQNR (dB) on calibration data", "",
                      "| layer | scale | " + " | ".join(stages) + " |",
                      "| --- | --- | " + " | ".join("---" for _ in stages) + " |"]
            for (layer, sc), d in table.items():
                lines.append(f"| {layer} | {sc} | " + " | ".join(_fmt_db(d[s]) if s in d else "" for s in stages)
                             + " |")
            sm = self.summary()
            lines += ["", "Mean over the layers that have each stage (scale = all): " + ", ".join(
                f"{k} {v:.2f} dB ({sm['layers_per_stage'][k]} layers)" for k, v in sm["mean_sqnr_db"].items()),
                "", "Mean gain over the same layers' rtn: " + ", ".join(
                f"{k} {v:+.2f} dB" for k, v in sm["mean_gain_vs_rtn_db"].items())]
        return "\n".join(lines) + "\n"
