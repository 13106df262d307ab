"""What the attention's per-epoch diagnostics (the ``diag_*`` columns of the pairs' logs) say, in figures and words.

:func:`diag_ends` reduces them to the first and the last epoch of each method in each comparison, mean over seeds;
:func:`diag_display` is the table at the last epoch; :func:`diag_words` words them for a method that did not learn
("global term 0.3 % of the output at epoch 1, 0.1 % at the end; Newton residual 3.1 at epoch 1, 2.9 at the end").
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from attnbench.reporting.format import DASH, fmt_sig
from attnbench.reporting.frontier import CELL
from attnbench.reporting.logs import DIAG_PREFIX, KEYS, diag_columns

__all__ = ["DIAGS", "diag_ends", "diag_display", "diag_words", "diag_legend"]

# name (after diag_) -> (label, shown in %, what it is), in the order they are told; others follow by name
DIAGS: dict[str, tuple[str, bool, str]] = {
    "global_share": ("global term", True, "SOFT: share of the output's variance from the global kernel term, the "
                                          "rest from the local value conv"),
    "newton_residual": ("Newton residual", False, "SOFT: ‖I − A·M‖_F of the Newton–Raphson inverse (largest over "
                                                  "samples and heads)"),
    "pinv_residual": ("pinv residual", False, "Nyströmformer: the residual of its iterative pseudo-inverse"),
    "entropy": ("entropy", False, "mean entropy of the attention map over log N (1: uniform, 0: one token)"),
    "kernel_mean": ("kernel mean", False, "SOFT: mean of exp(−½ dist²(q̄, Q̃)), the weight a query gives a landmark"),
    "query_norm": ("query norm", False, "SOFT: mean ‖q̄‖"),
    "landmark_norm": ("landmark norm", False, "SOFT: mean ‖Q̃‖ (far from the query norm, the kernel goes to 0)"),
    "attn_grad_norm": ("grad norm", False, "norm of the attention parameters' gradient, mean over the epoch's steps "
                                           "(before clipping)"),
}


def _name(column: str) -> str:
    return column[len(DIAG_PREFIX):]


def _ordered(columns: list[str]) -> list[str]:
    rank = {k: i for i, k in enumerate(DIAGS)}
    return sorted(columns, key=lambda c: (rank.get(_name(c), len(rank)), c))


def _label(column: str) -> str:
    return DIAGS.get(_name(column), (_name(column).replace("_", " "),))[0]


def _fmt(column: str, v: Any) -> str:
    if pd.isna(v):
        return DASH
    return f"{fmt_sig(100 * v, 2)} %" if DIAGS.get(_name(column), ("", False))[1] else fmt_sig(v, 2)


def diag_ends(logs: pd.DataFrame) -> pd.DataFrame:
    """Per comparison and method, each ``diag_*`` at the first (``first_<col>``) and the last epoch (``<col>``)
    of each seed, mean over seeds; empty without diagnostics."""
    cols = _ordered([c for c in diag_columns(logs) if logs[c].notna().any()])
    if not cols:
        return pd.DataFrame(columns=CELL + ["model"])
    ordered = logs.sort_values(KEYS + ["epoch"]).groupby(KEYS, dropna=False)
    first = ordered.head(1).groupby(CELL + ["model"], sort=False)[cols].mean().add_prefix("first_")
    last = ordered.tail(1).groupby(CELL + ["model"], sort=False)[cols].mean()
    return last.join(first).reset_index()


def diag_display(ends: pd.DataFrame) -> pd.DataFrame:
    """The last epoch's figures, one row per comparison and method."""
    cols = [c for c in ends.columns if c.startswith(DIAG_PREFIX)]
    return pd.DataFrame({"task": ends["task"], "N": ends["seq_len"].map(lambda n: f"{int(n):,}"),
                         "model": ends["model"], **{_label(c): ends[c].map(lambda v, c=c: _fmt(c, v)) for c in cols}})


def diag_words(r: pd.Series) -> str:
    """One method's diagnostics in words: each at epoch 1 and at the end (an ``diag_ends`` row)."""
    parts = []
    for c in (c for c in r.index if str(c).startswith(DIAG_PREFIX) and pd.notna(r[c])):
        of = " of the output" if _name(c) == "global_share" else ""
        parts.append(f"{_label(c)} {_fmt(c, r[f'first_{c}'])}{of} at epoch 1, {_fmt(c, r[c])} at the end")
    return "; ".join(parts)


def diag_legend(ends: pd.DataFrame) -> list[str]:
    """What each diagnostic present is, one line each."""
    cols = [c for c in ends.columns if c.startswith(DIAG_PREFIX)]
    return [f"**{_label(c)}**: {DIAGS[_name(c)][2]}" for c in cols if _name(c) in DIAGS]
