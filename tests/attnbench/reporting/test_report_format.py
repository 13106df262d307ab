"""Numbers as shown: significant figures the IQR supports, markdown tables."""
from __future__ import annotations

import pandas as pd
import pytest

from attnbench import reporting as R


@pytest.mark.parametrize("median, iqr, expected", [
    (12.345, 0.3, "12.3 ± 0.3"),
    (12.345, 0.04, "12.35 ± 0.04"),
    (12.345, 2.0, "12 ± 2 †"),
    (0.01234, 0.0001, "0.0123 ± 0.0001"),
    (1234.5, 0.001, "1,234 ± 0"),  # never more than 4 significant figures
    (5.0, 20.0, "5.0 ± 20.0 †"),  # the IQR exceeds the value: still two figures, marked noisy
    (195.0, 130.0, "200 ± 130 †"),  # two figures, not the one the IQR's leading digit would allow
    (356.04, 0.0, "356 ‡"),  # one timing block: spread unknown
])
def test_latency_shows_only_the_figures_the_iqr_supports(median, iqr, expected):
    assert R.fmt_latency(median, iqr) == expected


def test_fmt_sig():
    assert R.fmt_sig(123456) == "123,000"
    assert R.fmt_sig(0.0012345) == "0.00123"
    assert R.fmt_sig(float("nan")) == "—"
    assert R.fmt_sig(0) == "0"


def test_to_markdown_escapes_pipes_and_aligns_numbers():
    md = R.to_markdown(pd.DataFrame({"a": ["x|y", "z"], "n": ["1,024", "—"]}))
    lines = md.splitlines()
    assert lines[0].startswith("| a") and "x\\|y" in lines[2]
    assert lines[1].endswith(":|")  # numeric column right-aligned


@pytest.mark.parametrize("ratio, lo, hi, expected", [
    (5.7, 5.2, 6.1, "5.7× (5.2–6.1) faster"),
    (0.3125, 0.29, 0.34, "3.2× (2.9–3.4) slower"),  # below 1: read the other way round, interval inverted
    (2.0, None, None, "2.0× faster"),
    (2.0, 2.0, 2.0, "2.0× faster"),  # a point interval is not printed
    (14.6, 14.2, float("inf"), "15× faster"),  # an unbounded interval is not printed
])
def test_ratios_read_as_faster_or_slower(ratio, lo, hi, expected):
    assert R.fmt_times(ratio, lo, hi) == expected


def test_memory_ratios_read_as_less_or_more():
    assert R.fmt_times(1 / 0.5, more="less", less="more") == "2.0× less"
    assert R.fmt_times(1 / 1.5, more="less", less="more") == "1.5× more"


def test_throughput_has_at_least_two_significant_figures():
    a = pd.DataFrame({"model": ["m"], "seq_len": [1024], "params_m": [1.0], "gmacs": [1.0], "peak_mem_mib": [1.0],
                      "latency_ms_median": [195.0], "latency_ms_iqr": [130.0], "throughput_per_s": [5.128],
                      "status": ["ok"], "reason": [None]})
    row = R.absolute_display(a).iloc[0]
    assert row["samples/s"] == "5.1" and row["latency (ms)"] == "200 ± 130 †"


def test_share_of_peak_is_shown_from_the_rows_and_only_where_measured():
    from report_frames import frame

    df = frame(models=["softmax", "soft"], ns=[1024, 2048])
    assert "% of peak" not in R.absolute_display(R.absolute_table(df)).columns  # no calibration: no column
    df["achieved_gflops"] = 10.0
    df["peak_gflops"] = 80.0
    df["peak_share"] = df["achieved_gflops"] / df["peak_gflops"]
    df.loc[(df.model == "soft") & (df.seq_len == 2048), "status"] = "timeout"
    shown = R.absolute_display(R.absolute_table(df)).set_index(["model", "N"])["% of peak"]
    assert shown[("softmax", "1,024")] == "12%"
    assert shown[("soft", "2,048")] == R.DASH  # a cell that did not finish has no share
