"""``attnbench list``: the registered attentions (defaults, complexity), the skeletons, and the results columns."""
from __future__ import annotations

import shutil
import sys
import textwrap

import click

from attnbench.cli._common import user_errors

__all__ = ["list_cmd"]

PAGE = 80  # the width when not on a terminal: a block per entry, wrapped at words, never a cut word


@click.command("list", short_help="List registered attentions, skeletons and results columns.")
@click.argument("pattern", default="*")
@click.option("--columns", is_flag=True, help="List the results columns (unit and meaning) instead.")
@user_errors
def list_cmd(pattern: str, columns: bool) -> None:
    """List registered attentions matching PATTERN (shell wildcards, e.g. 'soft*'), then the skeletons.

    Override a default with `attnbench run --hparam MODEL.KEY=VALUE`; add your own attention with
    `--models package.module:Class` or an `attnbench.attentions` entry point.
    """
    width = shutil.get_terminal_size((PAGE, 24)).columns if sys.stdout.isatty() else PAGE
    click.echo("\n".join(_columns(pattern, width) if columns else _attentions(pattern, width)))


def _wrap(text: str, width: int, indent: str = "    ") -> list[str]:
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def _attentions(pattern: str, width: int) -> list[str]:
    from attnbench.registry import CORE_MODELS, get_attention, list_attentions
    from attnbench.skeletons import describe as describe_skeletons

    names = list_attentions(pattern)
    if not names:
        raise ValueError(f"no attention matches {pattern!r}; registered: {', '.join(list_attentions())}")
    lines = ["registered attentions (* = core set; -p MODEL.KEY=VALUE overrides a default)", ""]
    for n in names:
        e = get_attention(n)
        defaults = ", ".join(f"{k}={v}" for k, v in e.defaults.items()) + (", seq_len=N" if e.needs_seq_len else "")
        lines += _wrap(f"{n + (' *' if n in CORE_MODELS else '')}  {e.complexity}  [{', '.join(e.devices)}]",
                       width, indent="")
        lines += _wrap(e.description, width) + _wrap(f"defaults: {defaults or '-'}", width)
    lines += ["", "skeletons (--skeleton):"]
    for line in describe_skeletons():
        lines += _wrap(line, width, indent="  ")
    lines += ["", "results columns: attnbench list --columns"]
    return lines


def _columns(pattern: str, width: int) -> list[str]:
    import fnmatch

    from attnbench.results import COLUMN_SPECS

    specs = [c for c in COLUMN_SPECS.values() if fnmatch.fnmatch(c.name, pattern)]
    if not specs:
        raise ValueError(f"no results column matches {pattern!r}; columns: {', '.join(COLUMN_SPECS)}")
    lines = ["results columns (results.csv / results.parquet; key columns marked *)", ""]
    for c in specs:
        unit = f" [{c.unit}]" if c.unit else ""
        lines += _wrap(f"{c.name}{' *' if c.key else ''}{unit}", width, indent="")
        lines += _wrap(c.doc or "-", width)
    return lines
