"""The report's header names the machine as meta.json records it and warns when joined runs' machines differ."""
from __future__ import annotations

from attnbench.reporting.format import machine_line
from attnbench.reporting.sections import _header
from report_frames import frame

BASE = {"run": "a", "cpu": "AMD EPYC", "cpu_count": 2, "torch_threads": 2, "cpu_family": 25, "cpu_model": 1,
        "cpu_stepping": 1, "cpu_isa": ["avx2", "fma"], "cpu_capability": "AVX2", "torch": "2.14.1"}


def test_the_machine_line_names_family_model_stepping_and_isa():
    line = machine_line(BASE)
    assert line.startswith("Machine: AMD EPYC (2 cores, 2 torch threads) (family 25 model 1 stepping 1; avx2 fma; "
                           "torch AVX2)")


def test_joined_runs_from_different_machines_are_flagged_once():
    df = frame()
    other = {**BASE, "run": "b", "cpu_isa": ["avx2", "fma", "avx512_bf16"]}
    text = " ".join(_header(df, df, [BASE, other], ["a", "b"]).blocks[0].lines)
    assert "different machines" in text and "avx512_bf16" in text
    same = " ".join(_header(df, df, [BASE, {**BASE, "run": "b"}], ["a", "b"]).blocks[0].lines)
    assert "different machines" not in same
