"""What every command shares: one way out for bad input (one line on stderr, exit 2, no traceback), and the one
table from config fields to command-line flags."""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, NoReturn

import click

from attnbench.config import ConfigError

__all__ = ["abort", "user_errors", "flag", "FLAGS", "interruption"]

USAGE_EXIT = 2

# config field -> flag, where the flag is not "--" + the field with dashes (``flag``): how a ConfigError, which
# names fields (``attnbench.config``), reads on the command line. Fields of SweepConfig, TrainConfig and run_sweep.
FLAGS: dict[str, str] = {"seq_lens": "--seq", "modes": "--mode", "hparams": "--hparam", "run_dir": "--out",
                         "formats": "--format"}


def flag(field: str) -> str:
    """The command-line flag that sets config ``field`` (``min_time`` -> ``--min-time``)."""
    return FLAGS.get(field) or "--" + field.replace("_", "-")


def interruption(e: KeyboardInterrupt) -> tuple[int, str]:
    """(exit code, what happened) for Ctrl-C (130) or SIGTERM (``runner.Terminated``, 128 + 15)."""
    from attnbench.runner import Terminated

    return (143, "terminated (SIGTERM)") if isinstance(e, Terminated) else (130, "interrupted")


def abort(message: str, code: int = USAGE_EXIT) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the API's ValueError and the file errors a user's paths cause into ``abort`` (a ConfigError in the words
    of the flags); ATTNBENCH_DEBUG=1 re-raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
            if os.environ.get("ATTNBENCH_DEBUG"):
                raise
            text = e.render(flag) if isinstance(e, ConfigError) else str(e)
            abort(text.splitlines()[0] if text else type(e).__name__)

    return wrapper
