"""``attnbench compare RUN_A RUN_B``: latency B/A per matching cell, with its interval and a verdict."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from attnbench.cli._common import user_errors

__all__ = ["compare_cmd"]


@click.command("compare", short_help="Compare two runs cell by cell: latency B/A with an interval and a verdict.")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--fail-above", type=float, default=None, metavar="PCT",
              help="Exit 1 when a cell is slower in RUN_B beyond the noise (its interval above 1) by more than PCT "
                   "percent (0 to 10000); for CI.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Also write the comparison as markdown to this file.")
@user_errors
def compare_cmd(run_a: str, run_b: str, fail_above: float | None, out: str | None) -> None:
    """Compare run RUN_B against run RUN_A, cell by cell (model, skeleton, N, batch, dtype, device, mode, hparams).

    For each cell both runs measured: B latency / A latency with a 95 % bootstrap interval over each run's rounds,
    and a verdict: faster, slower, within noise (interval includes 1), or untrusted (either cell failed the trust
    rules). Runs from different machines or torch versions are compared with a warning naming the difference.

    \b
    Examples:
      attnbench compare results/before results/after
      # in CI: exit 1 on a regression of more than 10 %, and keep the table
      attnbench compare results/main results/pr --fail-above 10 --out cmp.md
    """
    from rich.table import Table
    from rich.text import Text

    from attnbench.cli._render import console as _console
    from attnbench.cli._render import echo
    from attnbench.compare import check_fail_above, compare_markdown, compare_runs, fmt_num, regressions
    from attnbench.results import check_writable

    if fail_above is not None:  # a threshold that could never fire must fail here, not pass the CI job
        check_fail_above(fail_above)
    if out:
        check_writable(Path(out).parent, [Path(out).name], field="out")
    cmp = compare_runs(run_a, run_b)
    for w in cmp.warnings:
        echo(f"warning: {w}", fg="yellow", err=True)
    table = Table(title=f"B = {run_b} against A = {run_a}: latency B/A (> 1: B slower), 95 % bootstrap interval")
    for col in ("model", "N", "mode", "A ms", "B ms", "B/A", "interval", "verdict"):
        table.add_column(col, justify="right" if col in ("N", "A ms", "B ms", "B/A") else "left")
    colors = {"slower": "red", "faster": "green", "untrusted": "yellow"}
    for _, r in cmp.table.iterrows():
        v = str(r["verdict"])
        table.add_row(Text(str(r["model"])), str(r["seq_len"]), str(r["mode"]),  # a name is not rich markup
                      *(fmt_num(r[c]) for c in ("a_ms", "b_ms", "ratio")), f"{fmt_num(r['lo'])}–{fmt_num(r['hi'])}",
                      Text(v, style=colors.get(v, "")))
    _console().print(table)
    if out:
        Path(out).write_text(compare_markdown(cmp))
        echo(f"wrote {out}", err=True)
    if fail_above is not None:
        bad = regressions(cmp, fail_above)
        if not bad.empty:
            worst = bad.sort_values("ratio").iloc[-1]
            echo(f"regression: {len(bad)} cell(s) slower by more than {fail_above:g} % beyond the noise; worst "
                 f"{worst['model']} N={worst['seq_len']} {worst['mode']}: {fmt_num(worst['ratio'])}× "
                 f"({fmt_num(worst['lo'])}–{fmt_num(worst['hi'])})", fg="red", err=True)
            sys.exit(1)
