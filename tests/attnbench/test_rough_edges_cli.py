"""A new user's rough edges: --resume runs the run's own options (or refuses others), every output is checked before
the first cell, numbers are finite and bounded, and the dry run counts the skips the run makes."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from attnbench.config import ConfigError, SweepConfig
from attnbench.results import append_row, load_results, write_meta
from tests.attnbench.test_cli import assert_one_line_error, fake_engine, invoke
from tests.attnbench.test_compare import A_CELLS, make_run

RUN = ["--models", "soft,softmax", "--seq", "256", "--mode", "infer", "--device", "cpu", "--no-plots"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path, monkeypatch):
    """A finished two-cell run ``out/r`` made by the stand-in engine, and that engine's calls."""
    calls = fake_engine(monkeypatch)
    r = invoke("run", *RUN, "--out", tmp_path, "--name", "r")
    assert r.exit_code == 0, r.output
    calls.clear()
    return tmp_path, tmp_path / "r", calls


# ----------------------------------------------------------------------------------------------------- resume


def test_resume_without_options_reproduces_the_stored_sweep(finished):
    out, run_dir, calls = finished
    r = invoke("run", "--resume", "--name", "r", "--out", out)
    assert r.exit_code == 0, r.output
    cfg = calls[-1]
    assert (cfg.models, cfg.seq_lens, cfg.modes, cfg.skeleton) == (["soft", "softmax"], [256], ["infer"], "layer")
    assert len(load_results(run_dir)) == 2  # not the default sweep's 30 cells added to it
    plan = invoke("run", "--resume", "--name", "r", "--out", out, "--dry-run")
    assert plan.exit_code == 0 and "0 cells to run" in plan.stdout and "2 done" in plan.stdout, plan.output


@pytest.mark.parametrize("args, needles", [
    (["--models", "soft"], ["--models soft differs from the run's soft,softmax", "--extend"]),
    (["--seq", "512"], ["--seq 512 differs from the run's 256"]),
    (["--batch", "2", "--extend"], ["--batch 2 differs from the run's 1", "another --name"]),
    (["--repeats", "5"], ["--repeats 5 differs from the run's auto"]),  # the default: auto
    (["-p", "soft.landmarks=16"], ["--hparam soft.landmarks=16 differs from the run's none"]),
    (["--models", "soft", "--extend"], []),  # a subset under --extend adds nothing: a plain resume
], ids=["models", "seq", "batch-extend", "repeats", "hparam", "extend-subset"])
def test_resume_with_other_cells_is_refused_and_changes_nothing(finished, args, needles):
    out, run_dir, calls = finished
    before = snapshot(run_dir)
    r = invoke("run", "--resume", "--name", "r", "--out", out, *args)
    if not needles:
        assert r.exit_code == 0 and calls[-1].models == ["soft", "softmax"], r.output
        return
    assert_one_line_error(r, *needles)
    assert calls == [] and snapshot(run_dir) == before


def test_extend_adds_cells_and_a_later_resume_keeps_them(finished):
    out, run_dir, calls = finished
    r = invoke("run", "--resume", "--extend", "--name", "r", "--out", out, "--models", "performer", "--seq", "512",
               "-p", "performer.nb_features=16")
    assert r.exit_code == 0, r.output
    cfg = calls[-1]
    assert cfg.models == ["soft", "softmax", "performer"] and cfg.seq_lens == [256, 512]
    assert cfg.hparams == {"performer": {"nb_features": 16}} and len(load_results(run_dir)) == 6
    r = invoke("run", "--resume", "--name", "r", "--out", out, "--timeout", "300")  # how hard to try may change
    assert r.exit_code == 0, r.output
    assert calls[-1].models == cfg.models and calls[-1].timeout == 300 and len(load_results(run_dir)) == 6


def test_resume_of_a_folder_without_run_options_is_refused(tmp_path):
    d = tmp_path / "joined"
    append_row(d.mkdir() or d, {"model": "soft", "seq_len": 256, "status": "ok"})
    write_meta(d, {"joined_from": ["a", "b"]})
    assert_one_line_error(invoke("run", "--resume", "--name", "joined", "--out", tmp_path), "records no options")


def test_the_library_refuses_a_resume_that_changes_the_cells(tmp_path):
    from attnbench.sweep import run_sweep

    stored = SweepConfig(models=["soft", "softmax"], seq_lens=[256], device="cpu")
    append_row(tmp_path, {"model": "soft", "seq_len": 256, "status": "ok"})
    write_meta(tmp_path, {"config": {**dataclasses.asdict(stored), "device_resolved": "cpu"}})
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="models soft differs from the run's soft,softmax") as e:
        run_sweep(dataclasses.replace(stored, models=["soft"]), tmp_path, resume=True)
    assert e.value.field == "models" and snapshot(tmp_path) == before
    with pytest.raises(ConfigError, match="extend adds to the run's cells and never drops"):
        run_sweep(dataclasses.replace(stored, models=["soft"]), tmp_path, resume=True, extend=True)
    with pytest.raises(ConfigError, match="cannot add cells to shard 0/2"):
        write_meta(tmp_path, {"config": {**dataclasses.asdict(stored), "shard": [0, 2]}})
        run_sweep(dataclasses.replace(stored, shard=(0, 2)), tmp_path, resume=True, extend=True)


# ------------------------------------------------------------------------------------ outputs checked first


