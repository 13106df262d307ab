"""rich consoles for the commands: the terminal's width on a terminal, a wide page when piped or captured."""
from __future__ import annotations

from typing import Any

__all__ = ["console"]


def console(*, stderr: bool = False, **kwargs: Any):
    from rich.console import Console

    c = Console(stderr=stderr, **kwargs)
    if not c.is_terminal and "width" not in kwargs:
        c = Console(stderr=stderr, width=160, **kwargs)
    return c
