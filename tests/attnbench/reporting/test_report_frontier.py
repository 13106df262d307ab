"""Accuracy across N and the accuracy-versus-cost frontier, on constructed rows: seeds reduced, the change against
softmax with its spread, 'indistinguishable' where seed ranges overlap, costs joined on (model, skeleton, N), the
Pareto set, the plot."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from attnbench.reporting.frontier import accuracy_across_n, accuracy_display, pareto, plot_frontier, verdict
from attnbench.results import ALL_COLUMNS

SK = "vit-micro-d2"


def _train(model: str, n: int, seed: int, top1: float, hparams: str = "{}") -> dict:
    return dict(model=model, scope="train", skeleton=SK, seq_len=n, batch=32, dtype="fp32", device="cpu",
                mode="train", status="ok", top1=top1, top5=100.0, epochs=5, dataset=f"longrange:{n}", seed=seed,
                macs=1e8 * (n / 256) * (2 if model == "softmax" else 1), params=2e5, train_hours=0.1,
                hparams=hparams)


def _eff(model: str, n: int, latency: float, mem_mib: float) -> dict:
    return dict(model=model, scope="vit", skeleton=SK, seq_len=n, batch=1, dtype="fp32", device="cpu",
                mode="infer", status="ok", latency_ms_median=latency, latency_ms_iqr=latency / 20,
                peak_mem_bytes=mem_mib * 2**20, hparams="{}", params=2e5)


def _frame() -> pd.DataFrame:
    rows = [_train("softmax", 256, 42, 100.0), _train("softmax", 256, 43, 98.0),
            _train("soft", 256, 42, 97.0), _train("soft", 256, 43, 99.0),          # overlaps softmax's 98..100
            _train("performer", 256, 42, 60.0), _train("performer", 256, 43, 70.0),  # below it
            _train("linear", 256, 42, 90.0),                                        # one seed
            _train("softmax", 1024, 42, 90.0), _train("soft", 1024, 42, 80.0),
            dict(_train("nystromformer", 256, 42, math.nan), status="nan", top1=None),  # a failed pair: not counted
            _eff("softmax", 256, 10.0, 40.0), _eff("soft", 256, 6.0, 20.0), _eff("performer", 256, 5.0, 30.0),
            _eff("linear", 256, 4.0, 50.0), _eff("softmax", 1024, 80.0, 400.0)]
    return pd.DataFrame(rows, columns=ALL_COLUMNS)


def test_seeds_are_reduced_and_compared_with_softmax():
    t = accuracy_across_n(_frame())
    at = {(r.seq_len, r.model): r for r in t.itertuples()}
    assert list(t[t.seq_len == 256]["model"]) == ["softmax", "soft", "linear", "performer"]  # best first
    s = at[(256, "soft")]
    assert (s.seeds, s.top1_mean, s.top1_min, s.top1_max) == (2, 98.0, 97.0, 99.0)
    assert s.top1_std == pytest.approx(math.sqrt(2)) and s.drop == pytest.approx(-1.0)
    assert s.drop_spread == pytest.approx(2.0)  # sqrt(2 + 2)
    assert s.verdict == "indistinguishable"  # 97..99 overlaps 98..100: never called worse
    assert at[(256, "performer")].verdict == "lower" and at[(256, "performer")].drop == pytest.approx(-34.0)
    assert at[(256, "linear")].verdict == "one seed" and math.isnan(at[(256, "linear")].drop_spread)
    assert at[(256, "softmax")].verdict == "—" and at[(256, "softmax")].drop == 0
    assert at[(1024, "soft")].drop == pytest.approx(-10.0) and at[(1024, "soft")].verdict == "one seed"
    assert not (t["model"] == "nystromformer").any()


def test_costs_join_on_model_skeleton_and_n_and_the_pareto_set():
    t = accuracy_across_n(_frame())
    at = {(r.seq_len, r.model): r for r in t.itertuples()}
    assert at[(256, "soft")].latency_ms_median == 6.0 and at[(256, "soft")].peak_mem_mib == pytest.approx(20.0)
    assert math.isnan(at[(1024, "soft")].latency_ms_median)  # no efficiency row at that N
    assert at[(256, "softmax")].gmacs == pytest.approx(0.2)
    # latency: linear 4 ms/90 %, performer 5/65, soft 6/98, softmax 10/99 -> performer is dominated by linear
    front = {m for (n, m), r in at.items() if n == 256 and r.pareto_latency_ms_median}
    assert front == {"linear", "soft", "softmax"}
    front = {m for (n, m), r in at.items() if n == 256 and r.pareto_peak_mem_mib}
    assert front == {"soft", "softmax"}  # soft: least memory; softmax: most accurate


def test_verdict_and_pareto_rules():
    row = lambda seeds, lo, hi: pd.Series(dict(seeds=seeds, top1_min=lo, top1_max=hi))  # noqa: E731
    assert verdict(row(2, 90, 95), row(3, 80, 89)) == "higher"
    assert verdict(row(2, 70, 79), row(3, 80, 89)) == "lower"
    assert verdict(row(2, 89, 95), row(3, 80, 89)) == "indistinguishable"  # touching ranges overlap
    assert verdict(row(1, 99, 99), row(3, 80, 89)) == "one seed"
    p = pareto(pd.Series([1.0, 2.0, 2.0, math.nan]), pd.Series([50.0, 50.0, 60.0, 99.0]))
    assert list(p) == [True, False, True, False]  # equal accuracy at a higher cost is dominated; NaN is never on it


def test_display_and_plot(tmp_path):
    t = accuracy_across_n(_frame())
    d = accuracy_display(t)
    soft = d[(d["model"] == "soft") & (d["N"] == "256")].iloc[0]
    assert soft["top-1 (%)"] == "98.0 ± 1.4" and soft["Δ vs softmax"] == "-1.0 ± 2.0" and soft["n"] == "2"
    assert soft["Pareto lat / mem"] == "★ / ★" and soft["vs softmax"] == "indistinguishable"
    assert d[(d["model"] == "soft") & (d["N"] == "1,024")].iloc[0]["latency (ms)"] == "—"
    path = plot_frontier(t, tmp_path / "frontier.png")
    assert path is not None and path.stat().st_size > 10_000
    assert plot_frontier(t.assign(latency_ms_median=math.nan, peak_mem_mib=math.nan), tmp_path / "x.png") is None


def test_no_training_rows_give_an_empty_table():
    eff_only = pd.DataFrame([_eff("soft", 256, 1.0, 1.0)], columns=ALL_COLUMNS)
    assert accuracy_across_n(eff_only).empty


def test_the_report_has_the_section_and_the_plot(tmp_path):
    from attnbench.reporting import report

    rep = report(_frame(), out=tmp_path)
    assert len(rep.accuracy) == 6 and (tmp_path / "frontier.png") in rep.files
    assert "## Accuracy across N, and the accuracy-versus-cost frontier" in rep.markdown
    assert "indistinguishable" in rep.markdown and "`frontier.png`" in rep.markdown
    one = report(_frame().iloc[:1], out=tmp_path / "one")  # a single training row: no comparison, no frontier
    assert one.accuracy.shape[0] == 1 and "Accuracy across N" not in one.markdown
    assert not (tmp_path / "one" / "frontier.png").exists()
