"""Sweeps: validation before any cell, failures as rows, resume, shards, Ctrl-C."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnbench.measure.testing import process_alive, signal_running_cell
from attnbench.results import ALL_COLUMNS, load_results
from attnbench.sweep import SweepConfig, plan_cells, plan_groups, run_sweep

T = "attnbench.measure.testing:"
OK, FAIL = T + "ExplicitSoftmax", T + "Failing"


def cfg(**kw) -> SweepConfig:
    base = dict(models=[OK], seq_lens=[16], skeleton="layer", batch=1, modes=["infer"], device="cpu",
                min_time=0.01, timeout=120, repeats=2, max_retries=0)
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
    ({"repeats": 0}, "bad repeats"),
    ({"repeats": 10**9}, "repeats 1000000000 exceeds the maximum 1000"),
    ({"max_retries": -1}, "bad max_retries"),
    ({"max_retries": 10**9}, "max_retries 1000000000 exceeds the maximum 100"),
    ({"shard": (0, 10**9)}, "shards exceed the maximum"),
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
    for half in halves:  # every model of an (N, mode) stays in one shard (its pairs), and shards mix N and modes
        assert {c.mode for c in half} == {"infer", "train"} and len({c.seq_len for c in half}) > 1
        assert len(half) == 6
        for c in half:
            assert {(d.model, d.seq_len, d.mode) for d in half} >= {(m, c.seq_len, c.mode) for m in (OK, FAIL)}


def test_groups_hold_every_model_at_one_n_and_mode() -> None:
    groups = plan_groups(cfg(models=["softmax", OK], seq_lens=[16, 64], modes=["infer", "train"]))
    assert [[(c.model, c.seq_len, c.mode) for c in g] for g in groups] == [
        [("softmax", 16, "infer"), (OK, 16, "infer")], [("softmax", 16, "train"), (OK, 16, "train")],
        [("softmax", 64, "train"), (OK, 64, "train")], [("softmax", 64, "infer"), (OK, 64, "infer")]]


def test_pyramid_cells_carry_only_the_overrides() -> None:
    cells = plan_cells(SweepConfig(models=["soft", "soft++"], seq_lens=[3136], skeleton="soft-tiny", device="cpu",
                                   hparams={"soft": {"newton_iters": 10}}))
    assert [c.hparams_dict for c in cells] == [{"newton_iters": 10}, {}]


def test_sweep_rows_failures_resume(tmp_path: Path, cell_runner) -> None:
    run = tmp_path / "run"
    seen = []
    df = run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64]), run, runner=cell_runner,
                   on_cell=lambda spec, row, done, total: seen.append((spec.model, row["status"], done, total)))
    assert [s[1] for s in seen] == ["ok", "error", "ok", "error"]  # the failing cell did not stop the sweep
    assert [s[2:] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert list(df.columns[:len(ALL_COLUMNS)]) == ALL_COLUMNS and len(df) == 4
    assert (run / "results.parquet").exists() and len(pd.read_parquet(run / "results.parquet")) == 4
    meta = json.loads((run / "meta.json").read_text())
    assert meta["config"]["models"] == [OK, FAIL] and meta["environment"]["torch"] == torch.__version__
    ok = df[df.status == "ok"]
    assert (ok.attn_macs == ok.attn_macs_formula).all() and (ok.latency_ms_median > 0).all()
    assert [len(json.loads(v)) for v in ok.latency_ms_rounds] == [2, 2] and set(ok.trusted) <= {0, 1}
    assert df.pair_group.nunique() == 2 and "machine" in meta and meta["machine"]["cells_timed"] == 2

    # resume: nothing finished runs again; an added N (extend) runs only its own cells
    again = []
    run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64]), run, resume=True, runner=cell_runner,
              on_cell=lambda *a: again.append(a))
    assert again == []
    with pytest.raises(ValueError, match="seq_lens 16,64,144 differs from the run's 16,64"):
        run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64, 144]), run, resume=True, runner=cell_runner)
    df2 = run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64, 144]), run, resume=True, extend=True,
                    runner=cell_runner, on_cell=lambda spec, row, done, total: again.append(spec.seq_len))
    assert again == [144, 144] and len(df2) == 6
    assert len(json.loads((run / "meta.json").read_text())["resumed"]) == 2

    # retry_failed: the groups of the error cells run again whole (their pairs stay in one set of rounds)
    retried = []
    df3 = run_sweep(cfg(models=[OK, FAIL], seq_lens=[16, 64, 144]), run, resume=True, retry_failed=True,
                    runner=cell_runner, on_cell=lambda spec, row, done, total: retried.append(spec.model))
    assert retried == [OK, FAIL] * 3 and len(df3) == 12


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
quick = SweepConfig(models=[T + "ExplicitSoftmax"], seq_lens=[16], device="cpu", min_time=0.01, repeats=1)
config = SweepConfig(models=[T + "ExplicitSoftmax", T + "Sleepy"], seq_lens=[16], device="cpu", min_time=0.01,
                     timeout=600, hparams={T + "Sleepy": {"pidfile": sys.argv[2]}}, repeats=1)
try:
    run_sweep(quick, sys.argv[1])  # a finished group: its row is on disk
    run_sweep(config, sys.argv[1], resume=True)  # the N=16 group runs again with Sleepy, which hangs
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.heavy  # tens of seconds of process start-ups: run with -m heavy
def test_ctrl_c_keeps_finished_rows(tmp_path: Path) -> None:
    run, pidfile = tmp_path / "run", tmp_path / "cell.pid"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(run), str(pidfile)], stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    cell_pid, err = signal_running_cell(proc, pidfile, signal.SIGINT)
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


# ----------------------------------------------------------------------------- rounds, with a scripted runner


class ScriptedRunner:
    """Stands in for CellRunner: each model's calls return the next (ms, others' share, blocks) of its script."""

    def __init__(self, script: dict[str, list[tuple[float, float, int | None]]]) -> None:
        self.script = {m: list(v) for m, v in script.items()}
        self.calls: list[tuple[str, bool, int | None, int | None]] = []

    def run(self, spec, timeout=None, mem_limit_bytes=None) -> dict:
        self.calls.append((spec.model, spec.timing_only, spec.threads, spec.min_blocks))
        row = {**spec.base_row(), "status": "ok", "reason": None, "params": 1, "peak_mem_bytes": 1}
        if spec.model == FAIL:
            return {**row, "status": "error", "reason": "build: deliberate"}
        ms, other, blocks = self.script[spec.model].pop(0)
        return {**row, "latency_ms_median": ms, "latency_ms_iqr": ms / 100, "throughput_per_s": 1e3 / ms,
                "timed_blocks": spec.min_blocks or blocks or 7, "num_threads": spec.threads,
                "load_other_share": other, "load_avg_1m": 0.5}


def scripted(tmp_path: Path, script: dict, models: list[str], **kw) -> tuple[ScriptedRunner, dict]:
    runner = ScriptedRunner(script)
    df = run_sweep(cfg(models=models, threads=1, repeats=3, max_retries=2, **kw), tmp_path / "run", runner=runner)
    return runner, {r["model"]: r for r in df.to_dict("records")}


def test_rounds_rotate_and_only_the_first_runs_every_probe(tmp_path: Path) -> None:
    runner, rows = scripted(tmp_path, {"softmax": [(10.0, 0.0, 7)] * 3, OK: [(5.0, 0.0, 7)] * 3},
                            ["softmax", OK, FAIL])
    assert [(m, t) for m, t, _, _ in runner.calls] == [
        ("softmax", False), (OK, False), (FAIL, False),  # round 1: fresh processes, every probe
        (OK, True), ("softmax", True), ("softmax", True), (OK, True)]  # later rounds rotate; the failed cell stops
    assert {th for _, _, th, _ in runner.calls} == {1}  # --threads forces the count
    ok = rows[OK]
    assert ok["trusted"] == 1 and json.loads(ok["latency_ms_rounds"]) == [5.0] * 3 and ok["rounds"] == 3
    assert ok["timed_blocks"] == 21 and ok["latency_ms_median"] == 5.0
    assert rows[FAIL]["status"] == "error" and pd.isna(rows[FAIL]["trusted"])
    assert len({r["pair_group"] for r in rows.values()}) == 1


def test_an_untrusted_cell_is_re_measured_with_the_baseline(tmp_path: Path) -> None:
    # OK scatters over its first three rounds (median absolute deviation 3/8); two retries settle it
    runner, rows = scripted(tmp_path, {"softmax": [(10.0, 0.0, 7)] * 5,
                                       OK: [(5.0, 0, 7), (8.0, 0, 7), (12.0, 0, 7), (5.0, 0, 7), (5.0, 0, 7)]},
                            ["softmax", OK])
    assert [m for m, *_ in runner.calls].count("softmax") == 5  # the baseline ran in the retry rounds too
    assert rows[OK]["trusted"] == 1 and json.loads(rows[OK]["latency_ms_rounds"]) == [5.0, 8.0, 12.0, 5.0, 5.0]
    assert rows[OK]["latency_ms_median"] == 5.0 and rows[OK]["latency_rounds_max"] == 12.0


def test_a_cell_still_untrusted_after_the_retries_says_why(tmp_path: Path, monkeypatch) -> None:
    import attnbench.sweep

    # other processes take 1.8 of 2 cores in every round of OK while it runs 1 thread; between rounds the machine
    # looks idle, so the retries are tried
    monkeypatch.setattr(attnbench.sweep, "_still_busy", lambda *_: False)
    runner, rows = scripted(tmp_path, {"softmax": [(10.0, 0.0, 7)] * 5, OK: [(50.0, 0.9, 7)] * 5},
                            ["softmax", OK])
    assert len(runner.calls) == 10  # 3 rounds + 2 retries, each with the baseline
    bad = rows[OK]
    assert bad["trusted"] == 0 and bad["untrusted_reason"].startswith("load: other processes took 1.8 of")
    assert json.loads(bad["rounds_excluded"]) == [0, 1, 2, 3, 4] and bad["rounds"] == 0
    assert rows["softmax"]["trusted"] == 1


def test_no_retry_for_load_while_the_machine_is_still_busy(tmp_path: Path, monkeypatch) -> None:
    import attnbench.sweep

    monkeypatch.setattr(attnbench.sweep, "_still_busy", lambda *_: True)
    runner, rows = scripted(tmp_path, {"softmax": [(10.0, 0.0, 7)] * 3, OK: [(50.0, 0.9, 7)] * 3},
                            ["softmax", OK])
    assert len(runner.calls) == 6  # the three rounds only
    assert rows[OK]["trusted"] == 0 and rows[OK]["untrusted_reason"].endswith(
        "; not re-measured: the machine was still busy")


def test_too_few_blocks_asks_the_retry_for_more(tmp_path: Path) -> None:
    # the baseline is slow (1 block a round): its retry asks for 7 blocks, and the whole group runs again with it
    runner, rows = scripted(tmp_path, {"softmax": [(900.0, 0.0, 1)] * 4, OK: [(5.0, 0.0, 7)] * 4},
                            ["softmax", OK])
    assert runner.calls[-2:] == [(OK, True, 1, None), ("softmax", True, 1, 7)] or \
        runner.calls[-2:] == [("softmax", True, 1, 7), (OK, True, 1, None)]
    assert rows["softmax"]["trusted"] == 1 and rows["softmax"]["timed_blocks"] == 10


def test_a_gpu_cell_needs_one_core_for_itself() -> None:
    from attnbench.cell import CellSpec
    from attnbench.sweep import _cores_needed

    assert _cores_needed(CellSpec("softmax", "layer", 64, device="cuda:0"), {"num_threads": 8}) == 1
    assert _cores_needed(CellSpec("softmax", "layer", 64, device="cpu"), {"num_threads": 8}) == 8
