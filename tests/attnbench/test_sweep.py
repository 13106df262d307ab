"""Sweeps: validation before any cell, failures as rows, resume, shards, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnbench.measure.testing import process_alive
from attnbench.results import ALL_COLUMNS, load_results
from attnbench.sweep import SweepConfig, plan_cells, run_sweep

T = "attnbench.measure.testing:"
OK, FAIL = T + "ExplicitSoftmax", T + "Failing"


def cfg(**kw) -> SweepConfig:
    base = dict(models=[OK], seq_lens=[16], skeleton="layer", batch=1, modes=["infer"], device="cpu",
                min_time=0.01, timeout=120)
    return SweepConfig(**{**base, **kw})


@pytest.mark.parametrize("kw, match", [
    ({"models": ["no-such-attention"]}, "unknown attention"),
    ({"skeleton": "vit-tiny", "seq_lens": [1021]}, "cannot be tiled"),
    ({"skeleton": "vit-huge"}, "unknown skeleton"),
    ({"dtype": "fp8"}, "bad dtype"),
    ({"modes": ["fwd"]}, "bad modes"),
    ({"device": "tpu"}, "bad device"),
    ({"batch": 0}, "bad batch"),
    ({"seq_lens": [0]}, "bad sequence length"),
    ({"shard": (2, 2)}, "bad shard"),
    ({"hparams": {OK: {"no_such_knob": 1}}}, "no_such_knob"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_fails_before_any_cell(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        run_sweep(cfg(**kw), tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run" / "results.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CUDA-absent path")
def test_cuda_without_cuda_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_sweep(cfg(device="cuda:0"), tmp_path / "run")


def test_unwritable_run_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write"):
        run_sweep(cfg(), blocker / "run")


def test_shards_are_disjoint_and_cover_the_sweep() -> None:
    base = cfg(models=[OK, FAIL], seq_lens=[16, 64, 144], modes=["infer", "train"])
    full = plan_cells(base)
    assert len(full) == 12 and len({c.key() for c in full}) == 12
    shards = [plan_cells(cfg(models=[OK, FAIL], seq_lens=[16, 64, 144], modes=["infer", "train"], shard=(i, 5)))
              for i in range(5)]
    keys = [{c.key() for c in s} for s in shards]
    assert sum(len(k) for k in keys) == 12 and set().union(*keys) == {c.key() for c in full}
    assert all(c.shard == f"{i}/5" for i, s in enumerate(shards) for c in s)
    assert [c.key() for c in full[:2]] == [c.key() for c in plan_cells(base)[:2]]  # stable order
    halves = [plan_cells(cfg(models=[OK, FAIL], seq_lens=[16, 64, 144], modes=["infer", "train"], shard=(i, 2)))
              for i in range(2)]
    for half in halves:  # both modes of a (model, N) stay together, and each shard gets a mix of N and modes
        assert {c.mode for c in half} == {"infer", "train"} and len({c.seq_len for c in half}) > 1
        assert len(half) == 6


def test_pyramid_cells_carry_only_the_overrides() -> None:
    cells = plan_cells(SweepConfig(models=["soft", "soft++"], seq_lens=[3136], skeleton="soft-tiny", device="cpu",
                                   hparams={"soft": {"newton_iters": 10}}))
    assert [c.hparams_dict for c in cells] == [{"newton_iters": 10}, {}]


def test_sweep_rows_failures_resume(tmp_path: Path, cell_runner) -> None:
    run = tmp_path / "run"
    seen = []
    df = run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64]), run, runner=cell_runner,
                   on_cell=lambda spec, row, done, total: seen.append((spec.model, row["status"], done, total)))
    assert [s[1] for s in seen] == ["ok", "ok", "error", "error"]  # the failing cell did not stop the sweep
    assert [s[2:] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert list(df.columns[:len(ALL_COLUMNS)]) == ALL_COLUMNS and len(df) == 4
    assert (run / "results.parquet").exists() and len(pd.read_parquet(run / "results.parquet")) == 4
    meta = json.loads((run / "meta.json").read_text())
    assert meta["config"]["models"] == [OK, FAIL] and meta["environment"]["torch"] == torch.__version__
    ok = df[df.status == "ok"]
    assert (ok.attn_macs == ok.attn_macs_formula).all() and (ok.latency_ms_median > 0).all()

    # resume: nothing finished runs again; a new N runs only its own cells
    again = []
    run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64]), run, resume=True, runner=cell_runner,
              on_cell=lambda *a: again.append(a))
    assert again == []
    df2 = run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64, 144]), run, resume=True, runner=cell_runner,
                    on_cell=lambda spec, row, done, total: again.append(spec.seq_len))
    assert again == [144, 144] and len(df2) == 6
    assert len(json.loads((run / "meta.json").read_text())["resumed"]) == 2

    # retry_failed: only the error cells run again, and their new rows are appended
    retried = []
    df3 = run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64, 144]), run, resume=True, retry_failed=True,
                    runner=cell_runner, on_cell=lambda spec, row, done, total: retried.append(spec.model))
    assert retried == [FAIL] * 3 and len(df3) == 9


def test_resume_refuses_a_corrupt_results_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text("model,seq_len,status\nsoft,1024,exploded\n")
    with pytest.raises(ValueError, match="corrupt results file"):
        run_sweep(cfg(), run, resume=True)


SCRIPT = """
import sys
from attnbench.sweep import SweepConfig, run_sweep
T = "attnbench.measure.testing:"
config = SweepConfig(models=[T + "ExplicitSoftmax", T + "Sleepy"], seq_lens=[16], device="cpu", min_time=0.01,
                     timeout=600, hparams={T + "Sleepy": {"pidfile": sys.argv[2]}})