def test_a_folder_shaped_results_csv_fails_before_any_cell(tmp_path, monkeypatch):
    calls = fake_engine(monkeypatch)
    (tmp_path / "r" / "results.csv").mkdir(parents=True)
    for extra in (["--resume"], ["--models", "soft", "--seq", "256"], ["--resume", "--dry-run"]):
        r = invoke("run", "--name", "r", "--out", tmp_path, *extra)
        assert_one_line_error(r, "results.csv is a folder")
    assert calls == [] and sorted(p.name for p in (tmp_path / "r").iterdir()) == ["results.csv"]


def test_an_unwritable_results_csv_fails_before_any_cell(finished, monkeypatch):
    # tests run as root, whom file modes do not stop: os.access stands in for a read-only file
    out, run_dir, calls = finished
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p).name != "results.csv" and real(p, mode, **kw))
    before = snapshot(run_dir)
    assert_one_line_error(invoke("run", "--resume", "--name", "r", "--out", out), "results.csv is not writable")
    assert calls == [] and snapshot(run_dir) == before


def test_the_library_checks_its_outputs_before_any_cell(tmp_path):
    from attnbench.sweep import run_sweep

    (tmp_path / "run" / "meta.json").mkdir(parents=True)
    with pytest.raises(ConfigError, match="meta.json is a folder"):
        run_sweep(SweepConfig(models=["soft"], seq_lens=[64], device="cpu"), tmp_path / "run")
    assert not (tmp_path / "run" / "results.csv").exists()


@pytest.mark.parametrize("name", ["report.html", "report.md.tmp", "results.csv"])
def test_report_out_is_checked_before_anything_is_written(tmp_path, name):
    a = make_run(tmp_path / "a", A_CELLS)
    out = tmp_path / "share"
    (out / name).mkdir(parents=True)
    args = [a, tmp_path / "b"] if name == "results.csv" else [a]
    if name == "results.csv":
        make_run(tmp_path / "b", {("soft", 2048): [1.0, 1.1]})
    r = invoke("report", *args, "--out", out, "--no-plots")
    assert_one_line_error(r, f"{name}")
    assert sorted(p.name for p in out.iterdir()) == [name]


# ------------------------------------------------------------------------------------------ bounded numbers


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e9"])
def test_fail_above_must_be_finite_and_bounded(tmp_path, value):
    a = make_run(tmp_path / "a", A_CELLS)
    r = invoke("compare", a, a, "--fail-above", value, "--out", tmp_path / "cmp.md")
    assert_one_line_error(r, "--fail-above", "10000" if value == "1e9" else "finite percentage")
    assert not (tmp_path / "cmp.md").exists()


def test_the_library_refuses_a_gate_that_cannot_fire(tmp_path):
    from attnbench.compare import compare_runs, regressions

    a = make_run(tmp_path / "a", A_CELLS)
    with pytest.raises(ConfigError, match="bad fail_above nan"):
        regressions(compare_runs(a, a), float("nan"))


# ------------------------------------------------------------------------------------ the dry run's skips


class SkipCheckingRunner:
    """A runner whose cells do what a real cell's process does first, its own skip check (``cell._check_device``),
    and stop there with an ``error`` row: the run's skips, without measuring anything."""

    def __init__(self) -> None:
        self.asked: list = []

    def run(self, spec, timeout=None, mem_limit_bytes=None):
        from attnbench.cell import SkipCell, _check_device
        from attnbench.registry import get_attention

        self.asked.append(spec)
        try:
            _check_device(spec, get_attention(spec.model))
        except SkipCell as e:
            return {**spec.base_row(), "status": "skipped", "reason": str(e)}
        return {**spec.base_row(), "status": "error", "reason": "not measured (test runner)"}


def test_the_dry_run_counts_the_skips_the_run_makes(tmp_path):
    import torch

    from attnbench.plan import plan_sweep
    from attnbench.registry import list_attentions
    from attnbench.sweep import run_sweep

    if torch.cuda.is_available():
        pytest.skip("checks the CPU's skips (xformers)")
    config = SweepConfig(models=list_attentions(), seq_lens=[64], modes=["infer"], device="cpu", repeats=1,
                         min_time=0.01, threads=1)
    plan = plan_sweep(config, calibration={"matmul_gflops": {"fp32": 50.0}})
    runner = SkipCheckingRunner()
    rows = run_sweep(config, tmp_path / "run", runner=runner)
    skipped = rows[rows.status == "skipped"]
    assert "softmax-xformers" in set(skipped.model)
    assert plan.count("skipped") == len(skipped)
    assert {c.spec.model: c.reason for c in plan.cells if c.status == "skipped"} == dict(zip(skipped.model,
                                                                                           skipped.reason))
    assert not {s.model for s in runner.asked} & set(skipped.model)  # decided before any cell runs
    r = invoke("run", "--models", "all", "--seq", "64", "--mode", "infer", "--device", "cpu", "--dry-run",
               "--out", tmp_path / "dry")
    assert r.exit_code == 0 and f"{len(skipped)} skipped" in r.stdout, r.output
    assert "skipped softmax-xformers N=64 infer: softmax-xformers runs on cuda only" in " ".join(r.stdout.split())
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["config"]["models"] == config.models


def test_a_resume_keeps_the_stored_order_of_models_n_and_modes():
    from attnbench.config import check_resume, resumed_config

    stored = SweepConfig(models=["soft", "softmax"], seq_lens=[256, 1024], modes=["infer", "train"], shard=(0, 2))
    given = dict(models=["softmax", "soft"], seq_lens=[1024, 256], modes=["train", "infer"])
    config = resumed_config(stored, given)  # the same cells typed in another order: the groups (and shard) as stored
    assert (config.models, config.seq_lens, config.modes) == (stored.models, stored.seq_lens, stored.modes)
    check_resume(config, stored)
