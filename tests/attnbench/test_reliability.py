"""Hostile input loses nothing: report never overwrites a run, numbers are finite and in range, N is capped, cells
that cannot fit are planned as skips, train owns and checks its --out before the first step and stops cleanly on
SIGTERM, a corrupt image is one line naming the file (or skipped), empty names and zero sizes are errors."""
from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from attnbench.cli import main
from attnbench.config import MAX_SEQ_LEN, ConfigError, SweepConfig, validate
from attnbench.measure.testing import run_lock_holder, stop
from attnbench.results import RunLock, append_row, load_results

T = "attnbench.measure.testing:"
DATA = ["--data", "shapes:16:n=64:val=16"]
TRAIN = [*DATA, "--epochs", "1", "--batch-size", "16", "--depth", "1", "--progress", "plain"]


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *needles: str, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _run_dir(path: Path, model: str) -> Path:
    path.mkdir(parents=True)
    append_row(path, {"model": model, "skeleton": "layer", "seq_len": 1024, "batch": 1, "dtype": "fp32",
                      "device": "cpu", "mode": "infer", "status": "ok", "latency_ms_median": 1.0})
    (path / "meta.json").write_text('{"environment": {"torch": "x"}}\n')
    return path


# ------------------------------------------------------------------------------------------------ report


def test_report_never_writes_into_an_input_or_another_run(tmp_path: Path) -> None:
    a, b = _run_dir(tmp_path / "a", "soft"), _run_dir(tmp_path / "b", "softmax")
    before = {p: p.read_bytes() for d in (a, b) for p in d.iterdir()}
    one_line_error(invoke("report", a, b, "--out", a, "--no-plots"), f"--out {a} is one of the runs being joined")
    one_line_error(invoke("report", a, b, "--out", f"{b}/", "--no-plots"), "is one of the runs being joined")
    one_line_error(invoke("report", a, "--out", b, "--no-plots"), f"--out {b} holds another run's results.csv")
    assert {p: p.read_bytes() for d in (a, b) for p in d.iterdir()} == before  # nothing written anywhere
    r = invoke("report", a, "--out", a, "--no-plots")  # re-rendering one run in place is fine
    assert r.exit_code == 0, r.output
    assert (a / "report.md").exists() and (a / "results.csv").read_bytes() == before[a / "results.csv"]
    r = invoke("report", a, f"{b}/../a", "--no-plots")  # the same folder twice is one run, not a join
    assert r.exit_code == 0, r.output
    assert not list(tmp_path.glob("joined-*"))


def test_joined_runs_with_the_same_folder_name_get_distinct_labels(tmp_path: Path) -> None:
    from attnbench.reporting import load_runs
    from attnbench.reporting.load import run_labels

    x, y = _run_dir(tmp_path / "gpu" / "run1", "soft"), _run_dir(tmp_path / "cpu" / "run1", "softmax")
    df, metas = load_runs([x, y])
    assert sorted(set(df["run"])) == ["cpu/run1", "gpu/run1"]
    assert [m["run"] for m in metas] == ["gpu/run1", "cpu/run1"]
    assert run_labels([tmp_path / "p0", tmp_path / "p1"]) == ["p0", "p1"]  # distinct names stay short
    r = invoke("report", x, y, "--out", tmp_path / "joined", "--no-plots")
    assert r.exit_code == 0, r.output
    assert sorted(set(load_results(tmp_path / "joined")["run"])) == ["cpu/run1", "gpu/run1"]


# ------------------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize("args, needles", [
    (["--timeout", "inf"], ["bad --timeout inf", "finite"]),
    (["--timeout", "nan"], ["bad --timeout nan", "finite"]),
    (["--min-time", "nan"], ["bad --min-time nan", "finite"]),
    (["--min-time", "inf"], ["bad --min-time inf", "finite"]),
    (["--timeout", "1e12"], ["--timeout 1e+12 exceeds the maximum 604800"]),
    (["--min-time", "1e9"], ["--min-time 1e+09 exceeds the maximum 3600"]),
    (["--threads", "99999999"], ["--threads 99999999 exceeds the maximum"]),
    (["--batch", "99999999999"], ["--batch 99999999999 exceeds the maximum"]),
    (["--mem-limit", "99999999999T"], ["--mem-limit", "exceeds the maximum"]),
    (["--seq", "99999999999999999999999"], ["exceeds the maximum N = 16777216", "2^24"]),
    (["--seq", "1..1000000000"], ["exceeds the maximum N = 16777216"]),
    (["--name", ""], ["bad --name ''"]),
], ids=["timeout-inf", "timeout-nan", "min-time-nan", "min-time-inf", "timeout-huge", "min-time-huge", "threads",
        "batch", "mem-limit", "seq-huge", "seq-range-huge", "empty-name"])
def test_run_numbers_finite_and_in_range(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    one_line_error(invoke("run", "-m", "softmax", "--seq", "64", "--out", tmp_path / "out", *args), *needles)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("results.csv"))


@pytest.mark.parametrize("field, value", [("timeout", float("inf")), ("timeout", float("nan")),
                                          ("min_time", float("nan")), ("min_time", float("inf"))])
