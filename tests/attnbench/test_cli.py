"""The CLI through click's CliRunner: help, list, every bad input (exit 2, one line, no traceback), Ctrl-C,
and the run -> report flow against a stand-in engine (the real engine's end-to-end runs: test_cli_e2e.py)."""
from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from attnbench.cli import main
from attnbench.results import COLUMNS, append_row, load_results


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *needles: str, code: int = 2, after_progress: bool = False):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    if after_progress:  # the sweep's progress lines come first; the error is the one last line
        assert sum(ln.startswith("error:") for ln in lines) == 1, result.stderr
        lines = lines[-1:]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("error: ")
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_help_is_fast_and_teaches():
    code = "import sys, attnbench.cli; print(sorted(m for m in ('torch', 'pandas', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # --help never pays for torch/pandas
    r = invoke("--help")
    assert r.exit_code == 0 and "Examples:" in r.output and "attnbench run --models soft,performer" in r.output
    r = invoke("run", "--help")
    assert r.exit_code == 0 and "1024..16384 doubles" in r.output and "--shard" in r.output


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "attnbench", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "0.1.0" in out.stdout


def test_skeleton_help_derives_from_the_families():
    from attnbench.skeletons import FAMILIES, skeleton_names

    def flat(text: str) -> str:  # undo the help's line wrapping (which may break after a hyphen)
        return re.sub(r"-\s+", "-", " ".join(text.split()))

    for text in (flat(invoke("list").output), flat(invoke("run", "--help").output)):
        assert all(name in text for name in skeleton_names())
        assert "vit-<size>-d<depth>" in text and "vit-tiny-d4" in text  # the depth pattern is a family member
        assert all(flat(f.help) in text for f in FAMILIES)
    assert_one_line_error(invoke("run", "--skeleton", "vit-tiny-d13"), "unknown --skeleton", "vit-<size>-d<depth>")


def test_list_shows_core_methods_with_defaults():
    r = invoke("list")
    assert r.exit_code == 0, r.output
    for name in ("soft *", "softmax *", "performer *", "linformer *", "nystromformer *", "cosformer"):
        assert name in r.output
    assert "landmarks=49" in r.output and "O(N^2 d)" in r.output
    assert_one_line_error(invoke("list", "zzz*"), "no attention matches")


def _corrupt_run(tmp_path: Path) -> Path:
    d = tmp_path / "out" / "broken"
    d.mkdir(parents=True)
    (d / "results.csv").write_text("model,seq_len,status\nsoft,1024,exploded\n")
    return d


BAD_RUN_INPUTS = {
    "unknown-model": (["--models", "soft,nope"], ["unknown attention 'nope'", "registered:"]),
    "empty-models": (["--models", ","], ["no models given"]),
    "malformed-seq": (["--seq", "1024..abc"], ["bad --seq", "accepted forms"]),
    "descending-seq": (["--seq", "4096..1024"], ["descending"]),
    "zero-seq": (["--seq", "0"], ["positive"]),
    "untileable-seq": (["--skeleton", "vit-tiny", "--seq", "1031"], ["does not fit skeleton vit-tiny"]),
    "untileable-pyramid": (["--skeleton", "soft-tiny", "--seq", "1000"], ["does not fit skeleton soft-tiny"]),
    "unknown-skeleton": (["--skeleton", "vit-huge"], ["unknown --skeleton", "layer"]),
    "hparam-no-dot": (["--hparam", "landmarks=3"], ["bad --hparam", "model.key=value"]),
    "hparam-no-eq": (["--hparam", "soft.landmarks"], ["bad --hparam"]),
    "hparam-unknown-key": (["--hparam", "soft.nosuch=3"], ["no hyper-parameter 'nosuch'", "accepted"]),
    "hparam-unknown-model": (["--hparam", "nope.k=3"], ["unknown attention 'nope'"]),
    "hparam-model-not-run": (["--models", "soft", "--hparam", "performer.nb_features=8"], ["not in --models"]),
    "bad-shard": (["--shard", "2/2"], ["bad --shard", "0 <= i < N"]),
    "bad-shard-text": (["--shard", "a/b"], ["bad --shard"]),
    "bad-mode": (["--mode", "infer,eval"], ["bad --mode", "infer,train"]),
    "bad-dtype": (["--dtype", "fp8"], ["--dtype", "fp32"]),
    "bad-batch": (["--batch", "0"], ["--batch"]),
    "bad-device": (["--device", "tpu"], ["bad --device", "cuda:<index>"]),
    "bad-mem-limit": (["--mem-limit", "lots"], ["bad --mem-limit", "8G"]),
    "bad-timeout": (["--timeout", "-1"], ["--timeout"]),
    "zero-repeats": (["--repeats", "0"], ["--repeats"]),
    "text-repeats": (["--repeats", "abc"], ["--repeats", "not a valid integer"]),
    "negative-retries": (["--max-retries", "-1"], ["--max-retries"]),
    "tiny-mem-limit": (["--mem-limit", "0.0001"], ["bad --mem-limit 0.0001: less than one byte"]),
    "huge-mem-limit": (["--mem-limit", "9" * 400 + "T"], ["bad --mem-limit 999", "exceeds the maximum 1 EiB"]),
    "nan-timeout": (["--timeout", "nan"], ["bad --timeout nan"]),
    "inf-min-time": (["--min-time", "inf"], ["bad --min-time inf"]),
    "huge-repeats": (["--repeats", "1000000000"], ["--repeats 1000000000 exceeds the maximum 1000"]),
    "huge-retries": (["--max-retries", "1000000000"], ["--max-retries 1000000000 exceeds the maximum 100"]),
    "huge-shards": (["--shard", "0/1000000"], ["--shard 0/1000000", "shards exceed the maximum 65536"]),
    "resume-without-name": (["--resume"], ["--resume needs --name"]),
    "extend-without-resume": (["--extend"], ["--extend goes with --resume"]),
    "unknown-option": (["--sequence", "1024"], ["No such option"]),
}


