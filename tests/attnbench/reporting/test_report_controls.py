"""The local control (shapes beside longrange at the same N), the ablations' own part of the report, top-5 left out
on tasks of 5 classes or fewer, and command lines without executable paths."""
from __future__ import annotations

import pytest

from attnbench import reporting as R
from attnbench.reporting.controls import ablation_lines, local_control, local_control_display
from attnbench.reporting.format import short_command
from attnbench.reporting.frontier import accuracy_across_n
from attnbench.reporting.paper import paper_display, paper_table
from train_frames import eff_row, frame, train_row

LONG, SHAPES = "longrange:64:hard:n=4000:seed=0", "shapes:64:n=2000:seed=0"


def _both_tasks() -> list[dict]:
    """softmax learns both tasks; soft only the local one; no-mixing neither (two seeds each)."""
    tops = {("softmax", LONG): 99.0, ("softmax", SHAPES): 90.0, ("soft", LONG): 50.0, ("soft", SHAPES): 88.0,
            ("no-mixing", LONG): 50.0, ("no-mixing", SHAPES): 10.0}
    return [train_row(m, s, t, dataset=d, classes=2 if d == LONG else 10)
            for (m, d), t in tops.items() for s in (42, 43)]


def test_the_local_control_reads_each_method():
    pairs = local_control(accuracy_across_n(frame(_both_tasks())))
    d = local_control_display(pairs).set_index("model")
    assert d.loc["soft", "reading"] == "trains, but does not mix globally at this N"
    assert d.loc["no-mixing", "reading"] == "does not train in this setting"
    assert d.loc["softmax", "reading"] == "trains and mixes globally at this N"
    assert d.loc["soft", "shapes"] == "88.0 ± 0.0 (2/2 seeds learned)"
    assert d.loc["soft", "longrange"] == "did not learn within 5 epochs (0/2 seeds)"
    assert "tasks" not in d.columns  # one local and one long-range task: nothing to tell apart


def test_the_report_has_the_local_control_only_with_both_tasks():
    md = R.render_markdown(frame(_both_tasks()))
    section = md[md.index("## Local control: shapes beside longrange"):]
    section = section[:section.index("\n## ")]
    assert "| soft " in section and "trains, but does not mix globally at this N" in section
    assert "does not train in this setting" in section
    assert "## Local control" not in R.render_markdown(frame([r for r in _both_tasks() if r["dataset"] == LONG]))


def test_ablations_have_their_own_part_and_never_the_frontier():
    rows = [train_row(m, s, t) for m, t in (("softmax", 99.0), ("soft", 97.0), ("soft-matched", 99.5),
                                            ("gaussian-exact", 98.0)) for s in (42, 43)]
    rows += [eff_row(m, 256, lat, mem) for m, lat, mem in (("softmax", 10.0, 40.0), ("soft", 6.0, 20.0),
                                                           ("soft-matched", 0.5, 0.5), ("gaussian-exact", 1.0, 1.0))]
    acc = accuracy_across_n(frame(rows)).set_index("model")
    assert list(acc["ablation"]) == [m in ("soft-matched", "gaussian-exact") for m in acc.index]
    assert not acc.loc[["soft-matched", "gaussian-exact"], ["pareto_latency_ms_median", "pareto_peak_mem_mib"]].any(
        axis=None)
    assert acc.loc["soft", "pareto_latency_ms_median"]  # cheaper than softmax among the layers compared
    md = R.render_markdown(frame(rows))
    main = md[md.index("## Accuracy: what each seed learned"):md.index("## Ablations")]
    assert "| soft " in main and "soft-matched" not in main and "gaussian-exact" not in main
    ablations = md[md.index("## Ablations"):]
    assert "- `soft-matched`: ablation, not the paper's layer:" in ablations
    assert "- `gaussian-exact`: ablation" in ablations
    assert "| soft-matched " in ablations and "Pareto" not in ablations.split("\n## ")[0]


def test_an_ablation_name_that_does_not_resolve_shows_the_name_alone():
    from attnbench.registry import get_attention

    tied = get_attention("softmax-tied").description
    assert tied.startswith("ablation")
    assert ablation_lines(["no-such-attention", "softmax-tied"]) == ["`no-such-attention`", f"`softmax-tied`: {tied}"]


def test_top5_is_left_out_on_tasks_of_five_classes_or_fewer():
    two = frame([train_row("soft", 42, 90.0, classes=2), train_row("softmax", 42, 95.0, classes=5)])
    assert "top-5 (%)" not in paper_display(paper_table(two)).columns
    assert "top-5 is left out on tasks of 5 classes or fewer" in R.render_markdown(two)
    both = frame([train_row("soft", 42, 90.0, classes=2), dict(train_row("soft", 42, 60.0, classes=10,
                                                                         dataset=SHAPES), top5=93.0)])
    d = paper_display(paper_table(both)).set_index("dataset")
    assert d.loc[SHAPES, "top-5 (%)"] == "93.0" and d.loc[LONG, "top-5 (%)"] == "—"
    old = frame([dict(train_row("soft", 42, 90.0), classes=None)])  # classes unknown: shown
    assert "top-5 (%)" in paper_display(paper_table(old)).columns


def test_a_seed_that_did_not_learn_shows_so_in_the_per_seed_table():
    d = paper_display(paper_table(frame([train_row("soft", 42, 50.2), train_row("soft", 43, 97.0)])))
    assert sorted(d["top-1 (%)"]) == ["97.0", "did not learn"]


@pytest.mark.parametrize("command, short", [
    ("/root/.pyenv/versions/3.11.7/bin/attnbench train --models soft --out /tmp/x",
     "attnbench train --models soft --out /tmp/x"),
    ("/work/main/attnbench/__main__.py train --seq 256", "attnbench train --seq 256"),
    ("/usr/bin/python3.11 -m attnbench report a b", "attnbench report a b"),
    ("/root/.pyenv/versions/3.11.7/bin/python /root/.pyenv/versions/3.11.7/bin/attnbench run -m soft",
     "attnbench run -m soft"),
    ("attnbench run --out /work/main/attnbench/x", "attnbench run --out /work/main/attnbench/x"),
])
def test_command_lines_lose_their_executable_path(command, short):
    assert short_command(command) == short


def test_the_report_header_shows_short_commands():
    meta = {"cpu": "Test CPU", "cpu_count": 2, "run": "r", "command": "/work/main/attnbench/__main__.py train --x 1"}
    md = R.render_markdown(frame([train_row("soft", 42, 90.0)]), [meta])
    assert "Command (r): `attnbench train --x 1`" in md and "__main__" not in md