def test_config_errors_name_the_non_finite_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as e:
        validate(SweepConfig(models=["softmax"], seq_lens=[64], device="cpu", **{field: value}))
    assert e.value.field == field


def test_seq_len_cap_is_checked_before_the_grid_search() -> None:
    with pytest.raises(ConfigError, match="maximum N") as e:
        validate(SweepConfig(models=["softmax"], seq_lens=[MAX_SEQ_LEN + 1], device="cpu"))
    assert e.value.field == "seq_lens"
    validate(SweepConfig(models=["softmax"], seq_lens=[MAX_SEQ_LEN], device="cpu"))  # the cap itself is allowed


@pytest.mark.parametrize("args, needles", [
    (["--lr", "nan"], ["--lr must be a finite number, got nan"]),
    (["--min-lr", "inf"], ["--min-lr must be a finite number"]),
    (["--clip-grad", "inf"], ["--clip-grad must be a finite number"]),
    (["--ema-decay", "nan"], ["--ema-decay must be a finite number"]),
    (["--clip-grad", "-1"], ["--clip-grad must be non-negative"]),
    (["--drop-path", "1"], ["--drop-path must be in [0, 1)"]),
    (["--reprob", "2"], ["--reprob is a probability"]),
    (["--patch-size", "0"], ["--patch-size must be at least 1"]),
    (["--img-size", "0"], ["--img-size must be at least 1"]),
    (["--data", "shapes:100000"], ["--img-size 100000 gives N = 625000000 tokens", "maximum 16777216"]),
], ids=["lr-nan", "min-lr-inf", "clip-inf", "ema-nan", "clip-negative", "drop-path-1", "reprob-2", "patch-0",
        "img-0", "img-huge"])
def test_train_numbers_finite_and_in_range(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    out = tmp_path / "out"
    one_line_error(invoke("train", *TRAIN, "--out", out, *args), *needles)  # the later --data wins
    assert not out.exists()


def test_train_empty_out_is_an_error(tmp_path: Path) -> None:
    one_line_error(invoke("train", *TRAIN, "--out", ""), "--out is empty")


# ------------------------------------------------------------------------------------------------ memory plan


def test_cells_that_cannot_fit_are_planned_as_skips_with_the_estimate() -> None:
    from attnbench.cell import CellSpec
    from attnbench.memory_plan import cell_bytes, memory_skips

    math16k = CellSpec("softmax-math", "layer", 16384, hparams={"impl": "explicit"})
    assert cell_bytes(math16k) >= 4 * 3 * 16384**2  # B*h*N^2 fp32 scores, ViT-Tiny's 3 heads
    # training keeps every layer's scores for the backward; inference one layer at a time
    vit = CellSpec("softmax-math", "vit-tiny", 1024, mode="train", hparams={"impl": "explicit"})
    assert cell_bytes(vit) == 12 * cell_bytes(CellSpec("softmax-math", "vit-tiny", 1024, hparams={"impl": "explicit"}))
    sdpa = CellSpec("softmax", "layer", 16384, hparams={"impl": "sdpa", "backend": "auto"})
    assert cell_bytes(sdpa) < 2**30  # a fused kernel never materialises N^2
    skips = memory_skips([math16k, sdpa], mem_limit=2**30)
    assert list(skips) == [math16k.key()]
    assert skips[math16k.key()].startswith("estimated memory 3.05 GiB") and "--mem-limit, 1 GiB" in skips[math16k.key()]
    huge = CellSpec("soft", "layer", MAX_SEQ_LEN, batch=64)  # no closed form: the tokens alone exceed any RAM here
    assert "the machine's RAM" in memory_skips([huge])[huge.key()]


def test_a_memory_skip_is_a_row_and_force_runs_it_on_resume(tmp_path: Path, cell_runner) -> None:
    from attnbench.sweep import run_sweep

    cfg = {"models": [T + "ExplicitSoftmax"], "seq_lens": [16], "device": "cpu", "min_time": 0.01, "timeout": 120}
    df = run_sweep(SweepConfig(**cfg, mem_limit=1000), tmp_path / "r", runner=cell_runner)  # 1000 bytes: no cell fits
    assert list(df.status) == ["skipped"] and df.reason.iloc[0].startswith("estimated memory")
    df = run_sweep(SweepConfig(**cfg, force=True), tmp_path / "r", resume=True, runner=cell_runner)
    assert list(df.status) == ["skipped", "ok"]  # --force ran the skipped cell; the CSV keeps both rows


# ------------------------------------------------------------------------------------------------ custom attentions


def test_cannot_run_here_is_a_skip_an_init_crash_an_error_that_retry_failed_reruns(tmp_path: Path,
                                                                                    cell_runner) -> None:
    from attnbench.sweep import run_sweep

    cfg = SweepConfig(models=[T + "CannotRunHere", T + "BrokenInit"], seq_lens=[16], device="cpu", min_time=0.01)
    df = run_sweep(cfg, tmp_path / "r", runner=cell_runner)
    assert list(df.status) == ["skipped", "error"], df[["status", "reason"]]
    assert "deliberately unsupported" in df.reason.iloc[0] and "deliberate failure in __init__" in df.reason.iloc[1]
    retried = []
    run_sweep(cfg, tmp_path / "r", resume=True, retry_failed=True, runner=cell_runner,
              on_cell=lambda spec, row, *_: retried.append((spec.model, row["status"])))
    assert (T + "BrokenInit", "error") in retried  # --retry-failed runs the error again
    rows = load_results(tmp_path / "r")
    assert list(rows[rows.model == T + "BrokenInit"].status) == ["error", "error"]
    assert set(rows[rows.model == T + "CannotRunHere"].status) == {"skipped"}


# ------------------------------------------------------------------------------------------------ train and --out


def test_a_nested_run_lock_in_the_holding_process_is_a_no_op(tmp_path: Path) -> None:
    with RunLock(tmp_path), RunLock(tmp_path / "."):  # a train sweep around each training
        pass
    with RunLock(tmp_path):  # released
        pass


def test_train_takes_the_run_lock_and_checks_out_before_the_first_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with run_lock_holder(out) as holder:
        one_line_error(invoke("train", *TRAIN, "--out", out), f"in use by another attnbench process (PID {holder.pid})")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing trained, nothing written

    (out / "results.csv").write_text("model,seq_len,status\nsoft,abc,ok\n")
    one_line_error(invoke("train", *TRAIN, "--out", out), "corrupt results file", "'seq_len' holds 'abc'")
    assert not (out / "softmax").exists()  # refused before any step: no checkpoint, no log

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line_error(invoke("train", *TRAIN, "--out", blocker / "sub"), "cannot write to --out")
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "softmax").write_text("a file where the model's folder goes")
    one_line_error(invoke("train", *TRAIN, "--out", tmp_path / "fresh"), "cannot write to --out")


