"""The terminal view of a report: the sections' tables marked ``terminal``, as rich renderables."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text as RichText

from attnbench.reporting.sections import Table

if TYPE_CHECKING:
    from attnbench.reporting.api import Report

__all__ = ["rich_tables"]


def _table(frame: pd.DataFrame, title: str) -> Group:
    t = RichTable()
    for c in frame.columns:
        t.add_column(str(c), justify="left" if c in ("model", "status") else "right")
    for r in frame.itertuples(index=False):
        t.add_row(*[str(v) for v in r], style=None if "status" not in frame.columns or
                  getattr(r, "status", "ok") in ("ok", "") else "red")
    return Group(RichText(title, style="bold"), t)  # a title above, never wrapped to the table's width


def rich_tables(rep: Report) -> list[RenderableType]:
    """rich renderables of the report's terminal tables (absolute, speed-up, memory ratio per group)."""
    return [_table(b.frame, b.title) for s in rep.sections for b in s.blocks if isinstance(b, Table) and b.terminal]
