"""attnbench.report(...) on run directories: shards joined, files written, bad input refused."""
from __future__ import annotations

import math

import pytest

import attnbench
from attnbench import reporting as R
from attnbench.results import append_row, write_meta
from report_frames import frame


def test_report_api_on_run_dirs_joins_shards_and_writes(tmp_path):
    df = frame()
    for i, part in enumerate((df.iloc[::2], df.iloc[1::2])):
        d = tmp_path / f"s{i}"
        d.mkdir()
        for row in part.to_dict("records"):
            append_row(d, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
        write_meta(d, {"cpu": f"cpu{i}", "cpu_count": 2})
    rep = attnbench.report([tmp_path / "s0", tmp_path / "s1"], out=tmp_path / "joined")  # the public function
    assert isinstance(rep, R.Report)
    assert len(rep.results) == len(df)
    assert set(zip(rep.results.model, rep.results.seq_len)) == set(zip(df.model, df.seq_len))
    assert (tmp_path / "joined" / "report.md").exists()
    assert {p.name for p in rep.files} >= {"report.md", "memory_infer.png", "latency_infer.png", "flops.png"}
    assert "cpu0" in rep.markdown and "cpu1" in rep.markdown


def test_load_runs_rejects_missing_and_corrupt(tmp_path):
    with pytest.raises(ValueError, match="not a run directory"):
        R.load_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results.csv"):
        R.load_runs(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.csv").write_text("model,seq_len,status\nsoft,1024,exploded\n")
    with pytest.raises(ValueError, match="corrupt results file"):
        R.load_runs(bad)


def test_report_command_fits_80_columns_when_piped_and_wide_prints_whole(tmp_path):
    from click.testing import CliRunner

    from attnbench.cli import main

    df = frame(ns=[256, 512, 1024, 2048, 4096, 8192, 16384, 32768])
    for row in df.to_dict("records"):
        append_row(tmp_path, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
    narrow = CliRunner().invoke(main, ["report", str(tmp_path), "--no-plots"])
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    assert max(len(ln) for ln in lines[:-1]) <= 80 and "Verdict" in narrow.output  # the last line: "wrote ..."
    wide = CliRunner().invoke(main, ["report", str(tmp_path), "--no-plots", "--wide"])
    assert wide.exit_code == 0 and max(len(ln) for ln in wide.output.splitlines()) > 80
    assert sum(ln.startswith("model ") for ln in wide.output.splitlines()) == 3  # no table split
