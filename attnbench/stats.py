"""The statistics of a sweep in one torch-free place: rounds, trust, paired ratios and their intervals.

A cell is timed in several **rounds** (``--repeats``); within a round the cells of one (skeleton, N, mode) run back
to back, so that a ratio taken *within* a round (a **paired** ratio) sees the same machine on both sides.

* **Cell latency**: the median of its rounds' medians; its spread is the rounds' min–max and the median of the
  rounds' within-round IQRs.
* **Rounds that count**: a round in which other processes took more of the cores than the cell left free
  (``cores - threads``, plus :data:`LOAD_TOL` core) is *disturbed*: recorded, but not used (:func:`disturbed`).
* **Trust** (:data:`TRUST_RULES`): a cell is trusted when, over the rounds that count, it has at least ``repeats``
  rounds (else rule ``load`` if rounds were disturbed, ``rounds`` if rounds failed), at least
  :data:`MIN_TIMED_BLOCKS` timed blocks (rule ``blocks``), and its round medians agree within :data:`SPREAD_MAX`
  (rule ``spread``: median absolute deviation over median; one round: its IQR over its median).
* **Speed-up**: per round, baseline latency / model latency over the rounds both count; the median of those, with
  an exact **order-statistic** (distribution-free) confidence interval for the median (:func:`median_interval`):
  the widest-needed pair of order statistics whose binomial coverage reaches :data:`CONFIDENCE`; with fewer than 6
  pairs no pair reaches 95 %, and the interval is min–max with its actual coverage (3 rounds: 75 %).
* **Enough rounds** (``--repeats auto``): a speed-up interval is narrow enough when its half-width over its median
  (:func:`interval_halfwidth`) is at most ``--target-ci``; the sweep adds rounds until it is (``sweep._next_round``).
* **Comparing two runs** (``attnbench compare``): rounds of different runs are not paired, so the ratio of medians
  B/A gets a percentile **bootstrap** interval with a fixed seed (:func:`bootstrap_ratio`).
* **Break-even N**: where the speed-up crosses 1, interpolated log-log, with the N where its interval's ends cross
  1 as the interval (:func:`break_even`); "not determined" when the intervals include 1 on both sides of it.
"""
from __future__ import annotations

import json
import math
import numbers
import random
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

__all__ = ["json_list", "BASELINES", "CONFIDENCE", "MIN_TIMED_BLOCKS", "SPREAD_MAX", "LOAD_TOL", "BUSY_SHARE", "TRUST_RULES",
           "Interval", "median_interval", "used_rounds", "paired_ratios", "speedup_interval", "interval_halfwidth",
           "bootstrap_ratio", "change_verdict", "RoundResult", "others_exceed", "disturbed", "CellSummary", "summarize",
           "rotation", "crossing", "BreakEven", "break_even", "machine_warning", "finite", "positive"]

BASELINES = ("softmax", "softmax-math", "softmax-xformers")  # the first one present is the ratios' reference
CONFIDENCE = 0.95
MIN_TIMED_BLOCKS = 7  # blocks over a cell's rounds: fewer leave its spread unknown
SPREAD_MAX = 0.10  # round medians may scatter this much (median absolute deviation / median)
LOAD_TOL = 0.25  # cores other processes may take beyond those the cell left free
BUSY_SHARE = 0.10  # a run whose cells saw more than this share of the cores taken by others ran on a busy machine

TRUST_RULES: dict[str, str] = {
    "rounds": "fewer rounds finished than --repeats asked for (a later round failed)",
    "load": "in too many rounds other processes took more CPU than the cores the cell left free "
            f"(cores - threads, + {LOAD_TOL} core); those rounds are not used",
    "blocks": f"fewer than {MIN_TIMED_BLOCKS} timed blocks over its rounds",
    "spread": f"its round medians scatter more than {SPREAD_MAX:.0%} (median absolute deviation / median)",
}


# ------------------------------------------------------------------------------------------------ intervals


@dataclass(frozen=True)
class Interval:
    """A median with its confidence interval. ``n`` values; ``confidence`` the interval's coverage (exact for
    order statistics, nominal for the bootstrap); ``method`` ``order-statistic`` or ``bootstrap``."""

    mid: float
    lo: float
    hi: float
    n: int
    confidence: float
    method: str = "order-statistic"

    def excludes_one(self) -> bool:
        return self.lo > 1 or self.hi < 1


