"""Every line the CLI prints fits the page: 80 columns when piped (run's progress, its warnings and summary, train's
progress and sweep lines) and every command's --help, on a pipe and on a wide terminal; compare's latencies in ms
as the report writes them."""
from __future__ import annotations

import io
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from rich.console import Console
from test_cli import _stand_in_sweep, _write_meta
from test_compare import make_run

from attnbench.cli import main
from attnbench.cli.progress import run_with_progress
from attnbench.results import append_row, load_results

PAGE = 80
BUSY = ("load: other processes took 1.6 of 2 cores while it ran 1 thread(s), in 1 of 1 rounds; not re-measured: "
        "the machine was still busy")
LONG_MODEL = "my_company.research.attention_variants:VeryLongExperimentalAttention"


def widest(text: str) -> int:
    return max((len(ln) for ln in text.splitlines()), default=0)


@pytest.mark.parametrize("command", ["", "run", "report", "compare", "list", "train"])
@pytest.mark.parametrize("columns", [None, "200"])  # piped, and a wide terminal (the help once wrapped at 110-120)
def test_every_help_fits_80_columns(command, columns):
    r = CliRunner(env={"COLUMNS": columns}).invoke(main, [*command.split(), "--help"])
    assert r.exit_code == 0, r.output
    assert widest(r.output) <= PAGE, [ln for ln in r.output.splitlines() if len(ln) > PAGE]


def row(model: str, status: str = "ok", **extra) -> dict:
    return {"model": model, "seq_len": 16384, "mode": "train", "status": status, **extra}


def test_run_progress_lines_fit_the_page():
    cells = [SimpleNamespace(model=m, seq_len=16384, mode="train") for m in ("nystromformer", LONG_MODEL, "soft")]
    rows = [row("nystromformer", latency_ms_median=1234.5, latency_rounds_min=1200.0, latency_rounds_max=1300.0,
                rounds=0, rounds_excluded=[0], trusted=0, untrusted_reason=BUSY),
            row(LONG_MODEL, "error", reason="setup: RuntimeError: " + "the attention could not be built " * 6),
            row("soft", latency_ms_median=5.2, latency_rounds_min=5.1, latency_rounds_max=5.3, rounds=3, trusted=1)]

    def sweep(config, run_dir, *, on_cell, on_start, resume, retry_failed):
        for i, (spec, r) in enumerate(zip(cells, rows)):
            on_start(spec, 0, i, 3)
            on_cell(spec, r, i + 1, 3)

    lines: list[str] = []
    run_with_progress(sweep, None, None, resume=False, retry_failed=False,
                      console=Console(file=io.StringIO(), force_terminal=False, width=PAGE), echo=lines.append)
    text = "\n".join(lines)
    assert widest(text) <= PAGE, lines  # was: 202 columns for an untrusted cell, with its whole reason
    assert "[1/3] nystromformer N=16384 train: ok 1,230 ms, rounds 1,200–1,300 (1 set aside), untrusted (load)" \
        in " ".join(text.split())
    assert "[2/3] my_company" in text and "error: setup: RuntimeError" in text
    assert sum(ln.lstrip().startswith("elapsed ") or "  elapsed " in ln for ln in lines) == 3  # times kept whole


def busy_engine(monkeypatch):
    """An ``attnbench.sweep`` whose cells all finish ``ok`` but untrusted, on a busy machine (no measurement)."""
    def run_sweep(config, run_dir, *, resume=False, retry_failed=False, on_cell=None, on_start=None, extend=False):
        _write_meta(run_dir, config, resume)
        from attnbench.results import read_meta, write_meta

        write_meta(run_dir, {**read_meta(run_dir), "machine": {"cores": 2}})
        cells = [(m, n, mode) for m in config.models for n in config.seq_lens for mode in config.modes]
        for i, (m, n, mode) in enumerate(cells):
            lat = 1.0 if m == "softmax" else 13.5
            r = {"model": m, "scope": "layer", "skeleton": config.skeleton, "seq_len": n, "batch": 1, "dtype": "fp32",
                 "device": "cpu", "mode": mode, "status": "ok", "params": 1000, "macs": n * 1000,
                 "peak_mem_bytes": n * 4096, "latency_ms_median": lat, "latency_ms_iqr": lat / 3,
                 "throughput_per_s": 1000 / lat, "hparams": "{}", "latency_rounds_min": lat, "latency_rounds_max": lat,
                 "latency_ms_rounds": [lat], "rounds": 0, "rounds_excluded": [0], "trusted": 0,
                 "untrusted_reason": BUSY, "load_other_share": 0.8, "num_threads": 1}
            append_row(run_dir, r)
            if on_cell:
                on_cell(None, r, i + 1, len(cells))
        return load_results(run_dir)

    mod = _stand_in_sweep()
    mod.run_sweep = run_sweep
    monkeypatch.setitem(sys.modules, "attnbench.sweep", mod)


