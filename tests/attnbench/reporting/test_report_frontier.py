"""What each method learned over its seeds, and the accuracy-versus-cost frontier, on constructed rows: seeds learned
k/n, means with 95 % Student-t intervals, 'indistinguishable' where intervals overlap, costs joined on (model,
skeleton, N), the Pareto set of the methods that learned (never an ablation), the plot with its labels inside."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from attnbench.reporting.frontier import (accuracy_across_n, accuracy_display, draw_frontier, pareto, plot_frontier,
                                          verdict)
from train_frames import eff_row, frame, train_row

T2 = 4.303  # t_{0.975, 2}: three seeds


def _frame() -> pd.DataFrame:
    seeds = (42, 43, 44)
    rows = [train_row(m, s, t) for m, tops in (("softmax", (100.0, 99.0, 98.0)), ("soft", (97.0, 99.0, 98.0)),
                                               ("performer", (60.0, 70.0, 65.0)),
                                               ("nystromformer", (50.2, 49.6, 50.4)),  # chance: did not learn
                                               ("no-mixing", (50.0, 80.0, 50.0)),  # one seed of three learned
                                               ("soft-matched", (99.5, 99.5, 99.5)))  # an ablation
            for s, t in zip(seeds, tops)]
    rows += [train_row("linear", 42, 90.0),  # one seed
             train_row("softmax", 42, 90.0, n=1024), train_row("soft", 42, 80.0, n=1024),
             dict(train_row("performer", 42, math.nan, n=1024), status="nan", top1=None)]  # failed: not counted
    rows += [eff_row("softmax", 256, 10.0, 40.0), eff_row("soft", 256, 6.0, 20.0), eff_row("performer", 256, 5.0, 30.0),
             eff_row("linear", 256, 4.0, 50.0), eff_row("no-mixing", 256, 3.0, 10.0),
             eff_row("nystromformer", 256, 1.0, 1.0), eff_row("soft-matched", 256, 0.5, 0.5),  # cheapest of all
             eff_row("softmax", 1024, 80.0, 400.0)]
    return frame(rows)


def _at(t: pd.DataFrame) -> dict:
    return {(r.seq_len, r.model): r for r in t.itertuples()}


def test_seeds_learned_intervals_and_the_verdict_against_softmax():
    t = accuracy_across_n(_frame())
    at = _at(t)
    # the ones that learned first (best first), then the mixed one, then the one that did not learn
    assert list(t[(t.seq_len == 256) & ~t.ablation]["model"]) == ["softmax", "soft", "linear", "performer",
                                                                  "no-mixing", "nystromformer"]
    s = at[(256, "soft")]
    assert (s.seeds, s.learned_k, s.learned_status, s.top1_mean) == (3, 3, "all", 98.0)
    assert s.top1_ci == pytest.approx(T2 * 1.0 / math.sqrt(3), abs=1e-3)  # s = 1
    assert s.drop == pytest.approx(-1.0) and s.verdict == "indistinguishable"  # 95.5..100.5 overlaps 96.5..101.5
    assert at[(256, "performer")].verdict == "lower"  # 52.6..77.4
    assert at[(256, "linear")].verdict == "one seed" and math.isnan(at[(256, "linear")].top1_ci)
    assert at[(256, "softmax")].verdict == "—"
    mixed = at[(256, "no-mixing")]
    assert (mixed.learned_k, mixed.learned_status, mixed.top1_mean) == (1, "mixed", 60.0)
    none = at[(256, "nystromformer")]
    assert (none.learned_k, none.learned_status, none.verdict) == (0, "none", "did not learn")
    assert math.isnan(none.top1_mean) and math.isnan(none.best_mean) and math.isnan(none.drop)  # no figure at all
    assert at[(1024, "soft")].drop == pytest.approx(-10.0) and at[(1024, "soft")].verdict == "one seed"
    assert not ((t.model == "performer") & (t.seq_len == 1024)).any()
    assert at[(256, "soft-matched")].ablation and not at[(256, "soft")].ablation
    assert at[(256, "soft")].train_hours_sum == pytest.approx(0.3)
    assert at[(256, "soft")].train_hours_mean == pytest.approx(0.1)


def test_costs_join_on_model_skeleton_and_n_and_the_pareto_set_of_what_learned():
    at = _at(accuracy_across_n(_frame()))
    assert at[(256, "soft")].latency_ms_median == 6.0 and at[(256, "soft")].peak_mem_mib == pytest.approx(20.0)
    assert math.isnan(at[(1024, "soft")].latency_ms_median)  # no efficiency row at that N
    assert at[(256, "softmax")].gmacs == pytest.approx(0.2)
    # latency: no-mixing 3 ms/60 %, linear 4/90, performer 5/65, soft 6/98, softmax 10/99 -> performer is dominated;
    # nystromformer (1 ms, did not learn) and soft-matched (0.5 ms, an ablation) would dominate all, but never count
    front = {m for (n, m), r in at.items() if n == 256 and r.pareto_latency_ms_median}
    assert front == {"no-mixing", "linear", "soft", "softmax"}
    front = {m for (n, m), r in at.items() if n == 256 and r.pareto_peak_mem_mib}
    assert front == {"no-mixing", "soft", "softmax"}


def test_verdict_and_pareto_rules():
    def row(seeds, mean, half, status="all"):
        return pd.Series(dict(model="x", seeds=seeds, top1_mean=mean, top1_ci=half, learned_status=status))

    assert verdict(row(3, 95, 2), row(3, 85, 4)) == "higher"
    assert verdict(row(3, 75, 4), row(3, 85, 4)) == "lower"
    assert verdict(row(3, 89, 4), row(3, 85, 0)) == "indistinguishable"  # touching intervals overlap
    assert verdict(row(1, 99, math.nan), row(3, 85, 4)) == "one seed"
    assert verdict(row(3, math.nan, math.nan, "none"), row(3, 85, 4)) == "did not learn"
    assert verdict(row(3, 90, 1), row(3, math.nan, math.nan, "none")) == "x did not learn"
    p = pareto(pd.Series([1.0, 2.0, 2.0, math.nan]), pd.Series([50.0, 50.0, 60.0, 99.0]))
    assert list(p) == [True, False, True, False]  # equal accuracy at a higher cost is dominated; NaN is never on it


def test_display_says_did_not_learn_and_never_a_mean_for_it():
    t = accuracy_across_n(_frame())
    d = accuracy_display(t[t.seq_len == 256]).set_index("model")
    assert d.loc["soft", "final top-1 (%)"] == "98.0 ± 2.5" and d.loc["soft", "learned"] == "3/3"
    assert d.loc["soft", "Pareto lat / mem"] == "★ / ★" and d.loc["soft", "vs softmax"] == "indistinguishable"
    assert d.loc["soft", "train h"] == "0.30 / 0.10"
    assert d.loc["no-mixing", "final top-1 (%)"] == "60.0 ± 43.0 (1/3 seeds learned)"
    assert d.loc["linear", "final top-1 (%)"] == "90.0"  # one seed: no interval
    nys = d.loc["nystromformer"]
    assert nys["final top-1 (%)"] == "did not learn within 5 epochs (0/3 seeds)" and nys["learned"] == "0/3"
    assert {nys["best top-1 (%)"], nys["Δ vs softmax"], nys["Pareto lat / mem"]} == {"—"}
    assert "50.1" not in d.to_string()  # its mean (50.07) is nowhere
    assert "Pareto lat / mem" not in accuracy_display(t, frontier=False).columns


def test_the_frontier_draws_what_learned_with_every_label_inside_its_axes(tmp_path):
    t = accuracy_across_n(_frame())
    fig = draw_frontier(t)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = set()
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        for text in ax.texts:
            e = text.get_window_extent(renderer)
            assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1 and box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1, \
                text.get_text()
            drawn.add(text.get_text())
    assert drawn == {"softmax", "soft", "performer", "linear", "no-mixing"}  # not nystromformer, not soft-matched
    path = plot_frontier(t, tmp_path / "frontier.png")
    assert path is not None and path.stat().st_size > 10_000
    assert plot_frontier(t.assign(latency_ms_median=math.nan, peak_mem_mib=math.nan), tmp_path / "x.png") is None


def test_no_training_rows_give_an_empty_table():
    assert accuracy_across_n(frame([eff_row("soft", 256, 1.0, 1.0)])).empty


def test_the_report_has_the_section_and_the_plot(tmp_path):
    from attnbench.reporting import report

    rep = report(_frame(), out=tmp_path)
    assert len(rep.accuracy) == 9 and (tmp_path / "frontier.png") in rep.files
    assert "## Accuracy: what each seed learned" in rep.markdown and "**vit-micro-d2, longrange:hard, N=256**" in \
        rep.markdown
    assert "indistinguishable" in rep.markdown and "`frontier.png`" in rep.markdown
    one = report(frame([train_row("soft", 42, 90.0)]), out=tmp_path / "one")  # one row: its section, no frontier
    assert one.accuracy.shape[0] == 1 and "## Accuracy: what each seed learned" in one.markdown
    assert not (tmp_path / "one" / "frontier.png").exists() and "frontier.png" not in one.markdown
