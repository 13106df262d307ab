"""What a seed learned: the learned test over seeds (0/n, n/n, k/n), the Student-t interval, epochs to target from
the per-pair logs, rows written before the learned test, and a report that never prints a mean top-1 for a method
that did not learn (markdown, terminal, HTML)."""
from __future__ import annotations

import io
import json
import os
import math

import pandas as pd
import pytest
from rich.console import Console

from attnbench import reporting as R
from attnbench.learning import learn_threshold_pct
from attnbench.reporting.frontier import accuracy_across_n, accuracy_display, learned_cell
from attnbench.reporting.seeds import T975, mean_interval, t975
from attnbench.results import append_row, write_meta
from train_frames import frame, train_row, write_log

THRESHOLD = learn_threshold_pct(500, 2)  # 2 classes, 500 validation images: above chance at p < 0.01


def test_t_quantiles_match_students_t_and_the_interval_is_t_s_over_root_n():
    stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 5, 29, 30, 31, 45, 100, 1000):
        assert t975(dof) == pytest.approx(stats.t.ppf(0.975, dof), abs=1e-3), dof
    assert len(T975) == 30 and t975(10_000) == pytest.approx(1.96, abs=1e-3)
    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3), abs=1e-3)
    assert mean_interval([7.0])[0] == 7.0 and math.isnan(mean_interval([7.0])[1])  # one seed: no interval
    assert mean_interval([5.0, 5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_interval([math.nan]))


def test_the_learned_test_over_seeds_none_all_and_some():
    rows = [train_row(m, s, t, learned=None)  # no learned column: the rule of attnbench.learning decides
            for m, tops in (("chance", (50.4, 49.8, 51.0)), ("jump", (95.0, 97.0, 96.0)),
                            ("some", (50.4, 90.0, 51.0))) for s, t in zip((42, 43, 44), tops)]
    rows += [train_row("best-counts", 42, 50.0, best=THRESHOLD + 0.2, learned=None),  # learned, then diverged
             train_row("best-counts", 43, 50.0, best=THRESHOLD - 0.2, learned=None)]
    at = accuracy_across_n(frame(rows)).set_index("model")
    assert [learned_cell(at.loc[m]) for m in ("chance", "jump", "some", "best-counts")] == ["0/3", "3/3", "1/3", "1/2"]
    assert list(at.loc[["chance", "jump", "some"], "learned_status"]) == ["none", "all", "mixed"]
    # the row's own column wins over the rule (the training loop wrote it)
    at = accuracy_across_n(frame([train_row("x", 42, 95.0, learned=0)])).set_index("model")
    assert at.loc["x", "learned_status"] == "none"


def test_rows_written_before_the_learned_test_are_unknown_not_failed():
    old = [dict(train_row("soft", s, t, learned=None), val_images=None, classes=None, best_top1=None,
                epochs_budget=None) for s, t in ((42, 50.0), (43, 52.0))]
    at = accuracy_across_n(frame(old)).set_index("model")
    r = at.loc["soft"]
    assert r.learned_status == "unknown" and learned_cell(r) == "?/2"
    assert learned_cell(pd.Series({**r, "learned_known": 1, "learned_k": 1})) == "1/2 (1 unknown)"
    assert r.top1_mean == 51.0 and r.best_mean == 51.0  # shown: nothing says it did not learn
    d = accuracy_display(at.reset_index()).iloc[0]
    assert d["final top-1 (%)"] == "51.0 ± 12.7" and "did not learn" not in d.to_string()


def _run(tmp_path):
    """A sweep's run dir: softmax learns (2/2), soft on one seed of two, no-mixing on none; 4 epochs, logs."""
    run = tmp_path / "run"
    curves = {"softmax": ([50.0, 60.0, 90.0, 99.0], [50.0, 80.0, 95.0, 98.0]),
              "soft": ([50.0, 50.0, 50.0, 76.0], [50.0, 51.0, 52.0, 53.0]),
              "no-mixing": ([50.2, 49.8, 50.2, 50.37], [50.0, 50.2, 49.8, 50.81])}
    for model, seeds in curves.items():
        for seed, curve in zip((42, 43), seeds):
            write_log(run, model, 256, seed, curve, attn_grad_norm=[0.5, 0.4, 0.3, 0.2])
            row = train_row(model, seed, curve[-1], best=max(curve), budget=4)
            append_row(run, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
    write_meta(run, {"cpu": "Test CPU", "cpu_count": 2,
                     "command": "/root/.pyenv/versions/3.11.7/bin/attnbench train --models softmax,soft,no-mixing"})
    return run


def test_epochs_to_target_from_the_logs(tmp_path):
    rep = R.report(_run(tmp_path), write=False)
    at = rep.accuracy.set_index("model")
    # target: chance + half of softmax's gain = 50 + (98.5 - 50) / 2; softmax's seeds reach it at epochs 3 and 2
    assert at.loc["softmax", "target_pct"] == pytest.approx(74.25)
    assert at.loc["softmax", "epochs_to_target"] == 2.5
    assert math.isnan(at.loc["soft", "epochs_to_target"])  # the median seed (of 4, never) did not reach it
    assert math.isnan(at.loc["no-mixing", "epochs_to_target"])
    assert at.loc["soft", "learned_status"] == "mixed"
    assert set(rep.logs["model"]) == {"softmax", "soft", "no-mixing"} and rep.logs["epoch"].tolist()[:4] == [1, 2, 3, 4]
    d = accuracy_display(rep.accuracy).set_index("model")
    assert d.loc["softmax", "epochs to target"] == "2.5" and d.loc["soft", "epochs to target"] == "—"
    # a row without best_top1 (written before it) takes its log's best epoch
    old = frame([dict(train_row("softmax", 42, 90.0, best=None), best_top1=None, run_dir=str(tmp_path / "run"))])
    assert accuracy_across_n(old).iloc[0]["best_mean"] == 99.0


def _terminal(rep, width: int = 200) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    for r in R.rich_tables(rep):
        console.print(r)
    return console.export_text()


def test_the_report_says_did_not_learn_and_never_prints_a_mean_for_it(tmp_path):
    rep = R.report(_run(tmp_path), out=tmp_path / "rep")
    html = (tmp_path / "rep" / "report.html").read_text()
    for text in (rep.markdown, _terminal(rep), html):
        assert "did not learn within 4 epochs (0/2 seeds)" in text
        assert "50.6" not in text and "50.4" not in text and "50.8" not in text  # no-mixing: mean 50.59, 50.37, 50.81
        assert "1/2 seeds learned" in text  # soft: mixed, beside its numbers
    section = rep.markdown[rep.markdown.index("## Accuracy: what each seed learned"):]
    line = next(ln for ln in section.splitlines() if ln.startswith("| no-mixing"))
    assert "| 0/2 " in line and line.count("—") >= 4  # best, epochs, Δ, Pareto: no figure
    softmax = next(ln for ln in section.splitlines() if ln.startswith("| softmax"))
    assert "98.5 ± 6.4" in softmax and "| 2/2 " in softmax  # final 99, 98: t(1) = 12.706 x 0.707 / 1.414
    assert "Plots: `curves.png`" in rep.markdown
    narrow = _terminal(rep, 80).splitlines()  # split into tables that fit, never a cell cut or wrapped
    assert max(map(len, narrow)) <= 80 and sum("did not learn within 4 epochs (0/2 seeds)" in ln for ln in narrow) == 1


def test_the_report_shows_commands_without_executable_paths(tmp_path):
    rep = R.report(_run(tmp_path), write=False)
    assert "`attnbench train --models softmax,soft,no-mixing`" in rep.markdown
    assert "/root/.pyenv" not in rep.markdown


def test_load_runs_keeps_each_rows_source_dir_through_a_join(tmp_path):
    from click.testing import CliRunner

    from attnbench.cli import main

    a = _run(tmp_path / "a")
    b = tmp_path / "b" / "run"
    write_log(b, "softmax", 1024, 42, [50.0, 99.0])
    append_row(b, {k: v for k, v in train_row("softmax", 42, 99.0, n=1024).items()
                   if not (isinstance(v, float) and math.isnan(v))})
    df, _ = R.load_runs([a, b])
    assert set(df["run_dir"]) == {str(a.resolve()), str(b.resolve())}
    r = CliRunner().invoke(main, ["report", str(a), str(b), "--out", str(tmp_path / "joined")])
    assert r.exit_code == 0, r.output
    rep = R.report(tmp_path / "joined", write=False)  # the joined run's logs stay in their own run dirs
    assert set(zip(rep.logs["model"], rep.logs["seq_len"])) == {("softmax", 256), ("soft", 256), ("no-mixing", 256),
                                                                ("softmax", 1024)}
    assert (tmp_path / "joined" / "curves.png").exists()
    assert set(pd.read_csv(tmp_path / "joined" / "results.csv")["run_dir"]) == {os.path.relpath(a, tmp_path / "joined"), "../b/run"}  # portable
    # a join written before rows kept their dir: found from the run labels among meta.json's joined_from
    joined = tmp_path / "joined"
    csv = joined / "results.csv"
    pd.read_csv(csv).drop(columns="run_dir").to_csv(csv, index=False)
    meta = json.loads((joined / "meta.json").read_text())
    assert meta["joined_from"] == [str(a), str(b)]
    df, _ = R.load_runs(joined)
    assert set(df["run_dir"]) == {str(a.resolve()), str(b.resolve())}
