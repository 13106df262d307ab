"""Learning curves (curves.png, with its chance line) and the attention diagnostics, from constructed log.csv files."""
from __future__ import annotations

import math

from attnbench import reporting as R
from attnbench.reporting.curves import CHANCE_LABEL, draw_curves
from attnbench.reporting.diagnostics import diag_ends, diag_words
from attnbench.results import append_row
from train_frames import train_row, write_log


def _append(run, row: dict) -> None:
    append_row(run, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})


def _run(tmp_path):
    """softmax learns; soft stays at chance, its global term fading."""
    run = tmp_path / "run"
    logs = {"softmax": ([50.0, 70.0, 90.0], [50.0, 80.0, 95.0], dict(entropy=[[0.99, 0.8, 0.6], [0.99, 0.7, 0.5]])),
            "soft": ([50.0, 50.2, 49.8], [50.0, 49.8, 50.2],
                     dict(global_share=[[0.004, 0.002, 0.001], [0.002, 0.002, 0.001]],
                          newton_residual=[[3.0, 3.1, 3.3], [3.2, 3.1, 2.9]]))}
    for model, (c42, c43, diags) in logs.items():
        for i, (seed, curve) in enumerate(((42, c42), (43, c43))):
            write_log(run, model, 256, seed, curve, **{k: v[i] for k, v in diags.items()})
            _append(run, train_row(model, seed, curve[-1], best=max(curve), budget=3))
    return run


def _shapes_run(tmp_path):
    """softmax on a 10-class task at the same N, in its own run dir."""
    run = tmp_path / "shapes"
    write_log(run, "softmax", 256, 42, [20.0, 40.0, 60.0])
    _append(run, train_row("softmax", 42, 60.0, classes=10, dataset="shapes:64:n=2000:seed=0", budget=3))
    return run


def _chance_lines(fig) -> list[tuple[str, list[float]]]:
    return [(ax.get_title(), list(line.get_ydata())) for ax in fig.axes for line in ax.get_lines()
            if line.get_label() == CHANCE_LABEL]


def test_curves_have_a_line_per_seed_a_mean_per_method_and_the_chance_line(tmp_path):
    rep = R.report(_run(tmp_path), out=tmp_path / "rep")
    assert (tmp_path / "rep" / "curves.png") in rep.files and (tmp_path / "rep" / "curves.png").stat().st_size > 5000
    assert 'alt="curves.png"' in (tmp_path / "rep" / "report.html").read_text()  # embedded like the other figures
    fig = draw_curves(rep.logs, rep.accuracy)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert _chance_lines(fig) == [("vit-micro-d2, longrange:hard, N=256", [50.0, 50.0])]  # 2 classes
    line = next(ln for ln in ax.get_lines() if ln.get_label() == CHANCE_LABEL)
    assert line.get_linestyle() == "--"
    assert any(t.get_text() == CHANCE_LABEL for t in ax.texts)  # labelled on the plot, not only in the legend
    means = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label() in ("softmax", "soft")}
    assert list(means["softmax"].get_ydata()) == [50.0, 75.0, 92.5] and list(means["softmax"].get_xdata()) == [1, 2, 3]
    thin = [ln for ln in ax.get_lines() if ln.get_label().startswith("_")]
    assert len(thin) == 4 and all(ln.get_linewidth() < means["soft"].get_linewidth() for ln in thin)
    assert {ln.get_color() for ln in thin} == {means["softmax"].get_color(), means["soft"].get_color()}


def test_a_panel_per_task_and_n_each_with_its_own_chance(tmp_path):
    rep = R.report([_run(tmp_path), _shapes_run(tmp_path)], write=False)
    assert rep.logs[rep.logs["task"] == "shapes"]["top1"].tolist() == [20.0, 40.0, 60.0]  # from its own run dir
    chance = dict(_chance_lines(draw_curves(rep.logs, rep.accuracy)))
    assert chance == {"vit-micro-d2, longrange:hard, N=256": [50.0, 50.0], "vit-micro-d2, shapes, N=256": [10.0, 10.0]}
    assert _chance_lines(draw_curves(rep.logs)) == []  # classes unknown: no chance line to draw
    assert draw_curves(rep.logs.iloc[:0]) is None


def test_diagnostics_in_words_for_what_did_not_learn_and_a_table_for_every_method(tmp_path):
    rep = R.report(_run(tmp_path), write=False)
    ends = diag_ends(rep.logs).set_index("model")
    assert ends.loc["soft", "first_diag_global_share"] == 0.003 and ends.loc["soft", "diag_global_share"] == 0.001
    words = diag_words(ends.loc["soft"])
    assert words == ("global term 0.30 % of the output at epoch 1, 0.10 % at the end; Newton residual 3.1 at "
                     "epoch 1, 3.1 at the end")
    md = rep.markdown[rep.markdown.index("## Diagnostics"):]
    assert f"- `soft`, longrange:hard N=256 (0/2 seeds learned): {words}." in md
    assert "- `softmax`" not in md  # it learned: no words, only its row in the table
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert "global term" in table[0] and "Newton residual" in table[0] and "entropy" in table[0]
    softmax = next(ln for ln in table if "| softmax" in ln)
    assert "0.55" in softmax and "—" in softmax  # its entropy at the last epoch (mean of 0.6, 0.5); no global term
    assert "**global term**: SOFT: share of the output's variance" in md
