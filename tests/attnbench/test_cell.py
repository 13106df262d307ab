"""One cell in its own process: the row, the typed statuses, the spec as a key."""
from __future__ import annotations

import pytest
import torch

from attnbench.cell import CellSpec, classify_exception
from attnbench.runner import run_cell_subprocess
from attnbench.results import KEY_COLUMNS

T = "attnbench.measure.testing:"


def spec(model: str, n: int = 64, **kw) -> CellSpec:
    return CellSpec(model=T + model if ":" not in model and model[0].isupper() else model, skeleton="layer",
                    seq_len=n, batch=2, min_time=0.02, **kw)


def test_spec_is_a_hashable_key() -> None:
    a = CellSpec("soft", "layer", 1024, hparams={"b": 1, "a": 2})
    b = CellSpec("soft", "layer", 1024, hparams='{"a": 2, "b": 1}', min_time=3.0)
    assert a == b and hash(a) == hash(b) and a.key() == b.key()
    assert len(a.key()) == len(KEY_COLUMNS) and a.key()[KEY_COLUMNS.index("hparams")] == '{"a": 2, "b": 1}'
    assert CellSpec.from_json(a.to_json()) == a
    assert CellSpec("soft", "layer", 2048).key() != a.key()


def test_classify_exception() -> None:
    assert classify_exception(MemoryError())[0] == "oom"
    assert classify_exception(RuntimeError("CUDA out of memory. Tried to allocate"))[0] == "oom"
    status, reason = classify_exception(RuntimeError("boom\nsecond line"))
    assert status == "error" and reason == "RuntimeError: boom"


@pytest.mark.heavy  # a fresh interpreter (~10 s); the default fork isolation measures the same in the tests below
def test_spawned_cell_measures_everything() -> None:
    row = run_cell_subprocess(spec("ExplicitSoftmax"), timeout=120)
    assert row["status"] == "ok", row
    assert row["attn_macs"] == row["attn_macs_formula"] == row["macs"] > 0
    assert row["flops"] == 2 * row["macs"] and row["flops_uncounted_ops"] == []
    assert row["peak_mem_bytes"] > 0 and row["latency_ms_median"] > 0 and row["throughput_per_s"] > 0
    assert row["params"] == sum(p.numel() for p in __import__("attnbench.measure.testing", fromlist=["x"])
                                .ExplicitSoftmax(192, 3).parameters())
    assert row["wall_s"] > 0 and row["model"] == T + "ExplicitSoftmax" and row["seq_len"] == 64


def test_forked_cell_measures_a_train_step(cell_runner) -> None:
    row = cell_runner.run(spec("ExplicitSoftmax", mode="train"), timeout=120)
    assert row["status"] == "ok", row
    assert row["mode"] == "train" and row["attn_macs"] == row["attn_macs_formula"]
    assert row["num_threads"] == torch.get_num_threads()


def test_threads_pin_the_cell(cell_runner) -> None:
    row = cell_runner.run(spec("ExplicitSoftmax", threads=1), timeout=120)
    assert row["status"] == "ok", row
    assert row["num_threads"] == 1


@pytest.mark.parametrize("model, kw, status, reason", [
    ("Failing", {}, "error", "deliberate failure"),
    ("NaNOut", {}, "nan", "non-finite"),
    ("Sleepy", {"timeout": 2}, "timeout", "2 s timeout"),
    ("Hungry", {"mem_limit_bytes": 512 * 2**20}, "oom", "allocate"),
], ids=["error", "nan", "timeout", "oom"])
def test_failures_are_typed_rows(cell_runner, model: str, kw: dict, status: str, reason: str) -> None:
    timeout = kw.pop("timeout", 120)
    row = cell_runner.run(spec(model), timeout=timeout, **kw)
    assert row["status"] == status, row
    assert reason in row["reason"]
    assert row["batch"] == 2 and row["model"] == T + model  # the batch never changes


def test_skipped_cells(cell_runner) -> None:
    pytest.importorskip("attnbench.builtin_attentions", reason="soft/ and baselines/ not importable yet")
    row = cell_runner.run(CellSpec("linformer", "layer", 64, hparams={"k": 64}, min_time=0.02), timeout=120)
    assert row["status"] == "skipped" and "linformer" in row["reason"], row
    row = cell_runner.run(CellSpec("softmax-xformers", "layer", 64, min_time=0.02), timeout=120)
    assert row["status"] == "skipped" and "cuda" in row["reason"], row
    if not torch.cuda.is_available():
        row = cell_runner.run(spec("ExplicitSoftmax", device="cuda"), timeout=120)
        assert row["status"] == "skipped" and "CUDA is not available" in row["reason"], row


def test_memory_grows_quadratically_for_softmax_math_and_linearly_for_soft(cell_runner) -> None:
    pytest.importorskip("attnbench.builtin_attentions", reason="soft/ and baselines/ not importable yet")
    peak = {}
    for model in ("softmax-math", "soft"):
        for n in (512, 2048):
            row = cell_runner.run(CellSpec(model, "layer", n, batch=1, min_time=0.01), timeout=120)
            assert row["status"] == "ok", row
            peak[model, n] = row["peak_mem_bytes"]
    quad = peak["softmax-math", 2048] / peak["softmax-math", 512]
    lin = peak["soft", 2048] / peak["soft", 512]
    assert quad > 10, f"softmax-math 512 -> 2048 grew {quad:.1f}x, expected ~16x (N^2)"
    assert 2.5 < lin < 6, f"soft 512 -> 2048 grew {lin:.1f}x, expected ~4x (N)"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_cell(cell_runner) -> None:
    row = cell_runner.run(spec("ExplicitSoftmax", device="cuda", dtype="bf16"), timeout=300)
    assert row["status"] == "ok" and row["peak_mem_bytes"] > 0, row


PROBE = """
import torch, sys
calls = []
orig = torch._C._cuda_getDeviceCount
torch._C._cuda_getDeviceCount = lambda: calls.append(1) or orig()
import attnbench.measure._preload
sys.exit(len(calls))
"""


@pytest.mark.heavy  # a fresh interpreter importing everything (~10 s)
@pytest.mark.cuda  # where it matters: scripts/gpu-check.sh runs `pytest -m cuda` (it passes on a CPU too)
def test_fork_server_preload_never_probes_cuda() -> None:
    """cuInit before fork breaks CUDA in every forked cell: the server's imports must not call it."""
    import subprocess
    import sys

    from attnbench.runner import _child_env

    env = {**_child_env(), "PYTORCH_NVML_BASED_CUDA_CHECK": "0"}  # prove the imports themselves do not probe
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.returncode} CUDA device-count probe(s) while preloading: {proc.stderr[-500:]}"
