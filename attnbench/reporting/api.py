"""``report()``: a run (or several, or a DataFrame) in, a :class:`Report` of DataFrames, report.md and plots out."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.reporting.format import short_machine
from attnbench.reporting.curves import CURVES_PNG, plot_curves
from attnbench.reporting.frontier import FRONTIER_PNG, accuracy_across_n, frontier_rows, plot_frontier, training_rows
from attnbench.reporting.load import efficiency, ensure_schema, labelled, load_runs
from attnbench.reporting.logs import pair_logs
from attnbench.reporting.markdown import render
from attnbench.reporting.paper import paper_table
from attnbench.reporting.plots import plot_all
from attnbench.reporting.sections import Section, build_sections
from attnbench.reporting.tables import absolute_table, break_even, choose_baseline, relative_table
from attnbench.results import write_text_atomic

__all__ = ["Report", "report", "REPORT_NAME", "HTML_NAME", "FORMATS", "parse_formats"]

REPORT_NAME = "report.md"
HTML_NAME = "report.html"
FORMATS = {"md": REPORT_NAME, "html": HTML_NAME}  # what report() can write, and the file each becomes


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """``"md,html"`` (or a list) -> the formats, order kept; ConfigError naming the accepted ones."""
    from attnbench.config import ConfigError, ref

    items = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else [str(f) for f in formats]
    items = list(dict.fromkeys(f for f in items if f))
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise ConfigError("formats", f"bad {ref('formats')} {','.join(bad) or repr(formats)}; accepted: "
                                     f"{', '.join(FORMATS)} or a comma list such as md,html")
    return items


@dataclass
class Report:
    """Everything a report holds; ``markdown`` is the text of report.md, ``sections`` what it is rendered from."""

    results: pd.DataFrame
    meta: list[dict[str, Any]]
    baseline: str | None
    absolute: pd.DataFrame
    relative: pd.DataFrame
    break_even: pd.DataFrame
    paper: pd.DataFrame
    accuracy: pd.DataFrame  # training rows reduced over seeds per (skeleton, task, N, model): learned, costs, Pareto
    logs: pd.DataFrame  # every epoch of the training pairs' logs (validation top-1, diagnostics), long
    sections: list[Section]
    markdown: str
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"Report({len(self.results)} rows, baseline={self.baseline!r}, out_dir={self.out_dir}, "
                f"files={[p.name for p in self.files]})")


def report(runs: str | Path | Iterable[str | Path] | pd.DataFrame, out: str | Path | None = None, *,
           baseline: str | None = None, plots: bool = True, write: bool | None = None,
           meta: list[dict[str, Any]] | None = None, formats: str | Iterable[str] = ("md", "html")) -> Report:
    """Build the report of one or several run directories (or of a results DataFrame).

    Args:
        runs: a run directory, a list of them (shards are joined), or a DataFrame in the results schema.
        out: where to write report.md and the plots; default the run directory itself when there is one.
        baseline: the reference model (default the first of BASELINES present).
        plots: also write the PNG plots.
        write: write files (default: True when there is somewhere to write).
        meta: meta.json dicts, when ``runs`` is a DataFrame.
        formats: which documents to write: ``md`` (report.md), ``html`` (report.html: the same sections with the
            plots embedded, one self-contained file), or both.

    Returns:
        A Report with the tables as DataFrames.
    """
    formats = parse_formats(formats)
    if isinstance(runs, pd.DataFrame):
        df, metas, names = runs, list(meta or []), []
    else:
        df, metas = load_runs(runs)
        names = list(dict.fromkeys(df["run"])) if "run" in df.columns else []
        if out is None and len(names) == 1:
            out = Path(runs) if isinstance(runs, (str, Path)) else Path(list(runs)[0])
    df = ensure_schema(df)
    eff = labelled(efficiency(df))
    base = choose_baseline(eff, baseline)
    logs = pair_logs(training_rows(df))
    sections = build_sections(df, metas, baseline=base, runs=names, logs=logs)
    rep = Report(results=df, meta=metas, baseline=base, absolute=absolute_table(eff),
                 relative=relative_table(eff, base), break_even=break_even(eff, base), paper=paper_table(df),
                 accuracy=accuracy_across_n(df, logs=logs), logs=logs, sections=sections, markdown=render(sections))
    if write is None:
        write = out is not None
    if write:
        if out is None:
            raise ValueError("report: pass out= to write the report of a DataFrame")
        rep.out_dir = Path(out)
        rep.out_dir.mkdir(parents=True, exist_ok=True)
        if "md" in formats:
            write_text_atomic(rep.out_dir / REPORT_NAME, rep.markdown)
            rep.files.append(rep.out_dir / REPORT_NAME)
        if plots:
            machine = "; ".join(dict.fromkeys(short_machine(m) for m in metas)) or None
            rep.files += plot_all(eff, rep.out_dir, machine=machine)
            if len(frontier_rows(rep.accuracy)) > 1:
                rep.files.append(plot_frontier(rep.accuracy, rep.out_dir / FRONTIER_PNG, title=machine and
                                               f"Accuracy versus cost — {machine}"))
            curves = plot_curves(rep.logs, rep.out_dir / CURVES_PNG, rep.accuracy, title=machine and
                                 f"Validation top-1 per epoch — {machine}")
            rep.files += [curves] if curves else []
        if "html" in formats:
            from attnbench.reporting.html import render_html

            write_text_atomic(rep.out_dir / HTML_NAME, render_html(sections, rep.files, title=f"attnbench report: "
                                                             f"{', '.join(names) or rep.out_dir.name}"))
            rep.files.append(rep.out_dir / HTML_NAME)
    return rep
