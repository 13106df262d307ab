"""The ``attnbench`` command line: a thin click shell over the Python API (``attnbench.run_sweep``, ``report``, ...).

Every command parses its options, calls one API function and renders with rich. torch, timm and pandas are
imported inside command bodies, so ``attnbench --help`` stays fast. Bad input ends in one line on stderr and exit
code 2; unexpected errors in one line and exit code 1 (``ATTNBENCH_DEBUG=1`` shows the traceback).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from typing import Any

import click

from attnbench import __version__
from attnbench.cli._common import USAGE_EXIT, abort

__all__ = ["HELP_WIDTH", "main"]

HELP_WIDTH = 80  # every command's --help fits 80 columns (click wraps at 2 less); a \b block must fit it by hand

# commands whose module is imported only when the command runs; (module, attribute, one-line help)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("attnbench.cli.train", "train",
              "Train a ViT with a swapped attention (timm recipe, DDP) and append top-1/top-5 rows."),
}


class AttnbenchGroup(click.Group):
    """A click group with lazily imported commands and one-line errors for every usage mistake."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [n for n, (mod, _, _) in LAZY_COMMANDS.items() if _module_exists(mod)]
        return sorted(set(super().list_commands(ctx)) | set(lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY_COMMANDS:
            return cmd
        mod_name, attr, _ = LAZY_COMMANDS[name]
        if not _module_exists(mod_name):
            return None
        try:
            return getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            if os.environ.get("ATTNBENCH_DEBUG"):
                raise
            abort(f"'attnbench {name}' is unavailable: {str(e).splitlines()[0]}", 1)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # lazy commands show their static help, so `attnbench --help` imports nothing heavy
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS and super().get_command(ctx, name) is None:
                rows.append((name, LAZY_COMMANDS[name][2]))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=formatter.width - 6 - 12)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        warnings.showwarning = _one_line_warning
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            cmd = e.ctx.command_path if e.ctx is not None else "attnbench"
            abort(f"{e.format_message().splitlines()[0]} (see '{cmd} --help')", USAGE_EXIT)
        except click.ClickException as e:
            abort(e.format_message().splitlines()[0], e.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - the one place that turns a bug into one line
            if os.environ.get("ATTNBENCH_DEBUG"):
                raise
            msg = str(e).splitlines()[0] if str(e) else ""
            abort(f"internal error: {type(e).__name__}: {msg} (set ATTNBENCH_DEBUG=1 for the traceback)", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


_WARNED: set[str] = set()


def _one_line_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Warnings reach a CLI user as one line each, and a given one once per command."""
    line = f"warning: {str(message).splitlines()[0] if str(message) else category.__name__}"
    if line not in _WARNED:
        _WARNED.add(line)
        click.echo(line, err=True)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@click.group(cls=AttnbenchGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH})
@click.version_option(__version__, prog_name="attnbench")
def main() -> None:
    """Which attention should I use at my sequence length, on my hardware, under my memory budget?

    attnbench measures parameters, FLOPs (fvcore MACs, audited against closed-form formulas), peak memory and
    latency of SOFT, Performer, Linformer, Nystromformer and exact softmax attention inside identical ViT
    skeletons, across sequence lengths, and writes CSV/parquet results, a markdown report and log-log plots.

    \b
    Examples:
      attnbench run                     # the default sweep (CPU, minutes)
      attnbench run --models soft,performer --seq 1024..16384
      attnbench run --models all --seq 1024..16384 --timeout 120
      attnbench run --shard 0/4 --name big-s0 ...   # one of 4 array jobs
      attnbench report results/big-s0 results/big-s1 ...   # join shards
      attnbench compare results/before results/after --fail-above 10
      attnbench list
    """


def _register() -> None:
    from attnbench.cli.compare import compare_cmd
    from attnbench.cli.list import list_cmd
    from attnbench.cli.report import report_cmd
    from attnbench.cli.run import run

    for cmd in (run, report_cmd, compare_cmd, list_cmd):
        main.add_command(cmd)


_register()
