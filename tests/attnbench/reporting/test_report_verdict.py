"""The verdict on constructed rows: fastest and leanest at each N, ties, slower than the baseline, noisy, missing."""
from __future__ import annotations

import pandas as pd
import pytest
from report_frames import frame

from attnbench import reporting as R
from attnbench.results import ALL_COLUMNS


def cells(*specs: tuple, n: int = 1024) -> pd.DataFrame:
    """Rows from (model, latency ms, IQR ms, peak memory bytes[, status]) at one N."""
    rows = []
    for model, lat, iqr, mem, *status in specs:
        st = status[0] if status else "ok"
        rows.append({"model": model, "scope": "layer", "skeleton": "layer", "seq_len": n, "batch": 1, "dtype": "fp32",
                     "device": "cpu", "mode": "infer", "status": st, "reason": None if st == "ok" else f"{st} here",
                     "params": 1000, "macs": 1e6, "hparams": "{}",
                     **({"latency_ms_median": lat, "latency_ms_iqr": iqr, "peak_mem_bytes": mem,
                         "throughput_per_s": 1e3 / lat} if st == "ok" else {})})
    return pd.DataFrame(rows, columns=ALL_COLUMNS)


def verdict(df: pd.DataFrame) -> tuple[pd.Series, str]:
    vt = R.verdict_table(R.relative_table(df))
    assert len(vt) == 1
    return vt.iloc[0], R.verdict_lines(vt)[0][1]


def test_fastest_and_leanest_with_ratio_and_interval():
    vt = R.verdict_table(R.relative_table(frame()))
    assert list(vt.seq_len) == [256, 512, 1024, 2048, 4096]  # one row per N
    r = vt[vt.seq_len == 4096].iloc[0]
    assert r.fastest == "performer" and r.speedup == pytest.approx(1e-6 * 4096 / 1e-5)
    assert r.speedup_lo < r.speedup < r.speedup_hi  # quartiles (median ± IQR/2) of both latencies
    assert r.speedup_lo == pytest.approx((1e-6 * 4096**2 * 0.995) / (1e-5 * 4096 * 1.005))
    assert r.leanest == "performer" and r.mem_ratio == pytest.approx(100 / (4 * 4096))
    label, text = R.verdict_lines(vt)[-1]
    assert label == "N=4,096"
    assert text.startswith("Fastest: `performer`, 410× faster than `softmax`")  # 405–414: one value at 2 figures
    assert "Leanest: `performer`, 160× less memory than `softmax`" in text


def test_methods_within_noise_are_tied():
    r, text = verdict(cells(("softmax", 10.0, 0.5, 100), ("a", 2.0, 0.1, 50), ("b", 2.05, 0.1, 51),
                            ("c", 2.5, 0.05, 300)))
    assert r.fastest == "a" and [t[0] for t in r.fastest_tied] == ["b"]  # overlapping intervals; c is apart
    assert "tied within noise: `b` 4.9× (4.6–5.1) faster" in text and "runner-up" not in text.split(".")[0]
    assert r.leanest == "a" and r.leanest_tied == ["b"]  # 51 is within 5 % of 50
    assert "tied within 5%: `b`" in text


def test_a_baseline_that_wins_names_the_runner_up_as_slower():
    r, text = verdict(cells(("softmax", 1.0, 0.01, 100), ("x", 3.2, 0.03, 50)))
    assert r.fastest == "softmax"
    assert "Fastest: `softmax` (the baseline); runner-up: `x`, 3.2× (3.1–3.3) slower than `softmax`" in text
    assert "0.31" not in text and "Leanest: `x`, 2.0× less memory than `softmax`" in text


def test_a_baseline_runner_up_is_not_named_again():
    r, text = verdict(cells(("softmax", 10.0, 0.1, 100), ("a", 2.0, 0.02, 200), ("noisy", 1.0, 0.4, 100)))
    assert r.fastest == "a" and r.fastest_next[0] == "softmax"  # the only other judged method is the baseline
    assert text.startswith("Fastest: `a`, 5.0× (5.0–5.1) faster than `softmax`. Leanest") and "runner-up" not in text


def test_noisy_cells_never_feed_the_verdict():
    r, text = verdict(cells(("softmax", 10.0, 0.5, 100), ("steady", 5.0, 0.1, 100), ("noisy", 1.0, 0.4, 100)))
    assert r.fastest == "steady" and r.left_out == [("noisy", "noisy")]
    assert "Noisy, not judged: `noisy`." in text
    r, text = verdict(cells(("softmax", 10.0, 5.0, 100), ("a", 5.0, 0.1, 100), ("b", 4.0, 0.1, 100)))
    assert r.fastest == "b" and pd.isna(r.speedup)  # a noisy baseline gives no ratio, the ranking stands
    assert "Fastest: `b` (no ratio: `softmax` noisy)" in text


def test_untrusted_cells_never_feed_the_verdict():
    df = cells(("softmax", 10.0, 0.5, 100), ("steady", 5.0, 0.1, 100), ("loaded", 1.0, 0.01, 100))
    df["trusted"] = [1, None, 0]  # no flag counts as trusted
    r, text = verdict(df)
    assert r.fastest == "steady" and "Untrusted, not judged: `loaded`." in text
    df["trusted"] = [0, 1, 0]
    r, text = verdict(df)
    assert r.fastest == "steady" and pd.isna(r.speedup) and "(no ratio: `softmax` untrusted)" in text


def test_failed_and_missing_cells():
    r, text = verdict(cells(("softmax", 1.0, 0.0, 100, "oom"), ("a", 5.0, 0.1, 200), ("b", 4.0, 0.1, 300),
                            ("c", 1.0, 0.0, 1, "timeout")))
    assert r.fastest == "b" and r.leanest == "a"  # c did not finish: neither fastest nor leanest
    assert "(no ratio: `softmax` oom)" in text and "`c`" not in text
    df = pd.concat([cells(("softmax", 10.0, 0.1, 100), ("a", 5.0, 0.1, 50)),
                    cells(("softmax", 40.0, 0.1, 400), n=2048)], ignore_index=True)  # a has no row at 2,048
    vt = R.verdict_table(R.relative_table(df))
    assert list(vt.fastest) == ["a", "softmax"] and "runner-up" not in R.verdict_lines(vt)[1][1]


def test_paired_interval_columns_are_used_when_rows_carry_them():
    df = cells(("softmax", 10.0, 0.5, 100), ("a", 2.0, 0.1, 50))
    df["speedup_lo"], df["speedup_hi"] = [None, 4.9], [None, 5.1]
    r, text = verdict(df)
    assert (r.speedup_lo, r.speedup_hi) == (4.9, 5.1)
    assert "5.0× (4.9–5.1) faster" in text


def test_verdict_is_at_the_top_of_the_markdown_with_the_legend_before_the_first_table():
    md = R.render_markdown(frame(iqr=0.2))
    verdict_at, legend_at, table_at = md.index("## Verdict"), md.index("† IQR above"), md.index("### Absolute")
    assert verdict_at < legend_at < table_at and md.count("† IQR above") == 1
    assert "**skeleton layer, batch 1, dtype fp32, device cpu, mode infer**" in md
    assert "- **N=256**: " in md
    no_base = R.render_markdown(frame(models=["soft", "performer"]))  # no baseline: ranked against the fastest
    assert "## Verdict" in no_base
    assert "Fastest: `performer`; runner-up: `soft`, 200× slower than `performer`" in no_base
