"""``attnbench run --dry-run`` and ``attnbench.plan``: the same validation as ``run``, nothing created, the planned
cells in run order, and an estimate that behaves like the sweep it models."""
from __future__ import annotations

import pytest

from attnbench.config import SweepConfig
from attnbench.plan import plan_sweep
from attnbench.results import append_row
from tests.attnbench.test_cli import BAD_RUN_INPUTS, assert_one_line_error, invoke

CAL = {"matmul_gflops": {"fp32": 50.0, "bf16": 10.0}}  # a fixed machine: the plan is a pure function of it


@pytest.mark.parametrize("args, needles", BAD_RUN_INPUTS.values(), ids=BAD_RUN_INPUTS.keys())
def test_dry_run_refuses_what_run_refuses(tmp_path, args, needles):
    r = invoke("run", "--dry-run", "--out", tmp_path / "out", *args)
    assert_one_line_error(r, *needles)
    assert not (tmp_path / "out").exists()


def test_dry_run_refuses_unusable_run_dirs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_line_error(invoke("run", "--dry-run", "--out", blocker / "sub"), "cannot write to --out")
    done = tmp_path / "out" / "done"
    done.mkdir(parents=True)
    append_row(done, {"model": "soft", "seq_len": 1024, "status": "ok"})
    assert_one_line_error(invoke("run", "--dry-run", "--out", tmp_path / "out", "--name", "done"), "already exists")
    assert_one_line_error(invoke("run", "--dry-run", "--out", tmp_path / "out", "--name", "x", "--resume"),
                          "no run 'x'")


def test_dry_run_lists_the_cells_and_creates_nothing(tmp_path):
    out = tmp_path / "out"
    r = invoke("run", "--dry-run", "--out", out, "--models", "soft,softmax", "--seq", "1024,2048", "--mode", "infer")
    assert r.exit_code == 0, r.output
    assert not out.exists()
    text = r.stdout
    assert "soft, softmax" in text and "1,024" in text and "2,048" in text
    assert "4 cells to run (3 to 9 rounds each), 0 skipped" in text  # --repeats auto, the default
    assert "estimated wall time" in text and "--repeats auto: from 3 rounds a cell to 9" in " ".join(text.split())
    r = invoke("run", "--dry-run", "--out", out, "--models", "soft,softmax", "--seq", "1024", "--repeats", "3",
               "--mode", "infer")
    assert r.exit_code == 0 and "2 cells to run (3 rounds each), 0 skipped" in r.stdout, r.output


def _config(**kw) -> SweepConfig:
    base = dict(models=["soft", "softmax"], seq_lens=[1024, 4096], modes=["infer"], skeleton="layer")
    return SweepConfig(**{**base, **kw})


def test_plan_is_the_sweeps_cells_in_order():
    from attnbench.sweep import plan_cells

    config = _config(modes=["infer", "train"])
    plan = plan_sweep(config, calibration=CAL)
    assert [c.spec for c in plan.cells] == plan_cells(config)
    assert all(c.status == "run" and c.seconds > 0 for c in plan.cells)


def test_estimate_grows_with_n_mode_rounds_and_min_time():
    by_n = {c.spec.seq_len: c.seconds for c in plan_sweep(_config(models=["softmax"]), calibration=CAL).cells}
    assert by_n[4096] > by_n[1024]
    infer, train = (plan_sweep(_config(modes=[m]), calibration=CAL).seconds for m in ("infer", "train"))
    assert train > infer
    r1, r5 = (plan_sweep(_config(repeats=r), calibration=CAL).seconds for r in (1, 5))
    assert r5 > r1
    fast, slow = (plan_sweep(_config(min_time=t), calibration=CAL).seconds for t in (0.1, 10))
    assert slow > fast + 2 * 10 - 1  # four cells, each timed for at least --min-time


def test_plan_without_calibration_says_so():
    plan = plan_sweep(_config(), calibration={"matmul_gflops": {}, "reason": "calibration failed: X"})
    assert plan.gflops is None and plan.seconds == 0
    assert any("calibration failed" in n for n in plan.notes)


def test_memory_skips_and_resume_are_planned_like_the_sweep(tmp_path):
    config = _config(models=["softmax-math", "soft"], mem_limit=2**20)  # 1 MiB: the N^2 scores cannot fit
    plan = plan_sweep(config, calibration=CAL)
    skipped = {(c.spec.model, c.spec.seq_len) for c in plan.cells if c.status == "skipped"}
    assert ("softmax-math", 4096) in skipped and all(c.reason.startswith("estimated memory")
                                                     for c in plan.cells if c.status == "skipped")
    config = _config()
    first = [c.spec for c in plan_sweep(config, calibration=CAL).cells]
    for spec in first:  # N=1024 complete; at 4096 only soft has a row
        if spec.seq_len == 1024 or spec.model == "soft":
            append_row(tmp_path, {**spec.base_row(), "status": "ok"})
    plan = plan_sweep(config, tmp_path, resume=True, calibration=CAL)
    status = {(c.spec.model, c.spec.seq_len): (c.status, c.reason) for c in plan.cells}
    assert status[("soft", 1024)][0] == status[("softmax", 1024)][0] == "done"
    assert status[("softmax", 4096)] == ("run", None)
    assert status[("soft", 4096)] == ("run", "re-measured with its group")  # the sweep re-runs the group whole


def test_auto_rounds_estimate_a_range_up_to_the_cap_and_the_budget():
    from attnbench.config import AUTO_GROUP_BUDGET_S

    fixed, auto = (plan_sweep(_config(repeats=r), calibration=CAL) for r in (3, "auto"))
    assert auto.seconds == pytest.approx(fixed.seconds)  # every cell stops after its first 3 rounds
    assert fixed.seconds_max == pytest.approx(fixed.seconds) and auto.seconds_max > auto.seconds
    assert (auto.rounds, fixed.rounds) == ("3 to 9 rounds each", "3 rounds each")
    capped = plan_sweep(_config(repeats="auto", max_rounds=4), calibration=CAL)
    assert auto.seconds < capped.seconds_max < auto.seconds_max and capped.rounds == "3 to 4 rounds each"
    slow = plan_sweep(_config(repeats="auto", min_time=200.0), calibration=CAL)  # 3 rounds already past the budget
    assert all(c.seconds > AUTO_GROUP_BUDGET_S / 2 for c in slow.cells) and slow.seconds_max == slow.seconds
