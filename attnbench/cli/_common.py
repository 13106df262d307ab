"""What every command shares: one way out for bad input (one line on stderr, exit 2, no traceback)."""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, NoReturn

import click

__all__ = ["abort", "user_errors"]

USAGE_EXIT = 2


def abort(message: str, code: int = USAGE_EXIT) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the API's ValueError/FileNotFoundError/PermissionError into ``abort``; ATTNBENCH_DEBUG=1 re-raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
            if os.environ.get("ATTNBENCH_DEBUG"):
                raise
            abort(str(e).splitlines()[0] if str(e) else type(e).__name__)

    return wrapper