@pytest.mark.parametrize("args, needles", BAD_RUN_INPUTS.values(), ids=BAD_RUN_INPUTS.keys())
def test_bad_run_input_is_one_line_exit_2(tmp_path, args, needles):
    r = invoke("run", "--out", tmp_path / "out", *args)
    assert_one_line_error(r, *needles)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("results.csv"))


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_one_line_error(invoke("run", "--models", "soft", "--out", blocker / "sub"), "cannot write to --out")


def test_resume_of_missing_or_corrupt_run(tmp_path):
    assert_one_line_error(invoke("run", "--out", tmp_path / "out", "--name", "ghost", "--resume"), "no run 'ghost'")
    d = _corrupt_run(tmp_path)
    before = d.joinpath("results.csv").read_bytes()
    r = invoke("run", "--out", tmp_path / "out", "--name", "broken", "--resume")
    assert_one_line_error(r, "corrupt results file", "exploded")
    assert d.joinpath("results.csv").read_bytes() == before  # nothing already written is lost


def test_existing_run_needs_resume(tmp_path):
    d = tmp_path / "out" / "done"
    d.mkdir(parents=True)
    append_row(d, {"model": "soft", "seq_len": 1024, "status": "ok"})
    assert_one_line_error(invoke("run", "--out", tmp_path / "out", "--name", "done"), "already exists", "--resume")


def test_report_bad_inputs(tmp_path):
    assert_one_line_error(invoke("report", tmp_path / "missing"), "not a run directory")
    d = _corrupt_run(tmp_path)
    assert_one_line_error(invoke("report", d), "corrupt results file")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("report", tmp_path / "empty"), "no results.csv")
    assert_one_line_error(invoke("report"), "Missing argument")
    good = tmp_path / "good"
    good.mkdir()
    append_row(good, {"model": "soft", "seq_len": 1024, "status": "ok", "mode": "infer"})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_line_error(invoke("report", good, "--out", blocker / "sub"), "cannot write")
    assert_one_line_error(invoke("report", good, good.parent / "missing"), "not a run directory")
    assert_one_line_error(invoke("report", good, "--baseline", "nope"), "baseline 'nope' has no rows")


def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    assert_one_line_error(invoke("run", "--models", "soft", "--device", "cuda:0", "--out", tmp_path),
                          "no CUDA device", "--device cpu")


# ----------------------------------------------------------------------------- a stand-in engine (contract)


def _stand_in_sweep() -> types.ModuleType:
    """A copy of ``attnbench.sweep`` whose ``run_sweep`` a test replaces (config, checks and helpers stay real)."""
    import attnbench.sweep as real

    mod = types.ModuleType("attnbench.sweep")
    mod.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
    return mod

def _write_meta(run_dir, config, resume: bool) -> None:
    """The engine's meta.json, as far as the CLI reads it: the config of each session (what --resume runs again)."""
    from attnbench.results import read_meta, write_meta

    entry = {"config": {**dataclasses.asdict(config), "device_resolved": config.device}}
    meta = read_meta(run_dir) if resume else {}
    if meta:
        meta.setdefault("resumed", []).append(entry)
    write_meta(run_dir, meta or entry)


