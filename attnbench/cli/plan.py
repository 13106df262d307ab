"""``attnbench run --dry-run``'s output: the planned cells per (N, mode), what is skipped and why, the estimate."""
from __future__ import annotations

from pathlib import Path

import click

from attnbench.cli.progress import fmt_duration
from attnbench.config import AUTO_GROUP_BUDGET_S
from attnbench.plan import EFFICIENCY, Plan

__all__ = ["print_plan"]

MARK = {"skipped": " (skipped)", "done": " (done)", "run": ""}


def print_plan(plan: Plan, run_dir: Path) -> None:
    from rich.table import Table

    from attnbench.cli._render import console

    table = Table(title=f"Planned cells of {run_dir} (dry run: nothing runs, nothing is written)",
                  title_justify="left", show_edge=False)
    for col, just in (("N", "right"), ("mode", "left"), ("cells, in run order", "left"), ("est.", "right")):
        table.add_column(col, justify=just, overflow="fold")
    groups: dict[tuple, list] = {}
    for c in plan.cells:
        groups.setdefault((c.spec.seq_len, c.spec.mode), []).append(c)
    for (n, mode), cells in groups.items():
        names = ", ".join(c.spec.model + (" (again)" if c.status == "run" and c.reason else MARK[c.status])
                          for c in cells)
        secs, most = sum(c.seconds for c in cells), sum(c.seconds_max for c in cells)
        est = fmt_duration(secs) + (f"–{fmt_duration(most)}" if most > secs else "")
        table.add_row(f"{n:,}", mode, names, est if plan.gflops else "?")
    out = console()
    out.print(table)
    for c in plan.cells:
        if c.status == "skipped":
            out.print(f"skipped {c.spec.model} N={c.spec.seq_len:,} {c.spec.mode}: {c.reason}", highlight=False)
    run, skipped, done = plan.count("run"), plan.count("skipped"), plan.count("done")
    line = f"{run} cells to run ({plan.rounds}), {skipped} skipped" + (f", {done} done" if done else "")
    again = sum(1 for c in plan.cells if c.status == "run" and c.reason)
    line += f" ({again} of them again: a group with a cell to run is re-measured whole)" if again else ""
    if plan.gflops:
        span = fmt_duration(plan.seconds) + (f" to {fmt_duration(plan.seconds_max)} (--repeats auto: from 3 rounds a "
                                             f"cell to {plan.max_rounds}, within {AUTO_GROUP_BUDGET_S / 60:g} minutes "
                                             "per N and mode)" if plan.seconds_max > plan.seconds else "")
        line += (f"; estimated wall time ~{span} (a model: the MAC formulas at {EFFICIENCY:.0%} of this machine's "
                 f"{plan.gflops:.0f} GFLOP/s matmul, plus each cell's start-up and rounds)")
    out.print(line, highlight=False)
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
