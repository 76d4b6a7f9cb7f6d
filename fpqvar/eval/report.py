"""Result tables in the layout of the paper's table (method, bits W/A, IS, FID, precision, recall, weight bytes),
as Markdown and JSON; the paper's VAR-d30 numbers sit alongside when the evaluated model is var-d30.

Weight bytes: the four quantizable linears of every block (qkv, proj, fc1, fc2: fpqvar-method.md section 3) as
stored in the packed quantized file (``fpqvar.quant.export``): packed codes + float32 scales (+ zero points);
a layer left in float counts 2 bytes per weight (FP16, the paper's baseline). Biases and every other tensor are
excluded (the same in all recipes).
"""

from __future__ import annotations

import os
from pathlib import Path

from fpqvar.eval.paper import PAPER_MODEL, SOURCE, paper_row
from fpqvar.io_utils import atomic_write_json, atomic_write_text

TABLE_VERSION = 1
SITES = ("attn.mat_qkv", "attn.proj", "ffn.fc1", "ffn.fc2")
_WEIGHT_SUFFIXES = (".weight_codes", ".weight_scale", ".weight_zero_point", ".weight_tensor_scale", ".lowrank_up",
                    ".lowrank_down")  # scale and low-rank (SVDQuant) overhead included


def recipe_bits(recipe) -> dict:
    """{'w': '4', 'a': '4', 'note': 'fc2 float'}: bits of the block linears (mixed -> '4-16')."""
    w_bits, a_bits, float_sites = set(), set(), []
    for site in SITES:
        ws, as_ = recipe.specs_for(f"blocks.0.{site}")
        w_bits.add(16 if ws is None else ws.bits)
        a_bits.add(16 if as_ is None else as_.bits)
        if ws is None and as_ is None and recipe.quantizes_anything:
            float_sites.append(site.split(".")[-1])

    def label(bits: set[int]) -> str:
        return str(min(bits)) if len(bits) == 1 else f"{min(bits)}-{max(bits)}"

    notes = [f"{', '.join(float_sites)} float"] if float_sites else []
    if recipe.kv is not None:
        notes.append(f"KV {recipe.kv.bits}-bit")
    return {"w": label(w_bits), "a": label(a_bits), "note": "; ".join(notes)}


def _is_site_key(key: str) -> bool:
    return key.startswith("blocks.") and any(f".{s}." in key for s in SITES)


def site_shapes(var_config) -> dict[str, tuple[int, int]]:
    """(out, in) of each quantizable linear of a block (var-model.md 4.1)."""
    C, H = var_config.C, var_config.mlp_hidden
    return {"attn.mat_qkv": (3 * C, C), "attn.proj": (C, C), "ffn.fc1": (H, C), "ffn.fc2": (C, H)}


def weight_bytes_from_file(path: str | os.PathLike, var_config) -> int:
    """Bytes of the block linears' weights in a packed quantized file (see module docstring)."""
    from safetensors import safe_open

    total, quantized = 0, set()
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            if _is_site_key(k) and k.endswith(_WEIGHT_SUFFIXES):
                t = f.get_tensor(k)
                total += t.numel() * t.element_size()
                quantized.add(k.rsplit(".", 1)[0])
    shapes = site_shapes(var_config)
    for i in range(var_config.depth):
        for site in SITES:
            if f"blocks.{i}.{site}" not in quantized:
                total += shapes[site][0] * shapes[site][1] * 2
    return total


def float_weight_bytes(var_config) -> int:
    """FP16 bytes of the block linears' weights of a float model."""
    return var_config.depth * sum(o * i * 2 for o, i in site_shapes(var_config).values())


def make_row(method: str, recipe, metrics: dict, weight_bytes: int | None, extra: dict | None = None) -> dict:
    bits = recipe_bits(recipe)
    row = {"method": method, "bits_w": bits["w"], "bits_a": bits["a"], "note": bits["note"],
           "is": metrics.get("is"), "fid": metrics.get("fid"), "precision": metrics.get("precision"),
           "recall": metrics.get("recall"), "class_accuracy": metrics.get("class_accuracy"),
           "sfid": metrics.get("sfid"), "weight_bytes": weight_bytes, "num_samples": metrics.get("num_samples")}
    row.update({f"{k}_ci": metrics.get(f"{k}_ci") for k in ("is", "fid", "precision", "recall", "class_accuracy")})
    row.update(extra or {})
    return row


def _f(v, nd: int) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _bytes(v) -> str:
    if v is None:
        return "-"
    return f"{v / 2**20:.2f} MiB" if v >= 2**20 else f"{v / 2**10:.1f} KiB"


def _with_ci(r: dict, key: str, nd: int, scale: float = 1.0) -> str:
    """``3.97 [3.51, 4.40]``: the estimate and its bootstrap interval (when there is one)."""
    v = r.get(key)
    if v is None:
        return "-"
    ci = r.get(f"{key}_ci")
    text = f"{scale * v:.{nd}f}"
    return text if not ci else f"{text} [{scale * ci[0]:.{nd}f}, {scale * ci[1]:.{nd}f}]"


def _damage(r: dict, key: str, nd: int, scale: float = 1.0) -> str:
    return "(reference)" if r.get("is_float_reference") else _with_ci(r, key, nd, scale)


