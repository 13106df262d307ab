"""Progress for the training loop: rich bars (epoch and step, loss, throughput, ETA) on a terminal, plain log
lines elsewhere, nothing on ranks other than 0. A plain line fits the page: the terminal's width, or
:data:`~attnbench.reporting.format.PAGE` columns in a log or a pipe (a longer one wraps; a long dataset spec or path
loses its middle)."""
from __future__ import annotations

import shutil
import sys
import time
from typing import Any

from attnbench.reporting.format import PAGE, fit_lines, fmt_sig

__all__ = ["make_progress"]


class _Quiet:
    def __enter__(self) -> "_Quiet":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def start_epoch(self, epoch: int, steps: int) -> None:
        pass

    def step(self, i: int, loss: float, img_s: float, lr: float) -> None:
        pass

    def end_epoch(self, row: dict[str, Any]) -> None:
        pass

    def info(self, text: str) -> None:
        pass


def _summary(row: dict[str, Any], total: int) -> str:
    ema = f" ema_top1 {row['ema_top1']:.2f}" if row.get("ema_top1") is not None else ""
    return (f"epoch {row['epoch'] + 1}/{total} loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
            f"top1 {row['top1']:.2f} top5 {row['top5']:.2f}{ema} lr {row['lr']:.3g} "
            f"{fmt_sig(row['images_per_s'], 3)} img/s {fmt_sig(row['epoch_s'], 3)} s")


def _page() -> int:
    return shutil.get_terminal_size((PAGE, 24)).columns if sys.stdout.isatty() else PAGE


class _Plain(_Quiet):
    def __init__(self, total_epochs: int, log_interval: int, width: int | None = None) -> None:
        self.total, self.every = total_epochs, max(1, log_interval)
        self.width = width or _page()

    def _print(self, text: str) -> None:
        print("\n".join(fit_lines(text, self.width)), flush=True)

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.epoch, self.steps, self.t0 = epoch, steps, time.perf_counter()

    def step(self, i: int, loss: float, img_s: float, lr: float) -> None:
        if (i + 1) % self.every == 0 or i + 1 == self.steps:
            eta = (time.perf_counter() - self.t0) / (i + 1) * (self.steps - i - 1)
            self._print(f"epoch {self.epoch + 1}/{self.total} step {i + 1}/{self.steps} loss {loss:.4f} "
                        f"lr {lr:.3g} {img_s:.1f} img/s eta {eta:.0f}s")

    def end_epoch(self, row: dict[str, Any]) -> None:
        self._print(_summary(row, self.total))

    def info(self, text: str) -> None:
        self._print(text)


class _Rich(_Quiet):
    def __init__(self, total_epochs: int, start_epoch: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console()
        self.total = total_epochs
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=self.console)
        self.epochs = self.bars.add_task("epochs", total=total_epochs, completed=start_epoch, stats="")
        self.steps = self.bars.add_task("steps", total=1, stats="")

    def __enter__(self) -> "_Rich":
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.__exit__(*exc)

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.bars.reset(self.steps, total=steps, description=f"epoch {epoch + 1}", stats="")

    def step(self, i: int, loss: float, img_s: float, lr: float) -> None:
        self.bars.update(self.steps, completed=i + 1, stats=f"loss {loss:.4f} {img_s:.0f} img/s lr {lr:.2g}")

    def end_epoch(self, row: dict[str, Any]) -> None:
        self.console.print(_summary(row, self.total))
        self.bars.update(self.epochs, completed=row["epoch"] + 1, stats=f"top1 {row['top1']:.2f}")

    def info(self, text: str) -> None:
        self.console.print(text)


def make_progress(mode: str, rank: int, total_epochs: int, start_epoch: int, log_interval: int) -> _Quiet:
    """``mode``: ``auto`` (rich when stdout is a terminal), ``rich`` or ``plain``. Ranks other than 0 stay quiet."""
    if rank != 0:
        return _Quiet()
    if mode == "rich" or (mode == "auto" and sys.stdout.isatty()):
        return _Rich(total_epochs, start_epoch)
    return _Plain(total_epochs, log_interval)
