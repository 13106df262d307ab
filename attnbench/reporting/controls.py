"""Readings beside the main comparison: the local control and the ablations.

- **local control**: a method trained on a local task (``shapes``) and on a long-range one (``longrange``) at the
  same skeleton and N. Learning the first but not the second says it trains but does not mix globally at that N;
  learning neither, that it does not train in this setting.
- **ablations**: variants that are not a paper's layer (:func:`~attnbench.reporting.load.is_ablation`), each with
  its registry description.
"""
from __future__ import annotations

import pandas as pd

from attnbench.reporting.frontier import top1_cell
from attnbench.reporting.load import description

__all__ = ["LOCAL", "LONG_RANGE", "READINGS", "local_control", "local_control_display", "ablation_lines"]

LOCAL, LONG_RANGE = "shapes", "longrange"  # the tasks' kinds: the class of a shape, the link of two far marks
# (learned the local task, learned the long-range one) -> what that says about the method
READINGS = {(True, False): "trains, but does not mix globally at this N",
            (False, False): "does not train in this setting",
            (True, True): "trains and mixes globally at this N",
            (False, True): "learns the long-range task but not the local one"}


def local_control(acc: pd.DataFrame) -> pd.DataFrame:
    """The methods of ``acc`` (:func:`~attnbench.reporting.frontier.accuracy_across_n`) trained on both kinds of
    task at the same skeleton and N: one row per pairing, the local task's columns suffixed ``_local``, the
    long-range task's ``_long``."""
    kind = acc["task"].astype(str).str.partition(":")[0]
    return acc[kind == LOCAL].merge(acc[kind == LONG_RANGE], on=["skeleton", "seq_len", "model"],
                                    suffixes=("_local", "_long"))


def _learned(status: str) -> bool | None:
    return True if status in ("all", "mixed") else False if status == "none" else None


def _cell(r: pd.Series, suffix: str) -> str:
    row = r[[c for c in r.index if c.endswith(suffix)]].rename(lambda c: c[: -len(suffix)])
    k, n = int(row["learned_k"]), int(row["seeds"])
    return top1_cell(row) + ("" if row["learned_status"] in ("none", "mixed") else f" ({k}/{n} seeds learned)")


def local_control_display(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per method and N: top-1 and seeds learned on each task, and the reading (— when unknown)."""
    readings = [READINGS.get((_learned(a), _learned(b)), "—")
                for a, b in zip(pairs["learned_status_local"], pairs["learned_status_long"])]
    out = pd.DataFrame({"model": pairs["model"], "N": pairs["seq_len"].map(lambda n: f"{int(n):,}"),
                        LOCAL: [_cell(r, "_local") for _, r in pairs.iterrows()],
                        LONG_RANGE: [_cell(r, "_long") for _, r in pairs.iterrows()], "reading": readings})
    if len(pairs[["task_local", "task_long"]].drop_duplicates()) > 1:  # several levels: say which was which
        out.insert(2, "tasks", pairs["task_local"] + " / " + pairs["task_long"])
    return out


def ablation_lines(models: list[str]) -> list[str]:
    """One line per ablation: its name and what it is (the registry's description), or its name alone."""
    return [f"`{m}`" + (f": {description(m)}" if description(m) else "") for m in models]
