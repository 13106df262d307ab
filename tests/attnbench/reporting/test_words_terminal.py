"""`attnbench report` of a training run prints its accuracy table on the terminal (stdout), within 80 columns when
piped, the report's files named on stderr."""
from __future__ import annotations

import math

from click.testing import CliRunner
from train_frames import train_row, write_log

from attnbench.cli import main
from attnbench.results import append_row, write_meta


def train_run(path):
    """A training sweep's run dir: softmax learns on both seeds, no-mixing on neither (two epochs each, logs)."""
    for model, tops in (("softmax", (99.0, 98.0)), ("no-mixing", (50.2, 50.4))):
        for seed, top1 in zip((42, 43), tops):
            write_log(path, model, 256, seed, [50.0, top1])
            row = train_row(model, seed, top1, budget=2)
            append_row(path, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
    write_meta(path, {"cpu": "Test CPU", "cpu_count": 2, "command": "attnbench train --models softmax,no-mixing"})
    return path


def test_report_of_a_training_run_prints_its_accuracy_table(tmp_path):
    run = train_run(tmp_path / "run")
    r = CliRunner().invoke(main, ["report", str(run), "--no-plots", "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert "Accuracy: what each seed learned" in out
    rows = [ln for ln in out if ln.startswith(("softmax ", "no-mixing "))]
    assert any("2/2" in ln and "98.5" in ln for ln in rows)  # the table itself, with its figures
    assert any("0/2" in ln and "did not learn" in ln for ln in rows)
    assert max(map(len, out)) <= 80 and max(map(len, r.stderr.splitlines())) <= 80
    assert r.stderr.startswith("wrote report.md, report.html")
