"""The report over paired rounds: speed-ups from per-round ratios with their interval, untrusted cells shown but
left out, the break-even interval, the trust section and the busy-machine warning on the first line."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from report_frames import frame

from attnbench import reporting as R


def with_rounds(df: pd.DataFrame, rounds: dict[tuple[str, int], list[float]], *, group: str = "g",
                untrusted: dict | None = None, share: float = 0.01) -> pd.DataFrame:
    """``df`` with round latencies (and their median) for the given cells, all in one pair group per N."""
    df = df.copy()
    for c in ("latency_ms_rounds", "pair_group", "rounds_excluded", "untrusted_reason"):
        df[c] = df[c].astype(object)
    for (model, n), ms in rounds.items():
        i = df.index[(df.model == model) & (df.seq_len == n)][0]
        df.loc[i, ["latency_ms_rounds", "pair_group", "rounds_excluded"]] = [json.dumps(ms), f"{group}-{n}", "[]"]
        df.loc[i, ["latency_ms_median", "latency_rounds_min", "latency_rounds_max", "rounds", "trusted",
                   "load_other_share"]] = [sorted(ms)[len(ms) // 2], min(ms), max(ms), len(ms), 1, share]
    for (model, n), reason in (untrusted or {}).items():
        i = df.index[(df.model == model) & (df.seq_len == n)][0]
        df.loc[i, ["trusted", "untrusted_reason"]] = [0, reason]
    return df


def test_speed_up_is_the_median_of_paired_round_ratios_with_its_interval() -> None:
    # round 2 ran loaded for both: unpaired medians would say 10/5.1; paired, soft is 2x faster in every round
    df = with_rounds(frame(models=["softmax", "soft"], ns=[1024]),
                     {("softmax", 1024): [10.0, 30.0, 10.4], ("soft", 1024): [5.0, 15.0, 5.1]})
    r = R.relative_table(df).set_index("model").loc["soft"]
    assert r.speedup == pytest.approx(2.0) and r.speedup_pairs == 3 and r.speedup_conf == 0.75
    assert r.speedup_lo == pytest.approx(2.0) and r.speedup_hi == pytest.approx(10.4 / 5.1)
    # cells of different pair groups (another run, a shard) are not paired: ratio of medians, quartile interval
    other = df.copy()
    other.loc[other.model == "soft", "pair_group"] = "elsewhere"
    r2 = R.relative_table(other).set_index("model").loc["soft"]
    assert r2.speedup == pytest.approx(10.4 / 5.1) and math.isnan(r2.speedup_pairs)


def test_untrusted_cells_are_shown_marked_and_left_out() -> None:
    ns = [1024, 2048, 4096]
    rounds = {(m, n): [v * (1 + d) for d in ds] for m, f, ds in (("softmax", 1e-6, (0, 0.01, 0.02)),
                                                                 ("soft", 4e-3, (0.04, 0, 0.01)))
              for n in ns for v in [f * n * n if m == "softmax" else f * n]}
    df = with_rounds(frame(models=["softmax", "soft"], ns=ns), rounds,
                     untrusted={("soft", 4096): "spread: round medians 16-22 ms scatter 20% (> 10%)"})
    rel = R.relative_table(df).set_index(["model", "seq_len"])
    assert math.isnan(rel.loc[("soft", 4096), "speedup"]) and rel.loc[("soft", 4096), "mem_ratio"] > 0
    assert rel.loc[("soft", 2048), "speedup"] == pytest.approx(1e-6 * 2048 / 4e-3, rel=0.05)
    disp = R.relative_display(R.relative_table(df), "speedup").set_index("model")
    assert disp.loc["soft", "N=4,096"] == "untrusted §" and "(" in disp.loc["soft", "N=1,024"]
    absolute = R.absolute_display(R.absolute_table(df)).set_index(["model", "N"])
    assert absolute.loc[("soft", "4,096"), "latency (ms)"].endswith("§")
    assert absolute.loc[("soft", "1,024"), "rounds min–max (n)"] == "4.1–4.3 (3)"
    md = R.render_markdown(df)
    assert "## Trust: rounds, pairs and rules" in md and "Untrusted cells (1 of 6):" in md
    assert "- `soft` N=4,096 infer: spread: round medians 16-22 ms scatter 20% (> 10%)" in md
    assert "**spread**:" in md and md.splitlines()[0] == "# attnbench report"  # not busy: no warning on top
    busy = R.render_markdown(with_rounds(df, {}, untrusted={("soft", 4096): "load: other processes took 1.8 of 2"}))
    assert busy.startswith("**Warning:** The machine was busy") and "1 for load" in busy.splitlines()[0]


def test_break_even_has_an_interval_or_is_not_determined() -> None:
    ns = [1024, 2048, 4096]
    # soft's speed-up 0.5, 2, 4 with tight rounds: the crossing lies between 1,024 and 2,048, its interval too
    tight = {("softmax", n): [1.0, 1.0, 1.0] for n in ns}
    tight.update({("soft", n): [1 / s * (1 + d) for d in (-0.05, 0, 0.05)] for n, s in zip(ns, (0.5, 2, 4))})
    be = R.break_even(with_rounds(frame(models=["softmax", "soft"], ns=ns), tight)).set_index(["model", "metric"])
    row = be.loc[("soft", "latency")]
    assert row.n == pytest.approx(math.sqrt(1024 * 2048), rel=0.01) and 1024 < row.n_lo <= row.n <= row.n_hi < 2048
    assert "interval" in row.note
    # speed-ups of 0.9 and 1.1 whose intervals both include 1: which side of 1 is unknown
    loose = {("softmax", n): [1.0, 1.0, 1.0] for n in ns[:2]}
    loose.update({("soft", 1024): [1 / 0.9, 1 / 0.7, 1 / 1.2], ("soft", 2048): [1 / 1.1, 1 / 0.8, 1 / 1.3]})
    be = R.break_even(with_rounds(frame(models=["softmax", "soft"], ns=ns[:2]), loose)).set_index(
        ["model", "metric"])
    assert be.loc[("soft", "latency"), "note"].startswith("not determined")


def test_a_busy_machine_is_the_report_first_line() -> None:
    df = with_rounds(frame(models=["softmax", "soft"], ns=[1024]),
                     {("softmax", 1024): [10.0, 10.1, 10.2], ("soft", 1024): [5.0, 5.1, 5.2]}, share=0.4)
    md = R.render_markdown(df, [{"machine": {"cores": 2}, "cpu_count": 2}])
    first = md.splitlines()[0]
    assert first.startswith("**Warning:** The machine was busy: other processes took 40% of its 2 cores")
    assert "--threads 1" in first
