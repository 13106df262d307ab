"""report.html: the same sections as report.md, with the figures embedded, in one self-contained file to share
(no scripts, no external stylesheet or image: it opens offline and survives being mailed)."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from attnbench.reporting.format import table_cells
from attnbench.reporting.sections import Bullets, Labelled, Section, Table, Text

__all__ = ["render_html", "inline"]

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 8px; white-space: nowrap; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
figure { display: inline-block; margin: .5em; } img { max-width: 520px; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: .5em 1em; }
"""

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline(text: str) -> str:
    """The sections' inline markdown (``**bold**``, `` `code` ``) as escaped HTML."""
    out = html.escape(str(text), quote=False)
    out = _CODE.sub(lambda m: f"<code>{m[1]}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m[1]}</strong>", out)


def _table(b: Table) -> str:
    df = b.frame
    cells, numeric = table_cells(df)
    head = "".join(f"<th>{inline(c)}</th>" for c in df.columns)
    body = "\n".join("<tr>" + "".join(f'<td class="num">{inline(c)}</td>' if num else f"<td>{inline(c)}</td>"
                                      for c, num in zip(r, numeric)) + "</tr>" for r in cells)
    caption = f"<caption>{inline(b.caption)}</caption>" if b.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _block(b: object) -> str:
    if isinstance(b, Text):
        return "<p>" + "<br>\n".join(inline(ln) for ln in b.lines) + "</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Labelled):
        return "<ul>" + "".join(f"<li><strong>{inline(k)}</strong>: {inline(v)}</li>" for k, v in b.rows) + "</ul>"
    if isinstance(b, Table):
        return _table(b)
    raise TypeError(f"no HTML for block {type(b).__name__}")


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


def render_html(sections: list[Section], figures: list[Path] = (), title: str = "attnbench report") -> str:
    """The sections as one HTML page; ``figures`` (PNG files) are embedded after them, each under its file name."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body>"]
    for s in sections:
        blocks = "\n".join(_block(b) for b in s.blocks)
        if not s.title and s is sections[0] and "Warning" in blocks[:40]:
            parts.append(f'<div class="warn">{blocks}</div>')
            continue
        parts.append((f"<h{s.level}>{inline(s.title)}</h{s.level}>\n" if s.title else "") + blocks)
    pngs = [p for p in figures if p.suffix == ".png" and p.exists()]
    if pngs:
        parts.append("<h2>Figures</h2>" + "\n".join(_figure(p) for p in pngs))
    parts.append("</body></html>")
    return "\n".join(parts)
