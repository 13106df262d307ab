"""``attnbench list``: the registered attentions, their default hyper-parameters and complexity."""
from __future__ import annotations

import click

from attnbench.cli._common import user_errors

__all__ = ["list_cmd"]


@click.command("list", short_help="List registered attentions, their defaults and complexity.")
@click.argument("pattern", default="*")
@user_errors
def list_cmd(pattern: str) -> None:
    """List registered attentions matching PATTERN (shell wildcards, e.g. 'soft*').

    Override a default with `attnbench run --hparam MODEL.KEY=VALUE`; add your own attention with
    `--models package.module:Class` or an `attnbench.attentions` entry point.
    """
    from rich.table import Table

    from attnbench.cli._render import console as _console

    from attnbench.registry import CORE_MODELS, get_attention, list_attentions
    from attnbench.skeletons import describe as describe_skeletons

    names = list_attentions(pattern)
    if not names:
        raise ValueError(f"no attention matches {pattern!r}; registered: {', '.join(list_attentions())}")
    table = Table(title="registered attentions (core set marked *)", title_justify="left")
    for col in ("name", "complexity", "defaults", "devices", "description"):
        table.add_column(col, overflow="fold")
    for n in names:
        e = get_attention(n)
        defaults = ", ".join(f"{k}={v}" for k, v in e.defaults.items()) + (", seq_len=N" if e.needs_seq_len else "")
        table.add_row(n + (" *" if n in CORE_MODELS else ""), e.complexity, defaults or "-", ",".join(e.devices),
                      e.description)
    console = _console()
    console.print(table)
    console.print("skeletons (--skeleton):")
    for line in describe_skeletons():
        console.print(f"  {line}", highlight=False)
