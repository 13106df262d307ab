"""Reports over the results schema: pure functions of DataFrames, usable in a notebook.

    import attnbench
    rep = attnbench.report("results/my-run")          # or several run dirs / shards, or a DataFrame
    rep.absolute, rep.relative, rep.break_even, rep.paper, rep.accuracy, rep.logs   # DataFrames
    print(rep.markdown)                                      # what report.md holds

The modules, each using only those above it:

- :mod:`.load`: runs read and joined; schema, training rows, hparams variants (``soft[landmarks=64]``: a model
  present with several ``hparams`` values is one model per value in every table); which columns are numeric and
  plotted (from the results schema's column specs).
- :mod:`.format`: significant figures, the noisy/no-spread marks, each table's display cells.
- :mod:`.tables`: absolute, relative to the softmax baseline, break-even N.
- :mod:`.paper`: training rows joined with efficiency rows (the accuracy-and-cost table).
- :mod:`.verdict`: at each N, the fastest and the leanest method against the baseline, ties named.
- :mod:`.sections`: what a report says, as a list of sections; :mod:`.markdown` and :mod:`.terminal` render them.
- :mod:`.plots`: the PNGs.
- :mod:`.seeds`: the 95 % Student-t interval over seeds, and whether a seed learned (:mod:`attnbench.learning`).
- :mod:`.logs`: the training pairs' per-epoch logs (validation top-1, ``diag_*``), found beside each row's run.
- :mod:`.frontier`: training rows over seeds per (skeleton, task, N, model): seeds learned, final and best top-1 with
  their intervals, epochs to target, the change against softmax, the Pareto sets and the accuracy-versus-cost plot
  (``frontier.png``).
- :mod:`.curves`: the learning curves (``curves.png``); :mod:`.diagnostics`: the logs' ``diag_*`` figures in words
  and a table; :mod:`.controls`: the local control (``shapes`` beside ``longrange``) and the ablations.
- :mod:`.sections` also uses those; :mod:`.api`: :func:`report` and :class:`Report`.
"""
from __future__ import annotations

from attnbench.reporting.api import REPORT_NAME, Report, report
from attnbench.reporting.format import (DASH, LEGEND, NOISY, absolute_display, break_even_display, fmt_latency,
                                        fmt_sig, fmt_times, machine_line, relative_display)
from attnbench.reporting.curves import draw_curves, plot_curves
from attnbench.reporting.frontier import accuracy_across_n, accuracy_display, draw_frontier, plot_frontier
from attnbench.reporting.load import load_runs, variant_labels
from attnbench.reporting.markdown import render_markdown, to_markdown
from attnbench.reporting.paper import paper_display, paper_table
from attnbench.reporting.plots import draw_quantity, method_styles, plot_all, plot_quantity
from attnbench.reporting.sections import MEASURES_NOTE, Section, build_sections, landmarks_note
from attnbench.reporting.tables import BASELINES, absolute_table, break_even, choose_baseline, relative_table
from attnbench.reporting.terminal import rich_tables
from attnbench.reporting.verdict import MEM_TIE, verdict_lines, verdict_table

__all__ = ["Report", "report", "load_runs", "absolute_table", "relative_table", "break_even", "paper_table",
           "choose_baseline", "render_markdown", "to_markdown", "machine_line", "fmt_sig", "fmt_latency",
           "BASELINES", "NOISY", "REPORT_NAME", "variant_labels", "MEASURES_NOTE", "DASH", "absolute_display",
           "relative_display", "break_even_display", "paper_display", "rich_tables", "plot_all", "plot_quantity",
           "Section", "build_sections", "LEGEND", "fmt_times", "draw_quantity", "method_styles", "landmarks_note",
           "MEM_TIE", "verdict_lines", "verdict_table", "accuracy_across_n", "accuracy_display", "plot_frontier",
           "draw_frontier", "draw_curves", "plot_curves"]
