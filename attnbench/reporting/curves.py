"""Learning curves (``curves.png``): validation top-1 against epoch, from the pairs' per-epoch logs.

One panel per comparison (skeleton, task, N); each method in its colour of :func:`~attnbench.reporting.plots.
method_styles`, one thin line per seed and a bold line for the mean over seeds (a seed that stopped early counts at
its last value), and a dashed line at chance, labelled so, where the number of classes is known.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.learning import chance_pct
from attnbench.reporting.frontier import CELL
from attnbench.reporting.load import select
from attnbench.reporting.plots import _mpl, method_styles, save_figure

__all__ = ["CURVES_PNG", "CHANCE_LABEL", "draw_curves", "plot_curves"]

CURVES_PNG = "curves.png"
CHANCE_LABEL = "chance"


def _mean_curve(runs: pd.DataFrame) -> pd.Series:
    """Mean top-1 per epoch over seeds, each seed held at its last value after it stopped."""
    wide = runs.pivot_table(index="epoch", columns="seed", values="top1", aggfunc="last").sort_index()
    return wide.ffill().mean(axis=1)


def _panel(ax: Any, logs: pd.DataFrame, classes: Any, styles: dict[str, Any]) -> None:
    for model, runs in logs.groupby("model", sort=False):
        color = styles[model].color
        for _, seed in runs.groupby("seed"):
            seed = seed.sort_values("epoch")
            ax.plot(seed["epoch"], seed["top1"], color=color, lw=0.8, alpha=0.45)
        mean = _mean_curve(runs)
        ax.plot(mean.index, mean.values, color=color, lw=2.4, label=model)
    if pd.notna(classes):
        chance = chance_pct(int(classes))
        ax.axhline(chance, color="0.35", ls="--", lw=1, label=CHANCE_LABEL)
        ax.annotate(CHANCE_LABEL, (1.0, chance), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8, color="0.35")
    ax.xaxis.set_major_locator(_mpl().matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="best")


def draw_curves(logs: pd.DataFrame, acc: pd.DataFrame | None = None, *, title: str | None = None) -> Any:
    """The Figure of ``logs`` (:func:`~attnbench.reporting.logs.pair_logs`), one panel per comparison; the chance
    line where ``acc`` (:func:`~attnbench.reporting.frontier.accuracy_across_n`) knows the comparison's classes.
    None without epochs."""
    logs = logs[logs["top1"].notna()] if not logs.empty else logs
    if logs.empty:
        return None
    classes = acc.groupby(CELL)["classes"].max().to_dict() if acc is not None and not acc.empty else {}
    plt = _mpl()
    cells = list(dict.fromkeys(zip(*(logs[c] for c in CELL))))
    cols = min(3, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False, dpi=110)
    styles = method_styles(logs["model"].astype(str))
    for ax, cell in zip(axes.flat, cells):
        _panel(ax, select(logs, dict(zip(CELL, cell))), classes.get(cell), styles)
        ax.set_title(f"{cell[0]}, {cell[1]}, N={int(cell[2]):,}", fontsize=10)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    fig.suptitle((title or "Validation top-1 per epoch") + "\n(thin: each seed; bold: mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(logs: pd.DataFrame, path: str | Path, acc: pd.DataFrame | None = None, *,
                title: str | None = None) -> Path | None:
    """Draw :func:`draw_curves` into ``path``; returns it, or None when there is nothing to draw."""
    return save_figure(draw_curves(logs, acc, title=title), path)
