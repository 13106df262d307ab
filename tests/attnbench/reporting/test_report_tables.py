"""The efficiency tables on synthetic frames: relative ratios, break-even N, baselines, hparams variants."""
from __future__ import annotations

import math

import pytest

from attnbench import reporting as R
from report_frames import COSTS, frame, variants_frame


def test_relative_table_is_baseline_over_model():
    rel = R.relative_table(frame())
    assert rel.attrs["baseline"] == "softmax"
    r = rel[(rel.model == "soft") & (rel.seq_len == 1024)].iloc[0]
    assert r.speedup == pytest.approx(1e-6 * 1024 ** 2 / (2e-3 * 1024))
    assert r.mem_ratio == pytest.approx(12_000 * 1024 / (4 * 1024 ** 2))
    assert (rel[rel.model == "softmax"].speedup == 1).all()


def test_break_even_interpolates_log_log_between_bracketing_points():
    be = R.break_even(frame()).set_index(["model", "metric"])
    assert be.loc[("soft", "latency"), "n"] == pytest.approx(2000, rel=1e-9)
    assert "1,024 and 2,048" in be.loc[("soft", "latency"), "note"]
    assert be.loc[("soft", "memory"), "n"] == pytest.approx(3000, rel=1e-9)
    assert be.loc[("performer", "latency"), "n"] is None or math.isnan(be.loc[("performer", "latency"), "n"])
    assert "cheaper at every N" in be.loc[("performer", "latency"), "note"]
    assert "not bracketed" in be.loc[("linformer", "latency"), "note"]
    assert "softmax" not in be.index.get_level_values("model")


def test_break_even_ignores_failed_cells_and_names_baseline_failures():
    df = frame(fail={("softmax", 4096): "oom", ("soft", 2048): "timeout"})
    be = R.break_even(df).set_index(["model", "metric"])
    # without N=2048 for soft the bracket is 1024..4096, but softmax has no 4096: not bracketed among finished cells
    assert "not bracketed" in be.loc[("soft", "latency"), "note"]
    assert "softmax oom at 4,096" in be.loc[("soft", "latency"), "note"]


def test_baseline_falls_back_and_can_be_absent():
    df = frame()
    df.loc[df.model == "softmax", "model"] = "softmax-math"
    assert R.choose_baseline(df) == "softmax-math"
    assert R.relative_table(df).attrs["baseline"] == "softmax-math"
    no_base = frame(models=["soft", "performer"])
    assert R.choose_baseline(no_base) is None
    assert R.relative_table(no_base).empty and R.break_even(no_base).empty
    md = R.render_markdown(no_base)
    assert "No softmax baseline" in md
    with pytest.raises(ValueError, match="baseline 'nope' has no rows"):
        R.choose_baseline(df, "nope")


def test_absolute_table_units_and_failed_cells():
    df = frame(fail={("softmax", 4096): "oom"})
    a = R.absolute_table(df)
    r = a[(a.model == "soft") & (a.seq_len == 1024)].iloc[0]
    assert r.peak_mem_mib == pytest.approx(12_000 * 1024 / 2 ** 20)
    assert r.gmacs == pytest.approx(1000 * 1024 / 1e9)
    assert a.model.iloc[0] == "softmax"  # the baseline first
    disp = R.absolute_display(a)
    bad = disp[(disp.model == "softmax") & (disp.N == "4,096")].iloc[0]
    assert bad["latency (ms)"] == "oom" and bad["peak mem (MiB)"] == "—" and bad["samples/s"] == "—"
    assert "- `softmax` infer, N = 4,096: **oom** — oom at 4096" in R.render_markdown(df)  # the reason, listed apart


def test_hparams_variants_are_separate_models_everywhere():
    df = variants_frame()
    labels = set(R.variant_labels(df))
    assert labels == {"softmax[impl=sdpa]", "softmax[impl=math]", "soft[landmarks=49]", "soft[landmarks=64]"}
    assert set(R.variant_labels(frame())) == set(COSTS)  # one hparams value per model: plain names
    rel = R.relative_table(df)
    assert len(rel) == len(df)  # no row duplicated by the join
    assert rel.attrs["baseline"] == "softmax[impl=sdpa]"  # the first softmax variant in the frame
    at = rel.set_index(["model", "seq_len"])
    assert at.loc[("soft[landmarks=64]", 1024), "speedup"] == pytest.approx(1e-6 * 1024 / (2 * 2e-3))
    assert at.loc[("softmax[impl=math]", 1024), "speedup"] == pytest.approx(0.25)
    be = R.break_even(df).set_index(["model", "metric"])
    assert be.loc[("soft[landmarks=49]", "latency"), "n"] == pytest.approx(2000, rel=1e-9)
    assert be.loc[("soft[landmarks=64]", "latency"), "n"] == pytest.approx(4000, rel=1e-9)
    assert len(R.absolute_table(df)) == len(df)
    assert R.choose_baseline(df, "softmax") == "softmax[impl=sdpa]"
    assert R.choose_baseline(df, "softmax[impl=math]") == "softmax[impl=math]"
    md = R.render_markdown(df)
    assert "### Relative to `softmax[impl=sdpa]` at each N (`softmax` has 2 hparams variants here; the first in " \
           "the frame's order is the baseline)" in md
    assert "| soft[landmarks=64]" in md and "m = 64 landmarks" in md


def test_a_compiled_run_is_its_own_model_label():
    import pandas as pd

    from attnbench.reporting.load import variant_labels

    df = pd.DataFrame({"model": ["soft", "soft", "softmax"], "hparams": ["{}"] * 3,
                       "compile": [float("nan"), "default", "max-autotune"]})
    assert list(variant_labels(df)) == ["soft", "soft+compile", "softmax+max-autotune"]


def test_a_compiled_run_is_labelled_once_and_reports_against_compiled_softmax():
    """Labelling is idempotent: every table labels again, and a compiled run once read 'soft+compile+compile'."""
    from attnbench.reporting.load import labelled

    df = frame(models=["softmax", "soft"], ns=[1024, 2048])
    df["compile"] = "default"
    once = labelled(df)
    assert set(once["model"]) == {"softmax+compile", "soft+compile"}
    assert labelled(once)["model"].tolist() == once["model"].tolist()
    rep = R.report(df, write=False)
    assert rep.baseline == "softmax+compile" and set(rep.relative["model"]) == {"softmax+compile", "soft+compile"}
