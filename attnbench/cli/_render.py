"""rich consoles for the commands: the terminal's width on a terminal, a fixed page width when piped or captured."""
from __future__ import annotations

from typing import Any

__all__ = ["console", "echo", "WIDE", "PAGE"]

WIDE = 240  # columns of a --wide page: tables are printed whole, never split
PAGE = 80  # columns when not on a terminal (a log, a pipe, CI): every command's output fits it


def console(*, stderr: bool = False, page_width: int = PAGE, wide: bool = False, **kwargs: Any):
    """A rich Console: the terminal's width, or ``page_width`` when not a terminal; ``wide``: WIDE columns."""
    from rich.console import Console

    c = Console(stderr=stderr, **kwargs)
    if "width" not in kwargs and (wide or not c.is_terminal):
        c = Console(stderr=stderr, width=WIDE if wide else page_width, **kwargs)
    return c


def echo(text: str, *, err: bool = False, fg: str | None = None) -> None:
    """``click.secho`` of ``text`` fitted to the page: the terminal's width, or PAGE columns when not a terminal
    (a long warning wraps under itself, a long path loses its middle; ``reporting.format.fit_lines``)."""
    import shutil
    import sys

    import click

    from attnbench.reporting.format import fit_lines

    width = shutil.get_terminal_size((PAGE, 24)).columns if (sys.stderr if err else sys.stdout).isatty() else PAGE
    click.secho("\n".join(fit_lines(text, width)), err=err, fg=fg)