def test_a_piped_run_fits_80_columns_on_a_busy_machine(tmp_path, monkeypatch):
    busy_engine(monkeypatch)
    out = tmp_path / ("a-results-folder-with-a-long-name-" * 3)
    r = CliRunner().invoke(main, ["run", "--models", "softmax,soft", "--seq", "64", "--mode", "infer", "--device",
                                  "cpu", "--out", str(out), "--name", "busy", "--no-plots"])
    assert r.exit_code == 0, r.output
    # was: 202-column progress lines, a 511-column busy warning, a 178-column summary
    assert widest(r.stderr) <= PAGE, [ln for ln in r.stderr.splitlines() if len(ln) > PAGE]
    assert widest(r.stdout) <= PAGE
    said = " ".join(r.stderr.split())
    assert "warning: The machine was busy" in said and "compare with runs at the same --threads." in said
    assert "Fastest: not judged (all cells untrusted: the machine was busy" in " ".join(r.stdout.split())


def test_train_progress_plain_lines_fit_the_page(capsys):
    from attnbench.train.progress import make_progress

    p = make_progress("plain", 0, 300, 0, 1)
    with p:
        p.info("train softmax in vit-micro-d2 on longrange:64:medium:n=4000:seed=0: 64 px, N=256, 4000/500 images, "
               "global batch 32 (1 x 32), lr 0.002, 12 epochs, 125 steps/epoch, cpu, amp off")
        p.start_epoch(119, 2)
        p.step(1, 0.6931, 1234.5, 0.000747)
        p.end_epoch({"epoch": 119, "train_loss": 0.6955, "val_loss": 0.694, "top1": 50.0, "top5": 100.0,
                     "ema_top1": 50.25, "lr": 0.000747, "images_per_s": 123.7, "epoch_s": 33.7})
        p.info("done: top1 100.00 top5 100.00 after 9 epochs, 8.7 min -> results/reference-cpu2-longrange/runs/"
               "n256-with-a-much-longer-folder-name-than-anyone-should-use/results.csv")
    out = capsys.readouterr().out
    assert widest(out) <= PAGE, out  # was: 96-175 columns
    flat = " ".join(out.split())
    assert "epoch 120/300 loss 0.6955 val_loss 0.6940 top1 50.00 top5 100.00 ema_top1 50.25" in flat
    assert "longrange:64:medium:n=4000:seed=0" in flat and "…" in out  # the spec whole; the too-long path elided


def test_train_sweep_lines_fit_the_page(tmp_path, monkeypatch):
    import attnbench.train.sweep as ts

    def fake_sweep(pairs, run_dir, *, on_pair=None, **_):
        for i, pair in enumerate(pairs):
            on_pair(i, len(pairs), pair)

    monkeypatch.setattr(ts, "run_train_sweep", fake_sweep)
    out = tmp_path / ("a-training-sweep-folder-with-a-long-name-" * 2)
    r = CliRunner().invoke(main, ["train", "--models", "softmax,soft", "--seq", "256", "--seeds", "1",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert widest(r.output) <= PAGE, r.output  # was: up to 140 columns
    flat = " ".join(r.output.split())
    assert "train sweep: 2 model(s) x N=256 x 1 seed(s) = 2 pair(s)" in flat and "[2/2] soft N=256 seed=42" in flat


def test_compare_prints_milliseconds_not_scientific_notation(tmp_path):
    a = make_run(tmp_path / "a", {("softmax", 4096): [1020.0, 1025.0, 1018.0]})
    b = make_run(tmp_path / "b", {("softmax", 4096): [1502.0, 1510.0, 1499.0]})
    r = CliRunner().invoke(main, ["compare", str(a), str(b), "--out", str(tmp_path / "cmp.md")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "cmp.md").read_text()
    for text in (r.stdout, md):
        assert "e+03" not in text and "1,020" in text and "1,500" in text  # was: 1.02e+03, 1.5e+03
    assert widest(r.stdout) <= PAGE