def fake_engine(monkeypatch, *, interrupt_after: int | None = None):
    """Install an ``attnbench.sweep`` that follows the engine's contract without measuring anything."""
    from attnbench.sweep import SweepConfig, plan_cells  # the real config: the CLI must build what the engine takes

    calls: list = []

    def run_sweep(config, run_dir, *, resume=False, retry_failed=False, on_cell=None, on_start=None, extend=False):
        calls.append(config)
        _write_meta(run_dir, config, resume)
        cells = [(m, n, mode) for m in config.models for n in config.seq_lens for mode in config.modes]
        # the real cells' keys (as a dry run plans them); the stand-in ignores shards
        specs = {(c.model, c.seq_len, c.mode): c for c in plan_cells(dataclasses.replace(config, shard=None))}
        done_keys = set()
        if resume:
            old = load_results(run_dir)
            done_keys = set(zip(old.model, old.seq_len, old["mode"]))
        for i, (m, n, mode) in enumerate(cells):
            if interrupt_after is not None and i == interrupt_after:
                raise KeyboardInterrupt
            if (m, n, mode) in done_keys:
                continue
            lat = (n / 1000) ** (2 if m.startswith("softmax") else 1)
            row = dict(model=m, scope="layer", skeleton=config.skeleton, seq_len=n, batch=config.batch,
                       dtype=config.dtype, device=config.device, mode=mode, status="ok", params=1000,
                       macs=n * 1000, flops=n * 2000, peak_mem_bytes=n * 4096, latency_ms_median=lat,
                       latency_ms_iqr=lat / 50, throughput_per_s=1000 / lat,
                       hparams=specs[(m, n, mode)].hparams)
            append_row(run_dir, row)
            if on_cell:
                on_cell(None, row, i + 1, len(cells))
        return load_results(run_dir)

    mod = _stand_in_sweep()
    mod.run_sweep = run_sweep
    monkeypatch.setitem(sys.modules, "attnbench.sweep", mod)
    return calls


def test_run_then_report_with_stand_in_engine(tmp_path, monkeypatch):
    calls = fake_engine(monkeypatch)
    out = tmp_path / "res"
    r = invoke("run", "--models", "soft,softmax", "--seq", "256,1024", "--mode", "infer", "--device", "cpu",
               "--out", out, "--name", "t", "--hparam", "soft.landmarks=16", "--shard", "1/3", "--mem-limit", "2G")
    assert r.exit_code == 0, r.output
    cfg = calls[0]
    assert (cfg.models, cfg.seq_lens, cfg.modes, cfg.shard, cfg.mem_limit) == \
        (["soft", "softmax"], [256, 1024], ["infer"], (1, 3), 2 * 2**30)
    assert cfg.hparams == {"soft": {"landmarks": 16}} and cfg.skeleton == "layer"
    run_dir = out / "t"
    names = {p.name for p in run_dir.iterdir()}
    assert {"results.csv", "results.parquet", "report.md", "latency_infer.png", "memory_infer.png",
            "flops.png"} <= names
    assert set(COLUMNS) <= set(pd.read_parquet(run_dir / "results.parquet").columns)
    assert "Speed-up = softmax latency" in r.stdout and "Verdict" in r.stdout  # tables, then verdict
    assert max(map(len, r.stdout.splitlines())) <= 80  # piped, as in a log or CI: the same page as `report`
    md = (run_dir / "report.md").read_text()
    (run_dir / "report.md").unlink()
    r2 = invoke("report", run_dir, "--no-plots")
    assert r2.exit_code == 0, r2.output
    assert (run_dir / "report.md").read_text() == md


def test_ctrl_c_keeps_finished_rows_and_exits_130(tmp_path, monkeypatch):
    fake_engine(monkeypatch, interrupt_after=3)
    out = tmp_path / "res"
    r = invoke("run", "--models", "soft,softmax", "--seq", "256,1024", "--mode", "infer", "--device", "cpu",
               "--out", out, "--name", "cut")
    assert_one_line_error(r, "interrupted: 3 finished rows kept", "--resume --name cut", code=130,
                          after_progress=True)
    assert len(load_results(out / "cut")) == 3
    assert (out / "cut" / "results.parquet").exists()
    calls = fake_engine(monkeypatch)  # finish it with the command the error printed, as printed
    advice = shlex.split(r.stderr.strip().splitlines()[-1].partition("finish with: ")[2])
    assert advice[:2] == ["attnbench", "run"]
    r = invoke(*advice[1:])
    assert r.exit_code == 0, r.output
    assert len(load_results(out / "cut")) == 4 and calls[0].models == ["soft", "softmax"]