def table_cells(rows: list[dict], *, model: str) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows of cells, notes) shared by the Markdown and HTML tables. The damage against the float
    model's own samples comes first (it ranks recipes; issue 13), then the quality against real data, each
    metric with its bootstrap interval; a last row holds the real-vs-real floors where the reference has them."""
    with_paper = model == PAPER_MODEL
    has_acc = any(r.get("class_accuracy") is not None for r in rows)
    has_damage = any(r.get("fid_to_float") is not None or r.get("is_float_reference") for r in rows)
    has_tokens = any(r.get("token_agreement") is not None for r in rows)
    head = ["method", "bits W/A"]
    if has_damage:
        head += ["FID to float", "PSNR to float (dB)"] + (["tokens = float (%)"] if has_tokens else [])
    head += ["FID to real", "IS", "precision", "recall"] + (["class acc. (%)"] if has_acc else []) + [
        "weight bytes", "note"]
    if with_paper:
        head += ["paper IS", "paper FID", "paper P", "paper R"]
    body = []
    for r in rows:
        cells = [r["method"], f"{r['bits_w']}/{r['bits_a']}"]
        if has_damage:
            cells += [_damage(r, "fid_to_float", 2), _damage(r, "psnr_to_float_db", 1)]
            if has_tokens:
                cells.append(_damage(r, "token_agreement", 1, 100))
        cells += [_with_ci(r, "fid", 2), _with_ci(r, "is", 2), _with_ci(r, "precision", 3),
                  _with_ci(r, "recall", 3)]
        if has_acc:
            cells.append(_with_ci(r, "class_accuracy", 1, 100))
        cells += [_bytes(r.get("weight_bytes")), r.get("note") or ""]
        if with_paper:
            p = paper_row(r["method"])
            cells += ["-"] * 4 if p is None else [_f(p.IS, 1), _f(p.FID, 2), _f(p.precision, 2),
                                                  _f(p.recall, 2)]
        body.append(cells)
    notes = []
    floor = next((r for r in rows if r.get("floor_fid") is not None), None)
    if floor is not None:
        at = f" at {floor['floor_n']} real images" if floor.get("floor_n") else ""
        std = f" +- {floor['floor_fid_std']:.2f}" if floor.get("floor_fid_std") else ""
        cells = [f"real vs real (floor{at})", "-"] + ["-"] * ((2 + has_tokens) if has_damage else 0)
        cells += [f"{floor['floor_fid']:.2f}{std}", "-", _f(floor.get("floor_precision"), 3),
                  _f(floor.get("floor_recall"), 3)] + (["-"] if has_acc else []) + ["-", "disjoint real sets"]
        body.append(cells + ["-"] * (len(head) - len(cells)))
        notes.append(f"Real-vs-real floor{at}: disjoint real sets, same feature network, same reference (std over "
                     "draws after +-); FID grows as the sample count shrinks, so compare FID to real with this "
                     "floor, not with the 1,000-image one.")
    if has_damage:
        notes.append("FID / PSNR / tokens to float: the distance of each method's images to the float model's own "
                     "images from the same seeds (pairs; fpqvar.eval.paired): the damage the quantization does, "
                     "which FID to real can hide (quantization noise can lower it on a low-diversity model).")
    if any(r.get("fid_ci") for r in rows):
        notes.append("[lo, hi]: 95 % percentile bootstrap interval over the samples (resampled within each class, "
                     "the same resamples for every method; fpqvar.eval.bootstrap): two methods whose intervals "
                     "overlap widely are not shown to differ.")
    notes.append("Weight bytes: the block linears (qkv, proj, fc1, fc2) as packed in the quantized file (codes + "
                 "float32 scales); float layers at 2 bytes/weight.")
    if with_paper:
        notes.append(f"Paper columns: {SOURCE}.")
    return head, body, notes


def table_markdown(rows: list[dict], *, model: str, reference_label: str, settings: dict) -> str:
    head, body, notes = table_cells(rows, model=model)
    lines = [f"# Quantization results: {model}", "",
             f"Metrics: {reference_label}.", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), "",
             "| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    for n in notes:
        lines += ["", n]
    return "\n".join(lines) + "\n"


def table_json(rows: list[dict], *, model: str, reference_label: str, settings: dict) -> dict:
    out = {"version": TABLE_VERSION, "model": model, "reference": reference_label, "settings": settings,
           "rows": rows}
    if model == PAPER_MODEL:
        out["paper"] = {"source": SOURCE, "rows": {r["method"]: (None if paper_row(r["method"]) is None
                                                                  else paper_row(r["method"]).to_dict())
                                                   for r in rows}}
    return out


def write_tables(out_dir: str | os.PathLike, rows: list[dict], *, model: str, reference_label: str,
                 settings: dict) -> tuple[Path, Path]:
    out = Path(out_dir)
    md = atomic_write_text(out / "table.md", table_markdown(rows, model=model, reference_label=reference_label,
                                                           settings=settings))
    js = atomic_write_json(out / "table.json", table_json(rows, model=model, reference_label=reference_label,
                                                          settings=settings))
    return md, js
