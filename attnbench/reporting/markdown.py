"""report.md: the sections of :mod:`~attnbench.reporting.sections` as GitHub-flavoured markdown."""
from __future__ import annotations

from typing import Any

import pandas as pd

from attnbench.reporting.format import table_cells
from attnbench.reporting.sections import Bullets, Labelled, Section, Table, Text, build_sections

__all__ = ["to_markdown", "render", "render_markdown"]


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``df``'s cells as strings (no tabulate needed)."""
    head = [str(c) for c in df.columns]
    rows, numeric = table_cells(df)
    esc = [[c.replace("|", "\\|") for c in r] for r in [head] + rows]
    widths = [max(len(r[i]) for r in esc) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(esc[0]), sep] + [line(r) for r in esc[1:]])


def render(sections: list[Section]) -> str:
    """The markdown text of ``sections`` (headings, paragraphs with hard line breaks, bullets, tables)."""
    out: list[str] = []
    for s in sections:
        if s.title:
            out += ["#" * s.level + " " + s.title, ""]
        for b in s.blocks:
            if isinstance(b, Text):
                out += [ln + "  " for ln in b.lines[:-1]] + [b.lines[-1] + ("  " if b.break_last else ""), ""]
            elif isinstance(b, Bullets):
                out += [f"- {item}" for item in b.items] + [""]
            elif isinstance(b, Labelled):
                out += [f"- **{label}**: {text}" for label, text in b.rows] + [""]
            elif isinstance(b, Table):
                out += ([b.caption, ""] if b.caption else []) + [to_markdown(b.frame), ""]
    return "\n".join(out)


def render_markdown(df: pd.DataFrame, metas: list[dict[str, Any]] | None = None, *,
                    baseline: str | None = None, runs: list[str] | None = None) -> str:
    """The whole report.md of ``df``: machine line, verdict, legend, absolute, relative, break-even and paper
    tables, hparams, failures."""
    return render(build_sections(df, metas, baseline=baseline, runs=runs))
