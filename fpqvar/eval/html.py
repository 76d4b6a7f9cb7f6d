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


def _table(table: dict) -> tuple[str, list[str]]:
    """HTML of a ``report.table_json`` dict (the cells of the Markdown table) and its notes."""
    from fpqvar.eval.report import table_cells

    head, body, notes = table_cells(table["rows"], model=table["model"])
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>" for cells in body]
    return "\n".join(out) + "</table>", notes


def write_report(path: str | os.PathLike, *, title: str, table: dict, figures: list[tuple[str, Path]],
                 notes: list[str] = (), extra_sections: list[tuple[str, str]] = (),
                 links: list[tuple[str, str]] = ()) -> Path:
    """``figures``: (caption, png path); ``extra_sections``: (heading, preformatted text); ``links``: (label,
    path relative to the report) of the files beside it (tables, PNGs)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class='note'>Metrics: {html.escape(table['reference'])}.</p>",
             "<p class='note'>Settings: " + html.escape(", ".join(f"{k}={v}" for k, v in table["settings"].items()))
             + "</p>"]
    table_html, table_notes = _table(table)
    parts.append(table_html)
    for n in [*table_notes, *notes]:
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