def test_report_joins_runs_into_a_new_run_dir(tmp_path, monkeypatch):
    fake_engine(monkeypatch)
    out = tmp_path / "res"
    for i, models in enumerate(("soft", "softmax")):
        r = invoke("run", "--models", models, "--seq", "256,1024", "--mode", "infer", "--device", "cpu",
                   "--out", out, "--name", f"p{i}", "--no-plots")
        assert r.exit_code == 0, r.output
    r = invoke("report", out / "p0", out / "p1", "--out", out / "joined")
    assert r.exit_code == 0, r.output
    joined = load_results(out / "joined")
    assert sorted(set(joined.model)) == ["soft", "softmax"] and len(joined) == 4
    md = (out / "joined" / "report.md").read_text()
    assert "Relative to `softmax`" in md and "Runs: p0, p1" in md


def test_bad_hparam_value_is_refused_before_the_run_dir_exists(tmp_path):
    assert_one_line_error(invoke("run", "--models", "soft", "-p", "soft.landmarks=abc", "--seq", "256",
                                 "--out", tmp_path), "bad hyper-parameters for soft", "landmarks")
    assert list(tmp_path.iterdir()) == []


def test_unexpected_error_is_one_line_exit_1(tmp_path, monkeypatch):
    mod = _stand_in_sweep()

    def boom(*a, **k):
        raise RuntimeError("engine exploded\nsecond line")

    mod.run_sweep = boom
    monkeypatch.setitem(sys.modules, "attnbench.sweep", mod)
    r = invoke("run", "--models", "soft", "--seq", "256", "--device", "cpu", "--out", tmp_path)
    assert_one_line_error(r, "internal error: RuntimeError: engine exploded", "ATTNBENCH_DEBUG", code=1,
                          after_progress=True)


def test_train_is_listed_only_when_its_module_exists(monkeypatch):
    import attnbench.cli as cli

    monkeypatch.setitem(cli.LAZY_COMMANDS, "train", ("attnbench.cli._no_such_module", "train", "x"))
    r = invoke("--help")
    assert r.exit_code == 0 and "  train" not in r.output
    assert invoke("train").exit_code == 2
    monkeypatch.setitem(cli.LAZY_COMMANDS, "train", ("attnbench.cli.list", "list_cmd", "Train (test stand-in)."))
    r = invoke("--help")
    assert "train" in r.output and "Train (test stand-in)." in r.output
    assert "registered attentions" in invoke("train").output  # resolved lazily to the module's command


def test_python_api_is_lazy_and_complete():
    code = ("import sys, attnbench; a = sorted(m for m in ('torch','pandas') if m in sys.modules); "
            "r = attnbench.report; import attnbench.reporting as m; "
            "print(a, callable(r), m.report is r, attnbench.parse_seq('1..4'), callable(attnbench.list_attentions))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True True [1, 2, 4] True"


def test_every_config_field_maps_to_a_real_flag():
    """The one field-to-flag table (cli._common.FLAGS): every field a ConfigError can name is an option."""
    import dataclasses

    import click

    from attnbench.cli._common import flag
    from attnbench.cli.run import run
    from attnbench.cli.train import train
    from attnbench.config import SweepConfig
    from attnbench.train.config import TrainConfig

    def options(cmd: click.Command) -> set[str]:
        return {o for p in cmd.params for o in p.opts}

    run_fields = {f.name for f in dataclasses.fields(SweepConfig)} - {"isolation"} | {"run_dir"}
    assert {flag(f) for f in run_fields} <= options(run)
    assert {flag(f.name) for f in dataclasses.fields(TrainConfig)} <= options(train)


def test_config_error_names_the_field_and_renders_flags():
    import pickle

    from attnbench.cli._common import flag
    from attnbench.config import ConfigError, ref

    e = ConfigError("seq_lens", f"{ref('seq_lens')} 7 does not fit; or use {ref('skeleton')} layer ({{'a': 1}})")
    assert isinstance(e, ValueError) and e.field == "seq_lens"
    assert str(e) == "seq_lens 7 does not fit; or use skeleton layer ({'a': 1})"
    assert e.render(flag) == "--seq 7 does not fit; or use --skeleton layer ({'a': 1})"
    back = pickle.loads(pickle.dumps(e))
    assert (back.field, str(back), back.render(flag)) == (e.field, str(e), e.render(flag))


def test_list_fits_80_columns_without_breaking_words_and_lists_columns():
    r = invoke("list")
    assert r.exit_code == 0 and max(map(len, r.output.splitlines())) <= 80
    words = set(r.output.split())
    assert "softmax-xformers" in words and "nb_features=256" in words  # whole, never folded mid-word
    cols = invoke("list", "--columns", "pinv*")
    assert cols.exit_code == 0 and "pinv_residual_max" in cols.output and "1e-2" in cols.output
    assert_one_line_error(invoke("list", "--columns", "zzz*"), "no results column matches")