@pytest.mark.heavy
def test_sigterm_of_train_keeps_the_checkpoint_and_exits_143(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [*DATA, "--epochs", "500", "--batch-size", "16", "--depth", "1", "--progress", "plain"]
    proc = subprocess.Popen([sys.executable, "-m", "attnbench", "train", *args, "--out", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    ckpt = out / "softmax" / "checkpoint.pth"
    deadline = time.time() + 300
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.2)
    err = stop(proc, signal.SIGTERM, timeout=120)
    assert ckpt.exists(), "no epoch finished"
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("error: terminated (SIGTERM)")
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # intact: written atomically after an epoch
    assert state["epoch"] >= 0 and not (out / "softmax" / "checkpoint.pth.tmp").exists()
    with RunLock(out):  # released
        pass


# ------------------------------------------------------------------------------------------------ corrupt images


def _image_folder(root: Path, corrupt: str = "a/3.png") -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    (root / corrupt).write_bytes(b"not an image")
    return root / corrupt


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_is_one_line_naming_the_file_or_skipped(tmp_path: Path, workers: int) -> None:
    from torch.utils.data import DataLoader

    from attnbench.train.data import CorruptImageError, build_datasets, corrupt_images, parse_data_spec
    from attnbench.train.loop import batches

    bad = _image_folder(tmp_path / "imgs")
    cfg = types.SimpleNamespace(aa=None, color_jitter=0.0, reprob=0.0, skip_corrupt=False)
    train, val, _ = build_datasets(parse_data_spec(f"folder:{tmp_path / 'imgs'}"), 16, cfg)  # lazy: no error yet
    with pytest.raises(CorruptImageError) as e, batches(DataLoader(train, batch_size=4, num_workers=workers)) as it:
        for _ in it:  # through a worker process too
            pass
    assert not multiprocessing.active_children()  # the workers were shut down with the error, not left to gc
    assert "\n" not in str(e.value) and str(e.value).startswith(f"cannot read image {bad}")
    cfg.skip_corrupt = True
    train, val, _ = build_datasets(parse_data_spec(f"folder:{tmp_path / 'imgs'}"), 16, cfg)
    seen = sum(len(y) for _, y in DataLoader(train, batch_size=4, num_workers=workers))
    assert seen == len(train) and corrupt_images(train, val) == [str(bad)]  # batches keep their size


def test_train_on_a_folder_with_a_corrupt_image(tmp_path: Path) -> None:
    bad = _image_folder(tmp_path / "imgs")
    args = ["--data", f"folder:{tmp_path / 'imgs'}", "--recipe", "small", "--img-size", "16", "--patch-size", "4",
            "--epochs", "1", "--batch-size", "4", "--depth", "1", "--progress", "plain"]
    one_line_error(invoke("train", *args, "--workers", "2", "--out", tmp_path / "strict"), f"cannot read image {bad}",
                   "--skip-corrupt")
    assert not multiprocessing.active_children(), "the loader's workers outlived the error"  # joined, not left to gc
    r = invoke("train", *args, "--out", tmp_path / "skip", "--skip-corrupt")
    assert r.exit_code == 0, r.output
    row = load_results(tmp_path / "skip").iloc[0]
    assert row.status == "ok" and f"skipped 1 unreadable image(s) (skip_corrupt), e.g. {bad}" in row.reason
