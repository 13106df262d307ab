"""Rounds, trust rules, paired ratios and their intervals, on synthetic timings with a known answer."""
from __future__ import annotations

import math

import pytest

from attnbench.stats import (
    LOAD_TOL,
    MIN_TIMED_BLOCKS,
    SPREAD_MAX,
    BreakEven,
    RoundResult,
    bootstrap_ratio,
    break_even,
    change_verdict,
    crossing,
    disturbed,
    machine_warning,
    median_interval,
    paired_ratios,
    rotation,
    speedup_interval,
    summarize,
)


def rnd(ms: float, *, other: float | None = 0.0, threads: int = 2, cores: int = 2, blocks: int = 7,
        iqr: float = 0.0) -> RoundResult:
    return RoundResult(ms=ms, iqr_ms=iqr, blocks=blocks, threads=threads, other_share=other, cores=cores)


# ------------------------------------------------------------------------------------------------ intervals

def test_order_statistic_interval_has_the_exact_binomial_coverage() -> None:
    iv = median_interval([3.0, 1.0, 2.0])  # n = 3: no pair reaches 95 %, so min-max, covering 1 - 2/8
    assert (iv.mid, iv.lo, iv.hi, iv.n, iv.confidence) == (2.0, 1.0, 3.0, 3, 0.75)
    iv = median_interval(range(1, 11))  # n = 10: [x2, x9] covers 1 - 2 * 11/1024 = 97.9 %; [x3, x8] only 89 %
    assert (iv.lo, iv.hi, iv.mid) == (2.0, 9.0, 5.5) and iv.confidence == pytest.approx(1 - 22 / 1024, abs=1e-4)
    assert median_interval([]) is None and median_interval([4.0]).confidence == 0.0


def test_paired_ratio_cancels_a_load_that_hits_both_sides_of_a_round() -> None:
    # round 2 ran on a loaded machine: both cells took twice as long; the model is 2x faster in every round
    base, model = [10.0, 20.0, 10.2], [5.0, 10.0, 5.1]
    iv = speedup_interval(base, model)
    assert iv.mid == pytest.approx(2.0) and iv.lo == pytest.approx(2.0) and iv.hi == pytest.approx(2.0)
    # unpaired, the same numbers look uncertain: the bootstrap of the ratio of medians spans 1x to 4x
    boot = bootstrap_ratio(model, base)
    assert boot.lo < 1.5 and boot.hi > 3.5


def test_paired_ratios_use_only_rounds_both_cells_have() -> None:
    assert paired_ratios([10.0, None, 30.0, 40.0], [5.0, 6.0, None, 20.0]) == [2.0, 2.0]
    assert speedup_interval([None], [1.0]) is None


def test_bootstrap_is_deterministic_and_verdicts_follow_the_interval() -> None:
    a, b = [10.0, 10.5, 9.8, 10.1], [12.0, 12.4, 11.9, 12.2]
    assert bootstrap_ratio(a, b) == bootstrap_ratio(a, b)  # fixed seed
    assert change_verdict(bootstrap_ratio(a, b)) == "slower"
    assert change_verdict(bootstrap_ratio(b, a)) == "faster"
    assert change_verdict(bootstrap_ratio(a, [10.3, 9.9, 10.0, 10.6])) == "within noise"
    same = bootstrap_ratio([5.0, 5.0], [5.0, 5.0])
    assert (same.mid, same.lo, same.hi, same.method) == (1.0, 1.0, 1.0, "bootstrap")


# ------------------------------------------------------------------------------------------------ trust rules

def test_a_quiet_cell_is_trusted_with_median_and_spread() -> None:
    s = summarize([rnd(10.0, iqr=0.2), rnd(10.4, iqr=0.4), rnd(10.1, iqr=0.3)], required=3)
    assert s.trusted and s.rule is None and s.reason is None
    assert (s.median_ms, s.iqr_ms, s.min_ms, s.max_ms, s.rounds, s.timed_blocks) == (10.1, 0.3, 10.0, 10.4, 3, 21)
    assert s.rounds_ms == [10.0, 10.4, 10.1] and s.excluded == []


def test_a_disturbed_round_is_set_aside_and_too_few_clean_rounds_is_untrusted_for_load() -> None:
    # 2 threads on 2 cores: any other process beyond LOAD_TOL core disturbs the round
    loaded = rnd(30.0, other=(LOAD_TOL + 0.5) / 2)
    assert disturbed(loaded) and not disturbed(rnd(10.0, other=0.1))
    assert not disturbed(rnd(10.0, other=0.5, threads=1))  # one thread leaves one core to the others
    assert not disturbed(rnd(10.0, other=None))  # unknown load is not evidence of load
    s = summarize([rnd(10.0), loaded, rnd(10.2)], required=3)
    assert not s.trusted and s.rule == "load" and s.excluded == [1]
    assert s.median_ms == pytest.approx(10.1) and s.rounds == 2  # the figures come from the clean rounds
    assert "other processes took 0.8 of 2 cores" in s.reason and "1 of 3 rounds" in s.reason
    s = summarize([rnd(10.0), loaded, rnd(10.2), rnd(10.1)], required=3)  # a retry round replaced it
    assert s.trusted and s.excluded == [1] and "not used" in s.notes[0]
    s = summarize([loaded, loaded], required=2)  # nothing clean: the disturbed figures, untrusted
    assert not s.trusted and s.median_ms == 30.0 and s.rounds == 0