def _binom_cdf_half(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def median_interval(xs: Iterable[float], confidence: float = CONFIDENCE) -> Interval | None:
    """The median of ``xs`` with the exact distribution-free interval ``[x_(k), x_(n+1-k)]`` (order statistics).

    Its coverage ``1 - 2 P(Bin(n, 1/2) <= k - 1)`` holds for any continuous distribution; the largest ``k`` that
    reaches ``confidence`` is used, and ``k = 1`` (min–max) with its smaller coverage when none does (n <= 5).
    None for no values; one value is its own interval with coverage 0.
    """
    x = sorted(float(v) for v in xs)
    n = len(x)
    if n == 0:
        return None
    mid = statistics.median(x)
    k = 1
    while k + 1 <= n // 2 and 1 - 2 * _binom_cdf_half(k, n) >= confidence:
        k += 1
    cover = 1 - 2 * _binom_cdf_half(k - 1, n) if n > 1 else 0.0
    return Interval(mid, x[k - 1], x[n - k], n, round(cover, 4))


def json_list(v: Any) -> list:
    """A list cell as written (a list, or its JSON); anything else is empty."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return []
    return list(v) if isinstance(v, (list, tuple)) else []


def used_rounds(rounds: Any, excluded: Any = None) -> list[float | None]:
    """A row's ``latency_ms_rounds`` (a list or its JSON) with the ``rounds_excluded`` set to None: the rounds that
    count, still aligned by round; ``[]`` for a row without rounds."""
    skip = set(json_list(excluded))
    return [float(v) if positive(v) and i not in skip else None for i, v in enumerate(json_list(rounds))]


def paired_ratios(base: Sequence[float | None], model: Sequence[float | None]) -> list[float]:
    """``base[r] / model[r]`` for every round ``r`` where both are numbers > 0 (lists aligned by round)."""
    out = []
    for b, m in zip(base, model):
        if positive(b) and positive(m):
            out.append(float(b) / float(m))
    return out


def finite(v: Any) -> bool:
    """A real number (numpy's included, bool excluded) that is neither NaN nor infinite."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def positive(v: Any) -> bool:
    """A :func:`finite` number above zero (a latency, a count, a peak)."""
    return finite(v) and v > 0


def speedup_interval(base: Sequence[float | None], model: Sequence[float | None],
                     confidence: float = CONFIDENCE) -> Interval | None:
    """The paired speed-up (baseline latency / model latency per round): median and order-statistic interval."""
    return median_interval(paired_ratios(base, model), confidence)


def bootstrap_ratio(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE,
                    resamples: int = 2000, seed: int = 0) -> Interval | None:
    """median(b) / median(a) with a percentile bootstrap interval (both samples resampled independently, fixed
    ``seed``: the same data give the same interval)."""
    a, b = [float(v) for v in a if positive(v)], [float(v) for v in b if positive(v)]
    if not a or not b:
        return None
    rng = random.Random(seed)
    stats = sorted(statistics.median(rng.choices(b, k=len(b))) / statistics.median(rng.choices(a, k=len(a)))
                   for _ in range(resamples))
    tail = (1 - confidence) / 2
    lo = stats[int(math.floor(tail * (resamples - 1)))]
    hi = stats[int(math.ceil((1 - tail) * (resamples - 1)))]
    return Interval(statistics.median(b) / statistics.median(a), lo, hi, min(len(a), len(b)), confidence,
                    "bootstrap")


def interval_halfwidth(iv: Interval) -> float:
    """Half the interval's width relative to its median (0.05: ±5 %), what ``--target-ci`` bounds; inf for a
    median <= 0."""
    return (iv.hi - iv.lo) / 2 / iv.mid if iv.mid > 0 else math.inf


def change_verdict(iv: Interval) -> str:
    """For a latency ratio new / old: ``slower`` (interval above 1), ``faster`` (below 1) or ``within noise``."""
    if iv.lo > 1:
        return "slower"
    if iv.hi < 1:
        return "faster"
    return "within noise"


# ------------------------------------------------------------------------------------------------ rounds and trust


@dataclass(frozen=True)
class RoundResult:
    """One round of one cell: its timing and what the machine did meanwhile.

    Attributes:
        ms: median latency of the round's timed blocks.
        iqr_ms: their interquartile range.
        blocks: timed blocks.
        threads: intra-op threads it ran with.
        other_share: share of the cores' time other processes took while it was timed (None: unknown).
        cores: cores counted (``attnbench.machine.cpu_ids``).
    """

    ms: float
    iqr_ms: float
    blocks: int
    threads: int
    other_share: float | None
    cores: int


def others_exceed(other_share: float | None, cores: int, threads: int) -> bool:
    """Other processes took more than the cores a measurement left free (``cores - threads``) plus LOAD_TOL: the
    load check of a timing round, and of the calibration (unknown load passes)."""
    if other_share is None:
        return False
    return other_share * cores > max(0, cores - threads) + LOAD_TOL


def disturbed(r: RoundResult) -> bool:
    """The round's other processes took more than the cores the cell left free (:func:`others_exceed`)."""
    return others_exceed(r.other_share, r.cores, r.threads)


@dataclass
class CellSummary:
    """A cell's rounds, reduced. ``rounds_ms`` is aligned by round (None: not run there, or failed); ``excluded``
    lists the rounds (0-based) set aside as disturbed. The figures are over the rounds that count (over the
    disturbed ones when no round counts: then the cell is untrusted)."""

    rounds_ms: list[float | None]
    excluded: list[int]
    median_ms: float | None
    iqr_ms: float | None
    min_ms: float | None
    max_ms: float | None
    rounds: int
    timed_blocks: int
    other_share: float | None
    other_rounds: list[float | None]
    spread: float | None
    trusted: bool
    rule: str | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)


def _spread(clean: list[RoundResult]) -> float | None:
    ms = [r.ms for r in clean]
    if not ms:
        return None
    med = statistics.median(ms)
    if med <= 0:
        return None
    if len(ms) == 1:
        return clean[0].iqr_ms / med
    return statistics.median(abs(v - med) for v in ms) / med


def summarize(rounds: Sequence[RoundResult | None], *, required: int,
              failures: Sequence[str] = ()) -> CellSummary:
    """Reduce a cell's rounds (aligned by round; None where it did not run or failed) and judge it.

    ``required`` is the number of rounds that must count (``--repeats``); ``failures`` describe failed rounds
    (``"round 3: timeout"``) for the reason.
    """
    ran = [(i, r) for i, r in enumerate(rounds) if r is not None]
    clean = [(i, r) for i, r in ran if not disturbed(r)]
    rs = [r for _, r in clean] or [r for _, r in ran]
    ms = [r.ms for r in rs]
    others = [r.other_share for _, r in ran if r.other_share is not None]
    s = CellSummary(
        rounds_ms=[None if r is None else r.ms for r in rounds],
        excluded=[i for i, r in ran if disturbed(r)],
        median_ms=statistics.median(ms) if ms else None,
        iqr_ms=statistics.median(r.iqr_ms for r in rs) if rs else None,
        min_ms=min(ms) if ms else None, max_ms=max(ms) if ms else None,
        rounds=len(clean), timed_blocks=sum(r.blocks for r in rs),
        other_share=round(statistics.fmean(others), 4) if others else None,
        other_rounds=[None if r is None else r.other_share for r in rounds],
        spread=_spread(rs), trusted=True)
    n_dist = len(ran) - len(clean)
    if len(clean) < required and n_dist:
        worst = max((r for _, r in ran if disturbed(r)), key=lambda r: r.other_share or 0)
        s.rule = "load"
        s.reason = (f"load: other processes took {worst.other_share * worst.cores:.1f} of {worst.cores} cores while "
                    f"it ran {worst.threads} thread(s), in {n_dist} of {len(ran)} rounds")
    elif len(clean) < required:
        s.rule = "rounds"
        s.reason = f"rounds: {len(clean)} of {required} finished" + (f" ({'; '.join(failures)})" if failures else "")
    elif s.timed_blocks < MIN_TIMED_BLOCKS:
        s.rule = "blocks"
        s.reason = f"blocks: {s.timed_blocks} timed blocks over {len(rs)} rounds (< {MIN_TIMED_BLOCKS})"
    elif s.spread is not None and s.spread > SPREAD_MAX:
        s.rule = "spread"
        s.reason = (f"spread: round medians {s.min_ms:.3g}-{s.max_ms:.3g} ms scatter {s.spread:.0%} "
                    f"(> {SPREAD_MAX:.0%})")
    s.trusted = s.rule is None
    if n_dist and s.trusted:
        s.notes.append(f"{n_dist} round(s) disturbed by other processes, not used")
    return s


def rotation(items: Sequence[Any], round_index: int) -> list[Any]:
    """``items`` rotated left by ``round_index``: over rounds, each item runs at each position in turn, so that a
    drift of the machine within a round does not always fall on the same method."""
    if not items:
        return []
    k = round_index % len(items)
    return list(items[k:]) + list(items[:k])


# ------------------------------------------------------------------------------------------------ break-even


def crossing(ns: Sequence[float], costs: Sequence[float]) -> tuple[float | None, str]:
    """The N from which cost (model / baseline) stays below 1, interpolated log-log between the last measured N
    where it is >= 1 and the next one; None with the reason when the measured N do not bracket it."""
    if not ns:
        return None, "no N where both finished"
    last_dear = max((i for i, r in enumerate(costs) if r >= 1), default=None)
    if last_dear is None:
        return None, f"cheaper at every N measured (from {ns[0]:,.0f})"
    if last_dear == len(ns) - 1:
        return None, f"not bracketed: not cheaper at the largest N measured ({ns[-1]:,.0f})"
    (n0, r0), (n1, r1) = (ns[last_dear], costs[last_dear]), (ns[last_dear + 1], costs[last_dear + 1])
    if r0 == 1:
        return n0, f"at {n0:,.0f}"
    t = -math.log(r0) / (math.log(r1) - math.log(r0))
    n = math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
    return n, f"between {n0:,.0f} and {n1:,.0f}"


@dataclass(frozen=True)
class BreakEven:
    """The break-even N and its interval. ``lo``/``hi`` None: open on that side (below the smallest or beyond the
    largest N measured)."""

    n: float | None
    lo: float | None
    hi: float | None
    note: str


def break_even(ns: Sequence[float], costs: Sequence[float], costs_lo: Sequence[float] | None = None,
               costs_hi: Sequence[float] | None = None) -> BreakEven:
    """Break-even of cost ratios (model / baseline, < 1 is cheaper) measured at ``ns`` (ascending), with the
    ratios' interval ends ``costs_lo``/``costs_hi`` when known.

    The interval's ends are where the optimistic (``costs_lo``) and the pessimistic (``costs_hi``) curves cross 1.
    When the intervals at both measured N around the crossing include 1, the side of 1 is unknown at both and the
    break-even is "not determined".
    """
    n, note = crossing(ns, costs)
    if costs_lo is None or costs_hi is None or n is None:
        return BreakEven(n, None, None, note)
    i = max(j for j, r in enumerate(costs) if r >= 1)
    straddles = [costs_lo[j] <= 1 <= costs_hi[j] for j in (i, i + 1)]
    if all(straddles):
        return BreakEven(None, None, None, f"not determined: the speed-up intervals include 1 at both "
                                           f"N={ns[i]:,.0f} and N={ns[i + 1]:,.0f}")
    early, early_note = crossing(ns, costs_lo)
    late, late_note = crossing(ns, costs_hi)
    lo = early if early is not None else (None if early_note.startswith("cheaper") else n)
    hi = late if late is not None else (None if late_note.startswith("not bracketed") else n)
    lo_text = f"{lo:,.0f}" if lo is not None else f"< {ns[0]:,.0f}"
    hi_text = f"{hi:,.0f}" if hi is not None else f"> {ns[-1]:,.0f}"
    return BreakEven(n, lo, hi, f"{note}; interval {lo_text} to {hi_text}")


# ------------------------------------------------------------------------------------------------ the machine


def machine_warning(rows: Iterable[dict[str, Any]], cores: int | None = None) -> str | None:
    """One paragraph when the machine was busy while cells were timed, else None.

    Busy: other processes took more than :data:`BUSY_SHARE` of the cores on average while cells were timed, or more
    than :data:`BUSY_SHARE` of the cells are untrusted for load. A few cells disturbed on an otherwise quiet machine
    are marked in their rows and the trust section, not called a busy machine.
    """
    rows = [r for r in rows if str(r.get("status")) == "ok"]
    shares = [float(r["load_other_share"]) for r in rows if finite(r.get("load_other_share"))]
    load = [r for r in rows if str(r.get("untrusted_reason") or "").startswith("load")]
    untrusted = [r for r in rows if finite(r.get("trusted")) and not float(r["trusted"])]
    mean = statistics.fmean(shares) if shares else None
    if not (len(load) > BUSY_SHARE * len(rows) or (mean is not None and mean > BUSY_SHARE)):
        return None
    where = f" of its {cores} cores" if cores else " of the cores"
    text = f"The machine was busy: other processes took {mean:.0%}{where} on average while cells were timed" \
        if mean is not None else "The machine was busy while cells were timed"
    if untrusted:
        text += f"; {len(untrusted)} of {len(rows)} cells are untrusted ({len(load)} for load)"
    text += (". Latencies measured under contention are biased (most against methods made of many small "
             "synchronised ops), not just noisy. Re-run on a quiet machine, or with --threads 1, or with more "
             "--repeats.")
    threads = sorted({int(float(r["num_threads"])) for r in rows if finite(r.get("num_threads"))})
    if cores and threads and threads[0] < cores:  # the idle cores were fewer: a different configuration, not noise
        text += (f" Some cells were timed on {threads[0]} thread(s) of {cores} cores (the idle ones, or --threads): "
                 "speed-ups on a CPU depend on the thread count, so compare with runs at the same --threads.")
    return text
