"""``attnbench report``: re-render one run, or join several runs/shards into one report."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from attnbench.cli._common import user_errors

__all__ = ["report_cmd", "join_runs", "check_out"]


def check_out(run_dirs: list[Path], out: Path, *, joining: bool) -> None:
    """Refuse an ``out`` whose writing would destroy results: one of the runs being joined (``joining``), or a folder
    holding another run's results.csv. Re-rendering one run in place is fine. A one-line ValueError, before anything
    is written."""
    inputs = {d.resolve() for d in run_dirs}
    if out.resolve() in inputs:
        if joining:
            raise ValueError(f"--out {out} is one of the runs being joined: its results.csv and meta.json would be "
                             "replaced; choose a new folder")
        return
    if (out / "results.csv").exists():
        raise ValueError(f"--out {out} holds another run's results.csv, which a report there would mix with; choose "
                         "a new or empty folder")


def join_runs(run_dirs: list[Path], out: Path) -> Path:
    """Write the joined rows of ``run_dirs`` (shards of one sweep, or runs to compare) as a run directory ``out``."""
    from attnbench.reporting import load_runs
    from attnbench.results import ALL_COLUMNS, command_line, write_meta, write_parquet

    check_out(run_dirs, out, joining=True)
    df, metas = load_runs(run_dirs)
    out.mkdir(parents=True, exist_ok=True)
    # relative to the joined folder, so that the rows find their logs in any clone of it
    df["run_dir"] = df["run_dir"].map(lambda p: os.path.relpath(p, out.resolve()) if isinstance(p, str) else p)
    cols = ALL_COLUMNS + [c for c in df.columns if c not in ALL_COLUMNS and c != "run"] + ["run"]
    tmp = out / "results.csv.tmp"
    df[cols].to_csv(tmp, index=False)
    tmp.replace(out / "results.csv")
    write_parquet(out, df[cols])
    meta = {"joined_from": [str(d) for d in run_dirs], "runs": metas, "command": command_line()}
    write_meta(out, json.loads(json.dumps(meta, default=str)))
    return out


def _check_outputs(out: Path, formats: list[str], *, plots: bool, joining: bool) -> None:
    """Every file the report will write in ``out`` must be writable, before any is (``results.check_writable``)."""
    from attnbench.reporting.api import HTML_NAME, REPORT_NAME
    from attnbench.results import RUN_FILES, check_writable

    names = [*(RUN_FILES if joining else ()), *([REPORT_NAME] if "md" in formats else []),
             *([HTML_NAME] if "html" in formats else []), *(["*.png"] if plots else [])]
    check_writable(out, names, field="out")


@click.command("report", short_help="Re-render a run's report, or join runs/shards into one.")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write report.md and plots  [default: the run directory; for several runs, "
                   "a new joined-<timestamp> folder beside the first]")
@click.option("--baseline", default=None, help="Reference model for the relative table  [default: softmax, else "
                                                "softmax-math, else softmax-xformers]")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--format", "formats", default="md,html", show_default=True, metavar="md,html",
              help="Documents to write: report.md, report.html (the same sections with the plots embedded: one "
                   "self-contained file to share), or both.")
@click.option("--wide", is_flag=True, help="Print every table whole on a wide page (default: split wide tables to "
                                           "fit the terminal, or 80 columns when piped).")
@user_errors
def report_cmd(run_dirs: tuple[Path, ...], out: Path | None, baseline: str | None, no_plots: bool,
               formats: str, wide: bool) -> None:
    """Re-render report.md and plots for RUN_DIR, or join several RUN_DIRs (e.g. shards) into one report.

    Several runs are joined into one run directory (results.csv, results.parquet, meta.json listing its sources)
    before rendering, so the joined report can itself be re-rendered or resumed from. The terminal shows the tables
    (a table wider than the terminal is split, repeating the model column), the legend, and the verdict last.

    \b
    Examples:
      attnbench report results/20250101-120000-layer-core
      attnbench report results/big-s0 results/big-s1 --out results/big
      attnbench report results/cpu-run results/gpu-run --baseline softmax-math
      attnbench report results/my-run --format html --out /tmp/share  # one file
    """
    from attnbench.reporting import load_runs, report, rich_tables
    from attnbench.reporting.api import parse_formats

    formats = parse_formats(formats)  # before anything is read or written
    unique: dict[Path, Path] = {}
    for d in run_dirs:  # the same folder twice (however spelt) is one run
        unique.setdefault(d.resolve(), d)
    dirs = list(unique.values())
    load_runs(dirs)  # every input is checked (missing, corrupt) before anything is written
    if out is not None:
        check_out(dirs, out, joining=len(dirs) > 1)
    if len(dirs) > 1:
        out = out or dirs[0].parent / f"joined-{time.strftime('%Y%m%d-%H%M%S')}"
    _check_outputs(out or dirs[0], formats, plots=not no_plots, joining=len(dirs) > 1)
    if len(dirs) > 1:
        try:
            join_runs(dirs, out)
        except OSError as e:
            raise ValueError(f"cannot write to --out {out}: {e.strerror or e}") from None
        src = out
    else:
        src = dirs[0]
    try:
        rep = report(src, out=out or src, baseline=baseline, plots=not no_plots, formats=formats)
    except OSError as e:
        raise ValueError(f"cannot write the report to {out or src}: {e.strerror or e}") from None
    from attnbench.cli._render import console as _console
    from attnbench.cli._render import echo

    console = _console(wide=wide)
    for renderable in rich_tables(rep, wide=wide):
        console.print(renderable)
    echo(f"wrote {', '.join(p.name for p in rep.files)} in {rep.out_dir}", err=True)
