"""``--compile``: torch.compile applied to the skeleton, compile time apart from the latency; bad input exits 2."""
from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from attnbench.cell import CellSpec, run_cell
from attnbench.cli import main
from attnbench.config import ConfigError, SweepConfig, validate


def test_compile_mode_must_be_one_of_torchs() -> None:
    with pytest.raises(ConfigError, match=r"bad compile 'fastest'; accepted: default, reduce-overhead"):
        validate(SweepConfig(models=["softmax"], seq_lens=[64], device="cpu", compile="fastest"))
    r = CliRunner().invoke(main, ["run", "--compile-mode", "fastest", "--seq", "64"])
    assert r.exit_code == 2 and "fastest" in r.output and "Traceback" not in r.output


def test_compile_without_a_cpp_compiler_is_one_line_before_any_cell(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.delenv("CXX", raising=False)
    r = CliRunner().invoke(main, ["run", "--compile", "-m", "softmax", "--seq", "64", "--device", "cpu",
                                  "--out", str(tmp_path)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--compile on a CPU needs a C++ compiler" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_compile_is_part_of_the_cell_key() -> None:
    assert CellSpec("soft", "layer", 64).key() != CellSpec("soft", "layer", 64, compile="default").key()


@pytest.mark.heavy
def test_a_compiled_cell_is_ok_with_its_compile_time_apart() -> None:
    eager = run_cell(CellSpec("softmax", "layer", 64, min_time=0.05))
    compiled = run_cell(CellSpec("softmax", "layer", 64, min_time=0.05, compile="default"))
    assert eager["status"] == compiled["status"] == "ok", (eager, compiled)
    assert eager["compile_s"] is None and compiled["compile_s"] > 0
    # the same model is counted (eager trace) and the compile time never enters the step's latency
    assert compiled["macs"] == eager["macs"] and compiled["latency_ms_median"] < 1e3 * compiled["compile_s"]
