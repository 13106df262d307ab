"""--repeats auto: more rounds where the speed-up interval is wide, up to the cap and the time budget; bad values of
the round options are one line, exit 2, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import attnbench.sweep
from attnbench.config import ConfigError, SweepConfig, round_cap, validate
from attnbench.stats import Interval, interval_halfwidth
from tests.attnbench.test_cli import assert_one_line_error, invoke
from tests.attnbench.test_sweep import OK, ScriptedRunner, cfg

# a second timed model beside OK; the scripted runner never builds it
WIDE = "attnbench.measure.testing:Sleepy"
QUIET = [(5.0, 0.0, 7)] * 12
# medians within ±10 % (trusted), but speed-ups 10 / ms from 1.82 to 2.17: an interval ±8 % wide
SCATTERED = [(ms, 0.0, 7) for ms in (5.0, 5.5, 4.6, 5.4, 4.7, 5.3, 4.8, 5.2, 4.9, 5.1, 5.0, 5.0)]


def auto(tmp_path: Path, script: dict, models: list[str], **kw) -> tuple[ScriptedRunner, dict]:
    runner = ScriptedRunner(script)
    config = cfg(models=models, threads=1, repeats="auto", max_retries=2, **kw)
    df = attnbench.sweep.run_sweep(config, tmp_path / "run", runner=runner)
    return runner, {r["model"]: r for r in df.to_dict("records")}


def rounds_of(runner: ScriptedRunner, model: str) -> int:
    return sum(1 for m, *_ in runner.calls if m == model)


def test_auto_stops_after_the_first_rounds_when_every_interval_is_narrow(tmp_path: Path) -> None:
    runner, rows = auto(tmp_path, {"softmax": [(10.0, 0.0, 7)] * 12, OK: QUIET}, ["softmax", OK])
    assert len(runner.calls) == 6  # 3 rounds of 2 cells
    assert rows[OK]["rounds"] == 3 and rows[OK]["trusted"] == 1 and pd.isna(rows[OK]["reason"])


def test_auto_runs_to_the_cap_only_the_wide_cells_with_the_baseline(tmp_path: Path) -> None:
    runner, rows = auto(tmp_path, {"softmax": [(10.0, 0.0, 7)] * 12, OK: QUIET, WIDE: SCATTERED},
                        ["softmax", OK, WIDE])
    assert (rounds_of(runner, "softmax"), rounds_of(runner, OK), rounds_of(runner, WIDE)) == (9, 3, 9)
    wide = rows[WIDE]
    assert wide["rounds"] == 9 and len(json.loads(wide["latency_ms_rounds"])) == 9  # the row records its rounds
    assert wide["trusted"] == 1 and "wider than --target-ci 5 %" in wide["reason"] and "after 9 rounds" in \
        wide["reason"]
    assert len(json.loads(rows[OK]["latency_ms_rounds"])) == 3  # not in the extra rounds


def test_auto_respects_max_rounds_target_ci_and_the_time_budget(tmp_path: Path, monkeypatch) -> None:
    script = {"softmax": [(10.0, 0.0, 7)] * 12, WIDE: SCATTERED}
    runner, _ = auto(tmp_path / "a", script, ["softmax", WIDE], max_rounds=5)
    assert rounds_of(runner, WIDE) == 5
    runner, rows = auto(tmp_path / "b", script, ["softmax", WIDE], target_ci=20.0)  # ±8 % is narrow enough
    assert rounds_of(runner, WIDE) == 3 and pd.isna(rows[WIDE]["reason"])
    monkeypatch.setattr(attnbench.sweep, "AUTO_GROUP_BUDGET_S", 0.0)  # no time for a round beyond the first 3
    runner, rows = auto(tmp_path / "c", script, ["softmax", WIDE])
    assert rounds_of(runner, WIDE) == 3 and "after 3 rounds" in rows[WIDE]["reason"]


def test_auto_gives_an_untrusted_cell_rounds_up_to_the_cap(tmp_path: Path) -> None:
    spread = [(ms, 0.0, 7) for ms in (5.0, 8.0, 12.0)] + [(5.0, 0.0, 7)] * 9  # MAD 3/8 after 3 rounds
    runner, rows = auto(tmp_path, {"softmax": [(10.0, 0.0, 7)] * 12, OK: spread}, ["softmax", OK])
    assert rounds_of(runner, OK) == 9 and rows[OK]["trusted"] == 1  # settled, and its interval narrowed at 9
    assert json.loads(rows[OK]["latency_ms_rounds"])[-1] == 5.0


def test_auto_adds_no_round_for_load_while_the_machine_is_still_busy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(attnbench.sweep, "_still_busy", lambda *_: True)
    runner, rows = auto(tmp_path, {"softmax": [(10.0, 0.0, 7)] * 12, OK: [(50.0, 0.9, 7)] * 12}, ["softmax", OK])
    assert len(runner.calls) == 6 and rows[OK]["untrusted_reason"].endswith("the machine was still busy")


def test_a_fixed_count_keeps_its_rounds_and_retries() -> None:
    assert round_cap(SweepConfig(models=["softmax"], seq_lens=[64], repeats=3, max_retries=2)) == 5
    assert round_cap(SweepConfig(models=["softmax"], seq_lens=[64], repeats=3, max_retries=2, max_rounds=4)) == 4
    assert round_cap(SweepConfig(models=["softmax"], seq_lens=[64])) == 9  # auto, the default
    assert interval_halfwidth(Interval(2.0, 1.8, 2.2, 9, 0.96)) == pytest.approx(0.1)


@pytest.mark.parametrize("kw, field", [({"repeats": 0}, "repeats"), ({"repeats": "often"}, "repeats"),
                                       ({"target_ci": float("nan")}, "target_ci"), ({"target_ci": 0}, "target_ci"),
                                       ({"target_ci": float("inf")}, "target_ci"), ({"max_rounds": 2}, "max_rounds"),
                                       ({"repeats": 5, "max_rounds": 4}, "max_rounds")],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_config_errors_name_the_round_fields(kw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate(SweepConfig(models=["softmax"], seq_lens=[64], device="cpu", **kw))
    assert e.value.field == field and "\n" not in str(e.value)


BAD = {
    "repeats-0": (["--repeats", "0"], ["bad --repeats 0", "auto or a count"]),
    "repeats-negative": (["--repeats", "-2"], ["bad --repeats -2"]),
    "repeats-text": (["--repeats", "often"], ["--repeats", "not a valid integer, nor auto"]),
    "target-ci-nan": (["--target-ci", "nan"], ["bad --target-ci nan", "finite percentage"]),
    "target-ci-inf": (["--target-ci", "inf"], ["bad --target-ci inf"]),
    "target-ci-zero": (["--target-ci", "0"], ["bad --target-ci 0"]),
    "target-ci-negative": (["--target-ci", "-5"], ["bad --target-ci -5"]),
    "target-ci-huge": (["--target-ci", "500"], ["--target-ci 500", "exceeds the maximum 100"]),
    "max-rounds-below-auto": (["--max-rounds", "2"], ["--max-rounds 2 is below --repeats auto's first 3 rounds"]),
    "max-rounds-below-repeats": (["--repeats", "5", "--max-rounds", "4"], ["--max-rounds 4 is below --repeats 5"]),
    "max-rounds-zero": (["--repeats", "auto", "--max-rounds", "0"], ["bad --max-rounds 0"]),
}


@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("args, needles", BAD.values(), ids=BAD.keys())
def test_bad_round_options_are_one_line_exit_2_nothing_written(tmp_path: Path, args, needles, dry) -> None:
    out = tmp_path / "out"
    r = invoke("run", "-m", "softmax", "--seq", "64", "--out", out, *(["--dry-run"] if dry else []), *args)
    assert_one_line_error(r, *needles)
    assert not out.exists()


def test_a_report_of_an_auto_run_says_how_many_rounds() -> None:
    from attnbench.reporting import report
    from tests.attnbench.test_truth_peak import _rows

    df = _rows({"softmax": 20.0, "soft": 10.0}, peak=70.0).assign(rounds=3, trusted=1, latency_ms_rounds="[1, 1, 1]")
    meta = {"config": {"repeats": "auto", "max_rounds": None, "target_ci": 5.0}}
    md = report(df, meta=[meta], write=False, plots=False).markdown
    assert "timed in 3 to 9 rounds (auto: until each speed-up's interval is within ±5 %)" in md
