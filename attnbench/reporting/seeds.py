"""What the seeds of a training pair say together: the 95 % Student-t interval of a mean, and whether each seed
learned (the rule of :mod:`attnbench.learning`, with the fallbacks older rows need). Torch- and scipy-free.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import pandas as pd

from attnbench.learning import learned

__all__ = ["T975", "t975", "mean_interval", "seed_learned"]

# t_{0.975, dof} for dof = 1..30 (two-sided 95 %); beyond, the Cornish-Fisher series of the normal quantile
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z975 = 1.959964


def t975(dof: int) -> float:
    """The 97.5 % quantile of Student's t with ``dof`` degrees of freedom (>= 1); within 1e-3 of the exact value."""
    if dof < 1:
        raise ValueError(f"dof must be at least 1, got {dof}")
    if dof <= len(T975):
        return T975[dof - 1]
    z = Z975
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    return z + g1 / dof + g2 / dof ** 2 + g3 / dof ** 3


def mean_interval(values: Iterable[float]) -> tuple[float, float]:
    """``(mean, half-width)`` of the 95 % Student-t interval of the mean, ``t_{0.975, n-1} * s / sqrt(n)``, over
    the finite values; the half-width is NaN with fewer than two (one seed has no spread), both NaN with none."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return math.nan, math.nan
    mean = math.fsum(v) / len(v)
    return mean, (t975(len(v) - 1) * statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else math.nan)


def seed_learned(row: pd.Series) -> float:
    """1.0 when the training row's seed learned, 0.0 when not, NaN when unknown: the row's ``learned``; for a row
    written before that column, the test on its best top-1 (else its final one) where the validation size and the
    classes are known."""
    if pd.notna(row.get("learned")):
        return float(row["learned"])
    n_val, classes = row.get("val_images"), row.get("classes")
    if pd.isna(n_val) or pd.isna(classes):
        return math.nan
    top1 = row.get("best_top1") if pd.notna(row.get("best_top1")) else row.get("top1")
    return float(learned(float(top1), int(n_val), int(classes))) if pd.notna(top1) else math.nan
