"""Did a training run learn? The rule every report and the early stop share (torch-free, pure Python).

A run has *learned* when its best validation top-1 beats chance by a one-sided binomial test at the validation
size: with ``n`` validation images and ``c`` balanced classes, the count of correct answers of a model that
guesses is Binomial(n, 1/c); the run learned when ``P[X >= correct] < alpha`` (0.01). The best epoch is tested,
not the last, so that a run that learned and then diverged still counts as having learned (its final top-1 is
reported beside it). Testing the best of E epochs is a multiple comparison; at alpha = 0.01 and the project's
validation sizes (500 images: chance + 5.4 points) a run at chance passes with probability below E x 0.01, and
the report shows k/n seeds, never a lone verdict.
"""
from __future__ import annotations

import math

__all__ = ["ALPHA", "binomial_sf", "chance_pct", "learned", "learn_threshold_pct", "epochs_to_target",
           "target_pct"]

ALPHA = 0.01


def binomial_sf(k: int, n: int, p: float) -> float:
    """``P[X >= k]`` for ``X ~ Binomial(n, p)``, summed exactly in log space (n up to millions)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def chance_pct(classes: int) -> float:
    """Top-1 of guessing on balanced labels, in %."""
    return 100.0 / classes


def learned(top1_pct: float, n_val: int, classes: int, alpha: float = ALPHA) -> bool:
    """True when ``top1_pct`` % of ``n_val`` images beats chance (1 / ``classes``) at level ``alpha``."""
    if not (n_val >= 1 and classes >= 2) or top1_pct != top1_pct:
        return False
    correct = round(top1_pct * n_val / 100.0)
    return binomial_sf(correct, n_val, 1.0 / classes) < alpha


def learn_threshold_pct(n_val: int, classes: int, alpha: float = ALPHA) -> float:
    """The smallest top-1 (%) that counts as learned at this validation size."""
    p = 1.0 / classes
    lo, hi = round(p * n_val), n_val  # binary search on the count: the tail falls as k grows
    while lo < hi:
        mid = (lo + hi) // 2
        if binomial_sf(mid, n_val, p) < alpha:
            hi = mid
        else:
            lo = mid + 1
    return 100.0 * lo / n_val


def target_pct(classes: int, reference_top1_pct: float) -> float:
    """The "epochs to target" line: chance plus half of the reference method's gain over chance."""
    c = chance_pct(classes)
    return c + 0.5 * (reference_top1_pct - c)


def epochs_to_target(top1_by_epoch: list[float], target: float) -> int | None:
    """The first epoch (1-based) at or above ``target`` %, or None if none reached it."""
    for i, v in enumerate(top1_by_epoch):
        if v == v and v >= target:
            return i + 1
    return None
