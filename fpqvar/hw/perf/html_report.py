"""A self-contained HTML page for ``fpqvar hw perf --out``: the design table, the claims and the figures embedded
as base64 PNGs (nothing is fetched)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from fpqvar.io_utils import atomic_write_text

_CSS = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}"
        "table{border-collapse:collapse;font-size:.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .5em}"
        "th{background:#f0f3f7}td.n{text-align:right}.holds{color:#060}.fails{color:#a00}img{max-width:100%}")


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}"></figure>'


def write_report(path, title: str, designs: dict[str, dict], claims: list[dict], figures: list[Path],
                 notes: list[str]) -> Path:
    e = html.escape
    rows = "".join(f"<tr><td>{e(n)}</td><td>{e(d['family'])}</td><td class=n>{d['images_per_s']:.3f}</td>"
                   f"<td class=n>{d['energy_per_image_j']:.2f}</td><td>{e(d['description'])}</td></tr>"
                   for n, d in designs.items())
    cl = []
    for c in claims:
        items = "".join(f"<tr><td>{e(x['design'])}</td><td>{e(x['reference'])}</td><td class=n>{x['value']:.2f}</td>"
                        f"<td class={'fails' if x['verdict'] == 'fails' else 'holds'}>{e(x['verdict'])}</td>"
                        f"<td>{e(x['assumptions'])}</td></tr>" for x in c["entries"])
        cl.append(f"<h3>{e(c['text'])} (paper {c['paper']:g})</h3><p>{e(c['note'])}</p><table><tr><th>design</th>"
                  f"<th>vs</th><th>model</th><th>verdict</th><th>assumptions</th></tr>{items}</table>")
    body = (f"<h1>{e(title)}</h1><h2>Named designs</h2><table><tr><th>design</th><th>family</th><th>images/s</th>"
            f"<th>J/image</th><th>what</th></tr>{rows}</table><h2>Figures</h2>{''.join(_img(f) for f in figures)}"
            f"<h2>Claims</h2>{''.join(cl)}<h2>Notes</h2><ul>{''.join(f'<li>{e(n)}</li>' for n in notes)}</ul>")
    return atomic_write_text(path, f"<!doctype html><html><head><meta charset=utf-8><title>{e(title)}</title>"
                                   f"<style>{_CSS}</style></head><body>{body}</body></html>\n")