def test_spread_blocks_and_failed_rounds_break_trust() -> None:
    s = summarize([rnd(10.0), rnd(13.0), rnd(16.0)], required=3)
    assert s.rule == "spread" and s.spread == pytest.approx(3 / 13) and s.spread > SPREAD_MAX
    one_outlier = summarize([rnd(10.0), rnd(10.2), rnd(16.0)], required=3)  # median absolute deviation is robust
    assert one_outlier.trusted and one_outlier.median_ms == 10.2
    s = summarize([rnd(900.0, blocks=1)] * 3, required=3)
    assert s.rule == "blocks" and s.timed_blocks == 3 < MIN_TIMED_BLOCKS
    s = summarize([rnd(10.0), None, rnd(10.1)], required=3, failures=["round 2: timeout: exceeded"])
    assert s.rule == "rounds" and "round 2: timeout" in s.reason
    single = summarize([rnd(10.0, iqr=2.0)], required=1)  # one round: its own IQR is the spread
    assert single.rule == "spread" and single.spread == pytest.approx(0.2)


def test_rotation_puts_every_method_at_every_position() -> None:
    models = ["softmax", "soft", "linformer"]
    orders = [rotation(models, r) for r in range(3)]
    assert orders == [["softmax", "soft", "linformer"], ["soft", "linformer", "softmax"],
                      ["linformer", "softmax", "soft"]]
    assert all(sorted(pos) == sorted(models) for pos in zip(*orders))
    assert rotation(models, 3) == models and rotation([], 1) == []


# ------------------------------------------------------------------------------------------------ break-even

def test_break_even_point_and_interval_on_a_known_crossing() -> None:
    ns = [1024.0, 2048.0, 4096.0]
    n, note = crossing(ns, [2.0, 0.5, 0.25])  # cost halves... crosses 1 halfway between 1024 and 2048 in log N
    assert n == pytest.approx(math.sqrt(1024 * 2048)) and note == "between 1,024 and 2,048"
    be = break_even(ns, [2.0, 0.5, 0.25], [1.5, 0.4, 0.2], [2.5, 0.8, 0.3])
    assert be.n == pytest.approx(n) and be.lo == pytest.approx(be.n, rel=0.2) and be.lo <= be.n <= be.hi
    assert be.hi < 2048 and "interval" in be.note
    # the pessimistic end never crosses: the interval is open above
    open_hi = break_even(ns, [2.0, 0.5, 0.25], [1.5, 0.4, 0.2], [2.5, 1.2, 1.1])
    assert open_hi.hi is None and "> 4,096" in open_hi.note


def test_break_even_is_not_determined_when_both_sides_straddle_one() -> None:
    be = break_even([1024.0, 2048.0], [1.1, 0.9], [0.8, 0.7], [1.3, 1.2])
    assert be == BreakEven(None, None, None, be.note) and be.note.startswith("not determined")
    assert break_even([1024.0], [0.5]).note.startswith("cheaper at every N")


# ------------------------------------------------------------------------------------------------ the machine

def test_machine_warning_names_the_load_and_what_to_do() -> None:
    quiet = [{"status": "ok", "load_other_share": 0.02, "trusted": 1}] * 4
    assert machine_warning(quiet, 2) is None
    busy = quiet[:2] + [{"status": "ok", "load_other_share": 0.9, "trusted": 0,
                         "untrusted_reason": "load: other processes took 1.8 of 2 cores"}] * 2
    text = machine_warning(busy, 2)
    assert "busy" in text and "46%" in text and "2 of 4 cells are untrusted (2 for load)" in text
    assert "--threads 1" in text and "--repeats" in text and "thread(s)" not in text  # no thread counts recorded
    fewer = [{**r, "num_threads": 1} for r in busy]
    assert "timed on 1 thread(s) of 2 cores" in machine_warning(fewer, 2)
    # one cell disturbed among many on a quiet machine is that cell's mark, not a busy machine
    one = quiet * 20 + [{"status": "ok", "load_other_share": 0.45, "trusted": 0, "untrusted_reason": "load: ..."}]
    assert machine_warning(one, 2) is None and machine_warning(one[-3:] + busy, 2) is not None