try:
    run_sweep(config, sys.argv[1])
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_keeps_finished_rows(tmp_path: Path) -> None:
    run, pidfile = tmp_path / "run", tmp_path / "cell.pid"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(run), str(pidfile)], stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (pidfile.exists() and pidfile.read_text()):
            time.sleep(0.2)
        assert pidfile.exists(), "the Sleepy cell never started"
        cell_pid = int(pidfile.read_text())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    df = load_results(run)
    assert list(df.status) == ["ok"] and df.model.iloc[0] == T + "ExplicitSoftmax"  # the finished row is kept
    assert (run / "results.parquet").exists()
    time.sleep(0.5)
    assert not process_alive(cell_pid), "the running cell outlived the interrupted sweep"


@pytest.mark.parametrize("model,hp", [("performer", {"nb_features": 64}), ("linformer", {"k": 64}),
                                      ("nystromformer", {"num_landmarks": 32}), ("soft", {"landmarks": 16}),
                                      ("soft++", {"newton_iters": 10}), ("softmax", {"backend": "math"})],
                         ids=lambda v: v if isinstance(v, str) else ",".join(map(str, v)))
def test_good_hparam_values_pass_validation_and_keep_the_rng(model, hp) -> None:
    from attnbench.sweep import validate

    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert validate(SweepConfig(models=[model], seq_lens=[1024], hparams={model: hp}, device="cpu")) == "cpu"
    assert torch.equal(torch.get_rng_state(), before)


def test_bad_hparam_value_fails_validation() -> None:
    from attnbench.sweep import validate

    with pytest.raises(ValueError, match="bad hyper-parameters for performer"):
        validate(SweepConfig(models=["performer"], seq_lens=[1024], hparams={"performer": {"nb_features": -1}},
                             device="cpu"))


def test_one_definition_of_modes_and_dtypes() -> None:
    from attnbench import config
    from attnbench.measure import step

    assert step.MODES is config.MODES and tuple(step.DTYPES) == config.DTYPES


@pytest.mark.parametrize("kw, field", [
    ({"skeleton": "vit-huge"}, "skeleton"), ({"seq_lens": [1021], "skeleton": "soft-tiny"}, "seq_lens"),
    ({"dtype": "fp8"}, "dtype"), ({"modes": []}, "modes"), ({"min_time": 0}, "min_time"),
    ({"threads": 0}, "threads"), ({"isolation": "thread"}, "isolation"), ({"models": [OK, OK]}, "models"),
    ({"hparams": {"softmax": {}}}, "hparams"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_validation_errors_name_the_field(kw: dict, field: str) -> None:
    from attnbench.config import ConfigError
    from attnbench.sweep import validate

    with pytest.raises(ConfigError) as e:
        validate(cfg(**kw))
    assert e.value.field == field and "\n" not in str(e.value)
