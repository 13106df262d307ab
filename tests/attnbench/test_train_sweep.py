"""``attnbench train --models/--seq/--seeds``: the plan (order, sizes, skips), every bad input before training
(exit 2), resume (finished pairs never re-trained, an interrupted one continued), a failing pair as its row."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from attnbench.cli.train import train as train_cmd
from attnbench.config import ConfigError
from attnbench.results import append_row, load_results
from attnbench.train import TrainConfig
from attnbench.train.sweep import (Pair, default_sweep_dir, image_side, pending_pairs, plan_train_sweep,
                                   run_train_sweep, sized_data)

# 16 px (N=16) and 24 px (N=36) long-range images with 2 distractors; one block, a batch of 8
DATA = "longrange:16:n=32:val=8:distractors=2"
BASE = TrainConfig(skeleton="vit-micro", data=DATA, depth=1, batch_size=8, epochs=1, progress="plain", threads=1)
TINY = ["--data", DATA, "--skeleton", "vit-micro", "--depth", "1", "--batch-size", "8", "--epochs", "1",
        "--progress", "plain", "--threads", "1"]


def _cli(*args: str):
    return CliRunner().invoke(train_cmd, list(args), catch_exceptions=False)


def test_plan_orders_pairs_sizes_the_data_and_skips_what_cannot_run():
    pairs = plan_train_sweep(BASE, ["softmax", "linformer"], [16, 36], 2)
    assert [(p.seq_len, p.seed, p.model) for p in pairs] == [
        (16, 42, "softmax"), (16, 42, "linformer"), (16, 43, "softmax"), (16, 43, "linformer"),
        (36, 42, "softmax"), (36, 42, "linformer"), (36, 43, "softmax"), (36, 43, "linformer")]
    p = pairs[4]
    assert p.config.data == "longrange:24:medium:n=32:val=8:seed=0:distractors=2" and p.config.patch_size == 4
    assert p.dataset == "longrange:24:medium:n=32:seed=0:distractors=2" and p.skeleton == "vit-micro-d1"
    assert p.model_dir == "softmax/N36-seed42" and p.skip is None and p.config.seed == 42
    assert "k=256 >= N=16" in pairs[1].skip  # Linformer's own hook: a skipped row, not a crash
    ok = plan_train_sweep(BASE, ["linformer"], [16], hparams={"linformer": {"k": 8}})
    assert ok[0].skip is None and ok[0].config.hparams == {"k": 8}


def test_image_side_per_family():
    assert image_side("vit-micro", 256, None, 4) == (64, 4)
    assert image_side("vit-tiny", 196, 16, 4) == (224, 16)
    assert image_side("soft-tiny", 256, None, 4) == (64, None)  # the pyramid's stride-4 stem
    with pytest.raises(ConfigError, match="not a square") as e:
        image_side("vit-micro", 200, None, 4)
    assert e.value.field == "seq_lens"
    with pytest.raises(ConfigError, match="cannot take N=144"):
        image_side("soft-tiny", 144, None, 4)  # 48 px: the pyramid needs multiples of 32


def test_sized_data_keeps_every_option():
    from attnbench.train.data import parse_data_spec

    text = "pathfinder:32:hard:n=50:val=7:seed=3:dashes=5"
    assert sized_data(parse_data_spec(text), text, 64) == "pathfinder:64:hard:n=50:val=7:seed=3:dashes=5"
    assert sized_data(parse_data_spec("imagenet:/x"), "imagenet:/x", 64) == "imagenet:/x"
    assert str(default_sweep_dir("longrange:128:hard")) == "results/train-sweep-longrange_hard"


def test_the_local_control_trains_shapes_at_the_same_n_skeleton_and_recipe_after_the_main_pairs():
    pairs = plan_train_sweep(BASE, ["softmax", "soft"], [16, 36], 1, local_control=True)
    main, control = pairs[:4], pairs[4:]
    assert [(p.seq_len, p.model) for p in control] == [(p.seq_len, p.model) for p in main]
    assert all(p.dataset.startswith("longrange:") for p in main)
    assert [p.config.data for p in control[::2]] == ["shapes:16:n=32:val=8:seed=0", "shapes:24:n=32:val=8:seed=0"]
    assert {p.config.recipe for p in control} == {"longrange"} and {p.skeleton for p in pairs} == {"vit-micro-d1"}
    assert control[3].model_dir == "soft/shapes-N36-seed42" and main[3].model_dir == "soft/N36-seed42"
    with pytest.raises(ConfigError, match="beside 'shapes:16'"):
        plan_train_sweep(TrainConfig(skeleton="vit-micro", data="shapes:16"), ["softmax"], [16], local_control=True)


@pytest.mark.parametrize("models, seqs, seeds, field, match", [
    (["softmax"], [20], 1, "seq_lens", "not a square"),
    (["softmax"], [130 ** 2], 1, "seq_lens", "above the maximum 512"),
    (["softmax"], [9], 1, "seq_lens", "too small"),
    (["softmax"], [16], 0, "seeds", "at least 1"),
    ([], [16], 1, "models", "empty"),
])
def test_plan_refuses_bad_input_naming_the_field(models, seqs, seeds, field, match):
    with pytest.raises(ConfigError, match=match) as e:
        plan_train_sweep(BASE, models, seqs, seeds)
    assert e.value.field == field


def test_pending_pairs_skip_every_pair_with_a_row(tmp_path):
    pairs = plan_train_sweep(BASE, ["softmax", "performer"], [16], 2)
    done = pairs[1]
    append_row(tmp_path, dict(model=done.model, scope="train", skeleton=done.skeleton, seq_len=done.seq_len,
                              mode="train", status="error", dataset=done.dataset, seed=done.seed))
    append_row(tmp_path, dict(model="softmax", scope="vit", skeleton=done.skeleton, seq_len=16, mode="infer",
                              status="ok"))  # an efficiency row of the same cell is no training
    assert pending_pairs(pairs, tmp_path) == [pairs[0], pairs[2], pairs[3]]


def test_a_failing_pair_is_its_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import attnbench.train.loop as loop

    seen = []

    def fake_train(cfg: TrainConfig, *, model_dir: str) -> dict:
        seen.append((cfg.model, model_dir, cfg.resume, cfg.out))
        if cfg.model == "performer":
            raise ConfigError("lr", "the loss became nan at epoch 1 step 3; lower --lr")
        return {"status": "ok"}

    monkeypatch.setattr(loop, "train", fake_train)
    pairs = plan_train_sweep(BASE, ["performer", "softmax", "linformer"], [16])
    rows = run_train_sweep(pairs, tmp_path)
    assert [m for m, *_ in seen] == ["performer", "softmax"]  # linformer is skipped without training
    assert seen[1] == ("softmax", "softmax/N16-seed42", "auto", str(tmp_path))
    df = load_results(tmp_path)
    assert list(df["status"]) == ["nan", "skipped"] and list(df["seed"]) == [42, 42]
    assert df["reason"][0].startswith("the loss became nan") and "k=256 >= N=16" in df["reason"][1]
    assert len(rows) == 3


def test_cli_sweep_trains_every_pair_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    r = _cli(*TINY, "--models", "softmax,linear", "--seq", "16,36", "--out", str(out), "--epochs", "2",
             "--stop-after", "1", "--seeds", "1")
    assert r.exit_code == 0, r.output
    assert "4 pair(s), 4 to run" in r.output
    assert load_results(out).empty  # stopped after epoch 1 of the first pair: no row yet
    assert (out / "softmax" / "N16-seed42" / "checkpoint.pth").is_file()
    r = _cli(*TINY, "--models", "softmax,linear", "--seq", "16,36", "--out", str(out), "--epochs", "2", "--seeds", "1")
    assert r.exit_code == 2 and "already exists; pass --resume" in r.output
    r = _cli(*TINY, "--models", "softmax,linear", "--seq", "16,36", "--out", str(out), "--epochs", "2",
             "--resume", "--seeds", "1")
    assert r.exit_code == 0, r.output
    assert "resumed at epoch 2" in r.output
    df = load_results(out)
    assert sorted(zip(df["model"], df["seq_len"])) == [("linear", 16), ("linear", 36),
                                                       ("softmax", 16), ("softmax", 36)]
    assert set(df["status"]) == {"ok"} and set(df["epochs"]) == {2} and set(df["seed"]) == {42}
    assert (out / df["log_dir"][0] / "log.csv").is_file() and set(df["log_dir"]) == {
        "softmax/N16-seed42", "softmax/N36-seed42", "linear/N16-seed42", "linear/N36-seed42"}
    log = [json.loads(line) for line in (out / "softmax" / "N16-seed42" / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [0, 1]  # the interrupted pair continued, not restarted
    r = _cli(*TINY, "--models", "softmax,linear", "--seq", "16,36", "--out", str(out), "--epochs", "2",
             "--resume", "--seeds", "1")
    assert r.exit_code == 0 and "0 to run" in r.output and len(load_results(out)) == 4


@pytest.mark.parametrize("args, match", [
    (["--models", "softmax", "--seeds", "0"], "--seeds must be at least 1"),
    (["--models", "softmax,nope"], "unknown attention 'nope'"),
    (["--models", "softmax", "--seq", "20"], "N=20 in --seq is not a square"),
    (["--models", "softmax", "--seq", "4"], "--seq needs longrange images of 8 px"),
    (["--models", "softmax", "--model", "soft"], "--model (one run) or --models (a sweep), not both"),
    (["--models", "softmax", "--hparam", "soft.landmarks=4"], "--hparam for 'soft', which is not in --models"),
    (["--models", "softmax", "--resume", "x.pth"], "pass --resume without a path"),
    (["--models", "softmax", "--seq", "16", "--img-size", "64"], "sqrt(N) x patch); leave --img-size out"),
    (["--models", "softmax", "--patience", "-1"], "--patience must be at least 1 epoch"),
    (["--models", "softmax", "--patience", "0"], "--patience must be at least 1 epoch"),
    (["--models", "softmax", "--epochs", "0"], "--epochs must be at least 1"),
    (["--models", "softmax", "--fresh", "--data", "cifar10:/nowhere"], "--fresh draws new images each epoch"),
])
def test_cli_bad_sweeps_exit_2_before_training(tmp_path, args, match):
    r = _cli(*TINY, "--out", str(tmp_path / "x"), *args)
    assert r.exit_code == 2 and match in r.output, r.output
    assert not (tmp_path / "x").exists()


def test_pair_key_matches_the_row_columns():
    p = Pair("softmax", 16, 42, BASE, "vit-micro-d1", "longrange:16", "softmax/N16-seed42")
    assert p.key == ("softmax", "vit-micro-d1", 16, "longrange:16", 42)


@pytest.mark.heavy  # two torchrun processes start torch, timm and gloo: ~15 s
def test_a_sweep_under_torchrun_joins_the_group_once_and_rank_0_alone_writes(tmp_path):
    """Two gloo processes through four pairs: the process group is joined once for the sweep (a pair that left it
    could not join it again), every pair has exactly one row."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "attnbench.train", *TINY, "--batch-size", "4", "--models", "softmax,linear", "--seq", "16,36",
           "--out", str(tmp_path / "ddp")]
    p = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2], env={**os.environ, "OMP_NUM_THREADS": "1"},
                       capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert p.stdout.count("[4/4] linear N=36") == 1 and p.stdout.count("done -> ") == 1
    df = load_results(tmp_path / "ddp")
    assert len(df) == 4 and set(df["status"]) == {"ok"} and set(df["batch"]) == {8}  # global batch 2 x 4
