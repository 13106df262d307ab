"""`attnbench compare`: ratio B/A per matching cell with a bootstrap interval, verdicts, CI exit codes, bad input."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from attnbench.cli import main
from attnbench.compare import compare_markdown, compare_runs, regressions
from attnbench.results import append_row, write_meta


def make_run(path: Path, cells: dict[tuple[str, int], list[float]], *, torch: str = "2.4", untrusted=(),
             statuses: dict | None = None) -> Path:
    """A run dir whose cells have the given round latencies (ms)."""
    path.mkdir(parents=True)
    for (model, n), rounds in cells.items():
        row = {"model": model, "scope": "layer", "skeleton": "layer", "seq_len": n, "batch": 1, "dtype": "fp32",
               "device": "cpu", "mode": "infer", "hparams": "{}", "status": (statuses or {}).get(model, "ok"),
               "latency_ms_median": sorted(rounds)[len(rounds) // 2], "latency_ms_iqr": 0.1,
               "latency_ms_rounds": rounds, "rounds_excluded": [], "trusted": 0 if model in untrusted else 1,
               "untrusted_reason": "load: other processes took 1.8 of 2 cores" if model in untrusted else None}
        append_row(path, row)
    write_meta(path, {"environment": {"cpu": "AMD EPYC", "cpu_count": 2, "torch": torch, "gpu": None}})
    return path


A_CELLS = {("softmax", 1024): [10.0, 10.2, 9.9, 10.1], ("soft", 1024): [5.0, 5.1, 4.9, 5.05],
           ("linformer", 1024): [8.0, 8.1, 7.9, 8.05], ("performer", 1024): [7.0, 7.1, 6.9, 7.05]}
B_CELLS = {("softmax", 1024): [12.0, 12.1, 11.9, 12.2], ("soft", 1024): [5.02, 5.08, 4.95, 5.0],
           ("linformer", 1024): [6.0, 6.1, 5.9, 6.05], ("performer", 1024): [9.0, 9.1, 8.9, 9.05]}


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    return make_run(tmp_path / "a", A_CELLS), make_run(tmp_path / "b", B_CELLS, untrusted=("performer",))


def test_verdicts_follow_the_interval_and_trust(runs) -> None:
    cmp = compare_runs(*runs)
    t = cmp.table.set_index("model")
    assert t.loc["softmax", "verdict"] == "slower" and t.loc["softmax", "ratio"] == pytest.approx(12.05 / 10.05)
    assert t.loc["softmax", "lo"] > 1 and t.loc["softmax", "note"] == "bootstrap, 4 vs 4 rounds"
    assert t.loc["soft", "verdict"] == "within noise" and t.loc["soft", "lo"] < 1 < t.loc["soft", "hi"]
    assert t.loc["linformer", "verdict"] == "faster" and t.loc["linformer", "hi"] < 1
    assert t.loc["performer", "verdict"] == "untrusted" and "untrusted in B" in t.loc["performer", "note"]
    assert cmp.warnings == []
    assert list(regressions(cmp, 10).model) == ["softmax"] and regressions(cmp, 25).empty  # softmax: +20 %
    md = compare_markdown(cmp)
    assert "| softmax | layer | 1024 | infer | 10.1 | 12.1 | 1.20 |" in md and "bootstrap" in md


def test_different_torch_is_compared_with_a_warning(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", A_CELLS)
    b = make_run(tmp_path / "b", A_CELLS, torch="2.5")
    cmp = compare_runs(a, b)
    assert len(cmp.warnings) == 1 and "torch '2.4' vs '2.5'" in cmp.warnings[0]
    assert set(cmp.table.verdict) == {"within noise"}


def test_cli_table_markdown_and_fail_above(runs, tmp_path: Path) -> None:
    a, b = runs
    r = CliRunner().invoke(main, ["compare", str(a), str(b), "--out", str(tmp_path / "cmp.md")])
    assert r.exit_code == 0, r.output
    assert "softmax" in r.stdout and "slower" in r.stdout and (tmp_path / "cmp.md").exists()
    r = CliRunner().invoke(main, ["compare", str(a), str(b), "--fail-above", "10"])
    said = " ".join(r.stderr.split())  # the line wraps at 80 columns when piped
    assert r.exit_code == 1 and "regression: 1 cell(s) slower by more than 10 %" in said
    assert "softmax N=1024 infer: 1.20×" in said and max(map(len, r.stderr.splitlines())) <= 80
    assert CliRunner().invoke(main, ["compare", str(a), str(b), "--fail-above", "30"]).exit_code == 0


def test_cells_that_did_not_finish_are_named(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", A_CELLS)
    b = make_run(tmp_path / "b", A_CELLS, statuses={"soft": "timeout"})
    t = compare_runs(a, b).table.set_index("model")
    assert t.loc["soft", "verdict"] == "A ok, B timeout"


@pytest.mark.parametrize("case", ["missing", "empty", "not-a-run", "no-common", "fail-above"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, case: str) -> None:
    a = make_run(tmp_path / "a", A_CELLS)
    other, extra = tmp_path / "b", []
    if case == "empty":
        other.mkdir()
    elif case == "not-a-run":
        other.mkdir()
        (other / "notes.txt").write_text("hello")
    elif case == "no-common":
        make_run(other, {("soft", 4096): [1.0, 1.1]})
    elif case == "fail-above":
        other, extra = a, ["--fail-above", "abc"]
    out = tmp_path / "cmp.md"
    r = CliRunner().invoke(main, ["compare", str(a), str(other), "--out", str(out), *extra])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output and not out.exists()
    if case == "no-common":
        assert "no cell in common" in lines[0] and "soft at N=[4096]" in lines[0]
