"""A self-contained HTML report: the results table, settings and the figures embedded as base64 PNGs (one file
to open or mail; nothing is fetched)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from fpqvar.io_utils import atomic_write_text

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f0f3f7; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; image-rendering: pixelated; } .note { color: #555; font-size: 0.9em; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _table(table: dict) -> str:
    """HTML of a ``report.table_json`` dict."""
    from fpqvar.eval.paper import PAPER_MODEL, paper_row

    rows = table["rows"]
    paper = table["model"] == PAPER_MODEL
    has_acc = any(r.get("class_accuracy") is not None for r in rows)
    head = ["method", "bits W/A", "IS", "FID", "precision", "recall"] + (["class acc. %"] if has_acc else []) + \
        ["weight bytes", "note"] + (["paper IS", "paper FID", "paper P", "paper R"] if paper else [])

    def f(v, nd):
        return "-" if v is None else f"{v:.{nd}f}"

    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = [r["method"], f"{r['bits_w']}/{r['bits_a']}", f(r.get("is"), 2), f(r.get("fid"), 2),
                 f(r.get("precision"), 3), f(r.get("recall"), 3)]
        if has_acc:
            cells.append(f(None if r.get("class_accuracy") is None else 100 * r["class_accuracy"], 1))
        cells += ["-" if r.get("weight_bytes") is None else f"{r['weight_bytes']:,}", r.get("note") or ""]
        if paper:
            p = paper_row(r["method"])
            cells += ["-"] * 4 if p is None else [f(p.IS, 1), f(p.FID, 2), f(p.precision, 2), f(p.recall, 2)]
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join(out) + "</table>"


def write_report(path: str | os.PathLike, *, title: str, table: dict, figures: list[tuple[str, Path]],
                 notes: list[str] = (), extra_sections: list[tuple[str, str]] = (),
                 links: list[tuple[str, str]] = ()) -> Path:
    """``figures``: (caption, png path); ``extra_sections``: (heading, preformatted text); ``links``: (label,
    path relative to the report) of the files beside it (tables, PNGs)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class='note'>Metrics: {html.escape(table['reference'])}.</p>",
             "<p class='note'>Settings: " + html.escape(", ".join(f"{k}={v}" for k, v in table["settings"].items()))
             + "</p>", _table(table)]
    for n in notes:
        parts.append(f"<p class='note'>{html.escape(n)}</p>")
    if links:
        parts.append("<p class='note'>Files: " + ", ".join(
            f"<a href='{html.escape(rel)}'>{html.escape(label)}</a>" for label, rel in links) + "</p>")
    if figures:
        parts.append("<h2>Figures</h2><ul>" + "".join(
            f"<li><a href='#fig{i}'>{html.escape(c)}</a></li>" for i, (c, _) in enumerate(figures)) + "</ul>")
    for i, (caption, png) in enumerate(figures):
        parts.append(f"<figure id='fig{i}'>{_img(png)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    for heading, text in extra_sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><pre>{html.escape(text)}</pre>")
    parts.append("</body></html>")
    return atomic_write_text(path, "\n".join(parts) + "\n")
