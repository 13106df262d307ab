"""Progress of ``attnbench run``: a rich bar showing the running cell on a terminal, plain lines elsewhere.

When stderr is not a terminal (nohup, SLURM, CI logs) a bar would be redrawn into the log as control codes; there,
every finished cell is one line: ``[ 7/30] soft N=2048 infer: ok 5.21 ms (3 rounds 4.9-5.6)  elapsed 1:05, ETA
3:10``. The ETA counts cell-rounds (``attnbench.sweep.OnStart``): elapsed time per round done, times the rounds
left, retries included once they are planned.
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
    """``ok 5.21 ms (3 rounds 4.9-5.6)``, ``ok 5.21 ms, untrusted: load ...`` or ``timeout: <reason>``."""
    status = row.get("status", "?")
    lat = row.get("latency_ms_median")
    if status != "ok" or not isinstance(lat, (int, float)):
        reason = str(row.get("reason") or "").splitlines()[0][:100] if row.get("reason") else ""
        return f"{status}: {reason}" if reason else str(status)
    text = f"ok {lat:.3g} ms"
    lo, hi, n = row.get("latency_rounds_min"), row.get("latency_rounds_max"), row.get("rounds")
    if isinstance(n, (int, float)) and n and isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        text += f" ({int(n)} round{'s' if int(n) != 1 else ''} {lo:.3g}-{hi:.3g})"
    if row.get("trusted") == 0:
        text += f", untrusted: {row.get('untrusted_reason')}"
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

    def line(spec: Any, row: dict[str, Any], done: int, total: int) -> str:
        width = len(str(total))
        return (f"[{done:>{width}}/{total}] {cell_label(spec, row)}: {cell_figure(row)}  "
                f"elapsed {fmt_duration(eta.elapsed())}, ETA {fmt_duration(eta.left())}")

    kwargs = dict(resume=resume, retry_failed=retry_failed)
    if not console.is_terminal:
        def on_cell_plain(spec: Any, row: dict[str, Any], done: int, total: int) -> None:
            echo(line(spec, row, done, total))
        return run_sweep(config, run_dir, on_cell=on_cell_plain, on_start=on_start, **kwargs)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
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
                progress.console.print(f"[yellow]{cell_label(spec, row)}: {cell_figure(row)}[/]")

        return run_sweep(config, run_dir, on_cell=on_cell_bar, on_start=on_start_bar, **kwargs)
