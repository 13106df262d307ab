"""The terminal view of a report: the sections with a terminal rank, as rich renderables that fit the console.

A table wider than the console is split into several, each repeating the table's key columns (model, N), so that
no cell is cut or wrapped; a unit in a header goes to a second header line. Text wraps at spaces only. Rich markup
is never interpreted (``soft[landmarks=64]`` is a name, not a style).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd
from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType
from rich.table import Table as RichTable
from rich.text import Text as RichText

from attnbench.reporting.format import looks_numeric
from attnbench.reporting.sections import Bullets, Labelled, Section, Table, Text

if TYPE_CHECKING:
    from attnbench.reporting.api import Report

__all__ = ["rich_tables", "render_sections", "FitTable", "plain"]


def plain(markdown: str) -> str:
    """Inline markdown as plain text (``**bold**`` and backticks dropped)."""
    return re.sub(r"\*\*(.+?)\*\*", r"\1", markdown).replace("`", "")


def _header(name: str) -> str:
    return name.replace(" (", "\n(", 1)  # "peak mem (MiB)" -> two narrower lines


class FitTable:
    """A table of strings that splits into column chunks (each repeating the first ``keys`` columns) to fit the
    console's width, or prints whole when ``wide``."""

    def __init__(self, frame: pd.DataFrame, *, keys: int = 1, failed: list[bool] | None = None,
                 wide: bool = False) -> None:
        self.headers = [_header(str(c)) for c in frame.columns]
        self.rows = [["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in r]
                     for r in frame.itertuples(index=False)]
        self.keys = min(keys, len(self.headers))
        self.failed = failed or [False] * len(self.rows)
        self.wide = wide
        self.widths = [max([cell_len(x) for x in h.split("\n")] + [cell_len(r[i]) for r in self.rows])
                       for i, h in enumerate(self.headers)]
        self.numeric = [bool(self.rows) and all(looks_numeric(r[i]) for r in self.rows)
                        for i in range(len(self.headers))]

    @staticmethod
    def span(widths: list[int]) -> int:
        """Printed width of columns of these widths: one space of padding and one divider between columns."""
        return sum(widths) + 2 * len(widths) - 1

    def chunks(self, max_width: int) -> list[list[int]]:
        """Column indices of each printed table: the key columns, then as many others as fit ``max_width``."""
        keys, rest = list(range(self.keys)), list(range(self.keys, len(self.headers)))
        if self.wide or self.span(self.widths) <= max_width or not rest:
            return [keys + rest]
        out: list[list[int]] = []
        for i in rest:
            if out and self.span([self.widths[j] for j in out[-1] + [i]]) <= max_width:
                out[-1].append(i)
            else:
                out.append(keys + [i])
        return out

    def table(self, cols: list[int]) -> RichTable:
        t = RichTable(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
        for i in cols:
            t.add_column(self.headers[i], justify="right" if self.numeric[i] else "left", no_wrap=True,
                         min_width=self.widths[i])
        for row, bad in zip(self.rows, self.failed):
            t.add_row(*[RichText(row[i]) for i in cols], style="red" if bad else None)
        return t

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        for cols in self.chunks(options.max_width):
            yield self.table(cols)


def _block(b: object, wide: bool) -> list[RenderableType]:
    if isinstance(b, Text):
        whole = re.fullmatch(r"\*\*([^*]+)\*\*", "\n".join(b.lines))  # a bold line alone: a sub-heading
        return [RichText("\n" + whole[1], style="bold")] if whole else [RichText(plain("\n".join(b.lines)))]
    if isinstance(b, Bullets):
        return [_hanging([("-", plain(item)) for item in b.items])]
    if isinstance(b, Labelled):
        return [_hanging([(label, plain(text)) for label, text in b.rows])]
    if isinstance(b, Table):
        cap = [RichText("\n" + plain(b.caption).rstrip(":"), style="bold")] if b.caption else []
        return cap + [FitTable(b.frame, keys=b.keys, failed=b.failed, wide=wide)]
    raise TypeError(f"unknown block {type(b).__name__}")


def _hanging(rows: list[tuple[str, str]]) -> RichTable:
    """Label, then text that wraps at spaces under itself (a hanging indent)."""
    grid = RichTable.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    for label, text in rows:
        grid.add_row(RichText(label), RichText(text))
    return grid


def render_sections(sections: list[Section], *, wide: bool = False) -> list[RenderableType]:
    """The terminal renderables of ``sections``: those with a terminal rank, in rank order."""
    out: list[RenderableType] = []
    for s in sorted((s for s in sections if s.terminal is not None), key=lambda s: s.terminal):
        out.append(RichText("\n" + plain(s.title), style="bold underline" if s.level <= 2 else "bold")
                   if s.title else RichText(""))
        out += [r for b in s.blocks for r in _block(b, wide)]
    return out


def rich_tables(rep: Report, *, wide: bool = False) -> list[RenderableType]:
    """The report's terminal view: per group the absolute, speed-up and memory-ratio tables, the cells that did not
    finish, the legend, and the verdict last. ``wide``: never split a table."""
    return render_sections(rep.sections, wide=wide)
