"""End to end through the real engine: `attnbench run` (layer and vit scopes, small N) writes every file with the
schema's columns and ok rows; `report` re-renders it; `--resume` re-runs nothing; `--shard` splits and `report`
joins to the same set."""
from __future__ import annotations

import contextlib
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from attnbench.cli import main
from attnbench.results import COLUMNS, KEY_COLUMNS, load_results

pytest.importorskip("attnbench.sweep")

# one round per cell: rounds, pairing and retries are tested against the real runner in test_sweep.py
SMALL = ["--models", "soft,softmax,linformer", "--seq", "64,256", "--mode", "infer", "--device", "cpu",
         "--min-time", "0.01", "--timeout", "120", "--hparam", "linformer.k=32", "--hparam", "soft.landmarks=16",
         "--repeats", "1"]
FILES = {"results.csv", "results.parquet", "meta.json", "report.md", "latency_infer.png", "memory_infer.png",
         "flops.png"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def keys(df: pd.DataFrame) -> set:
    return {tuple(str(v) for v in r) for r in df[KEY_COLUMNS].itertuples(index=False)}


@pytest.fixture(scope="module")
def layer_run(tmp_path_factory, cell_runner):
    out = tmp_path_factory.mktemp("res")
    # the CLI's sweep forks its cells from the session's warm server (the lifecycle tests start their own)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("attnbench.sweep.CellRunner", lambda isolation: contextlib.nullcontext(cell_runner))
        r = invoke("run", *SMALL, "--out", out, "--name", "layer")
    assert r.exit_code == 0, r.output
    return out, out / "layer", r


def test_layer_run_writes_every_file_with_ok_rows(layer_run):
    out, run_dir, r = layer_run
    assert FILES <= {p.name for p in run_dir.iterdir()}
    df = load_results(run_dir)
    assert len(df) == 6 and set(df.status) == {"ok"}, df[["model", "seq_len", "status", "reason"]]
    pq = pd.read_parquet(run_dir / "results.parquet")
    assert set(COLUMNS) <= set(pq.columns) and len(pq) == 6
    assert (df.latency_ms_median > 0).all() and (df.macs > 0).all() and (df.params > 0).all()
    soft_hp = json.loads(df[df.model == "soft"].hparams.iloc[0])
    assert soft_hp["landmarks"] == 16
    meta = json.loads((run_dir / "meta.json").read_text())
    assert "environment" in meta
    md = (run_dir / "report.md").read_text()
    lines = md.splitlines()
    top = 2 + 2 * lines[0].startswith("**Warning:** The machine was busy")  # a busy machine is the first line
    assert lines[top].startswith("Machine: ") and "Relative to `softmax`" in md and "m = 16" in md
    assert "Speed-up = softmax latency" in r.stdout and "Verdict" in r.stdout  # tables, then verdict


def test_report_re_renders(layer_run):
    _, run_dir, _ = layer_run
    for name in ("report.md", "flops.png"):
        (run_dir / name).unlink()
    r = invoke("report", run_dir)
    assert r.exit_code == 0, r.output
    assert (run_dir / "report.md").exists() and (run_dir / "flops.png").exists()
    assert "Relative to `softmax`" in (run_dir / "report.md").read_text()


def test_resume_reruns_nothing_finished(layer_run):
    out, run_dir, _ = layer_run
    before = (run_dir / "results.csv").read_bytes()
    r = invoke("run", *SMALL, "--out", out, "--name", "layer", "--resume")
    assert r.exit_code == 0, r.output
    assert (run_dir / "results.csv").read_bytes() == before  # no cell ran again


@pytest.mark.heavy  # test_sweep.py's resume with new N covers this against the real runner
def test_resume_of_a_larger_sweep_runs_only_the_new_cells(layer_run):
    out, run_dir, _ = layer_run
    before = (run_dir / "results.csv").read_bytes()
    r = invoke("run", *[a if a != "64,256" else "64,144,256" for a in SMALL], "--out", out, "--name", "layer",
               "--resume", "--extend", "--no-plots")
    assert r.exit_code == 0, r.output
    df = load_results(run_dir)
    assert len(df) == 9 and sorted(df.seq_len.unique()) == [64, 144, 256]
    assert (run_dir / "results.csv").read_bytes().startswith(before)


@pytest.mark.heavy  # tens of seconds of process start-ups: run with -m heavy
def test_shards_join_to_the_unsharded_set(layer_run, tmp_path):
    _, full_dir, _ = layer_run
    full = load_results(full_dir)
    full = full[full.seq_len.isin([64, 256])]
    for i in range(2):
        r = invoke("run", *SMALL, "--out", tmp_path, "--name", f"s{i}", "--shard", f"{i}/2", "--no-plots")
        assert r.exit_code == 0, r.output
    s0, s1 = load_results(tmp_path / "s0"), load_results(tmp_path / "s1")
    assert len(s0) == len(s1) == 3 and not keys(s0) & keys(s1)  # disjoint halves
    r = invoke("report", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "joined")
    assert r.exit_code == 0, r.output
    joined = load_results(tmp_path / "joined")
    assert keys(joined) == keys(full)
    assert (tmp_path / "joined" / "report.md").exists() and (tmp_path / "joined" / "latency_infer.png").exists()


@pytest.mark.heavy  # the vit scope's cells: test_registry.py (vit-tiny) and test_skeletons.py; the CLI: layer_run
def test_vit_scope_run(tmp_path):
    r = invoke("run", "--models", "soft", "--skeleton", "vit-tiny", "--seq", "16", "--mode", "infer",
               "--device", "cpu", "--min-time", "0.01", "--hparam", "soft.landmarks=4", "--out", tmp_path,
               "--name", "vit", "--repeats", "1")
    assert r.exit_code == 0, r.output
    df = load_results(tmp_path / "vit")
    assert set(df.status) == {"ok"} and set(df.skeleton) == {"vit-tiny"} and set(df.scope) == {"vit"}
    assert (df.params > 5e6).all()  # a whole ViT-Tiny, not one layer
    assert FILES <= {p.name for p in (tmp_path / "vit").iterdir()}


@pytest.mark.heavy
def test_real_ctrl_c_keeps_rows_and_exits_130(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "attnbench", "run", *SMALL, "--seq", "64..4096", "--mode", "infer,train",
           "--out", str(tmp_path), "--name", "cut"]
    # a background child may inherit SIGINT ignored; restore the default so Python raises KeyboardInterrupt
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    csv = tmp_path / "cut" / "results.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not csv.exists() or len(csv.read_text().splitlines()) < 3):
        time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted:") and "Traceback" not in err
    kept = load_results(tmp_path / "cut")
    assert len(kept) >= 2 and (tmp_path / "cut" / "results.parquet").exists()
