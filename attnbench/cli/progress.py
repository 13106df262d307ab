"""Progress of ``attnbench run``: a rich bar showing the running cell on a terminal, plain lines elsewhere.

When stderr is not a terminal (nohup, SLURM, CI logs) a bar would be redrawn into the log as control codes; there,
every finished cell is one line: ``[ 7/30] soft N=2048 infer: ok 5.21 ms, rounds 4.9–5.6 (3)  elapsed 1:05, ETA
3:10``, wrapped to the page (80 columns) when a failure's reason or a long name would widen it. An untrusted cell
names the rule it failed (``untrusted (load)``); the report's Trust section has the figures. The ETA counts
cell-rounds (``attnbench.sweep.OnStart``): elapsed time per round done, times the rounds left, retries included
once they are planned.
"""
from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["fmt_duration", "cell_label", "cell_figure", "Eta", "run_with_progress"]


def fmt_duration(seconds: float | None) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``; None -> ``?``."""
    if seconds is None:
        return "?"
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def cell_label(spec: Any, row: dict[str, Any] | None = None) -> str:
    """``soft N=2048 infer`` (from the spec, or from the row when there is no spec)."""
    src = row if spec is None else {"model": spec.model, "seq_len": spec.seq_len, "mode": spec.mode}
    return f"{src.get('model')} N={src.get('seq_len')} {src.get('mode')}"


def cell_figure(row: dict[str, Any]) -> str:
    """``ok 5.21 ms, rounds 4.9–5.6 (3)``, ``ok 5.21 ms, untrusted (load)`` or ``timeout: <reason>`` (figures as
    the report shows them: ``attnbench.reporting.format``)."""
    from attnbench.reporting.format import DASH, fmt_rounds, fmt_sig

    status = row.get("status", "?")
    lat = row.get("latency_ms_median")
    if status != "ok" or not isinstance(lat, (int, float)):
        reason = str(row.get("reason") or "").splitlines()[0][:100] if row.get("reason") else ""
        return f"{status}: {reason}" if reason else str(status)
    text = f"ok {fmt_sig(lat, 3)} ms"
    rounds = fmt_rounds(row.get("latency_rounds_min"), row.get("latency_rounds_max"), row.get("rounds"),
                        row.get("rounds_excluded"))
    text += f", rounds {rounds}" if rounds != DASH else ""
    if row.get("trusted") == 0:  # the rule's name; its figures are in the report's Trust section
        text += f", untrusted ({str(row.get('untrusted_reason') or '?').split(':')[0]})"
    return text


class Eta:
    """Elapsed time and an estimate of the time left, from the cell-rounds done and planned."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.t0 = clock, clock()
        self.done = self.planned = 0

    def update(self, done: int, planned: int) -> None:
        self.done, self.planned = done, planned

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def left(self) -> float | None:
        if self.done <= 0:
            return None
        return self.elapsed() / self.done * max(0, self.planned - self.done)


def run_with_progress(run_sweep: Callable[..., Any], config: Any, run_dir: Any, *, resume: bool,
                      retry_failed: bool, console: Any, echo: Callable[[str], None]) -> Any:
    """Call ``run_sweep`` with progress on ``console`` (rich bar) when it is a terminal, else plain lines via
    ``echo`` (one per finished cell, a failed cell's reason included)."""
    eta = Eta()

    def on_start(spec: Any, round_index: int, done: int, planned: int) -> None:
        eta.update(done, planned)

    def lines(spec: Any, row: dict[str, Any], done: int, total: int) -> list[str]:
        """One line per cell; a cell that would not fit the page wraps, the times on a line of their own."""
        from attnbench.reporting.format import fit_lines

        head = f"[{done:>{len(str(total))}}/{total}] {cell_label(spec, row)}: {cell_figure(row)}"
        times = f"elapsed {fmt_duration(eta.elapsed())}, ETA {fmt_duration(eta.left())}"
        if len(head) + 2 + len(times) <= console.width:
            return [f"{head}  {times}"]
        return fit_lines(head, console.width) + [f"    {times}"]

    kwargs = dict(resume=resume, retry_failed=retry_failed)
    if not console.is_terminal:
        def on_cell_plain(spec: Any, row: dict[str, Any], done: int, total: int) -> None:
            for text in lines(spec, row, done, total):
                echo(text)
        return run_sweep(config, run_dir, on_cell=on_cell_plain, on_start=on_start, **kwargs)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    with Progress(TextColumn("{task.description}", style="progress.description", markup=False), BarColumn(),
                  TextColumn("{task.fields[cells]}"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                  console=console, transient=False) as progress:
        task = progress.add_task("starting", total=None, cells="", eta="?")

        def on_start_bar(spec: Any, round_index: int, done: int, planned: int) -> None:
            on_start(spec, round_index, done, planned)
            progress.update(task, completed=done, total=planned, eta=fmt_duration(eta.left()),
                            description=f"{cell_label(spec)} (round {round_index + 1})")

        def on_cell_bar(spec: Any, row: dict[str, Any], done: int, total: int) -> None:
            progress.update(task, cells=f"{done}/{total} cells")
            if row.get("status") != "ok" or row.get("trusted") == 0:
                # a Text, not markup: soft[landmarks=64] is a name, not a style
                progress.console.print(Text(f"{cell_label(spec, row)}: {cell_figure(row)}", style="yellow"))

        return run_sweep(config, run_dir, on_cell=on_cell_bar, on_start=on_start_bar, **kwargs)
