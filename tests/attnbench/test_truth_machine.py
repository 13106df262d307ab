"""Which machine it really was: CPU family, model, stepping and kernel ISA (or the GPU's capability and driver) in
meta.json, the machine line, and a warning from compare when two runs differ in any of them; the command line as a
user would type it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from attnbench import machine
from attnbench.compare import compare_runs
from attnbench.results import command_line, environment, read_meta, write_meta
from tests.attnbench.test_compare import A_CELLS, make_run

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
stepping\t: 8
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse4_2 avx fma avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16 amx_int8 hypervisor

processor\t: 1
vendor_id\t: GenuineIntel
physical id\t: 0
core id\t\t: 0

processor\t: 2
physical id\t: 0
core id\t\t: 1
"""


def test_cpu_identity_and_cores_from_cpuinfo(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    ident = machine.cpu_identity(str(path))
    assert ident == {"cpu_vendor": "GenuineIntel", "cpu_family": 6, "cpu_model": 143, "cpu_stepping": 8,
                     "cpu_isa": ["sse4_2", "avx", "fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                                 "amx_bf16", "amx_int8"]}
    monkeypatch.setattr(machine, "cpu_ids", lambda: [0, 1, 2])
    assert machine.physical_cores(str(path)) == 2  # cpu 1 is cpu 0's SMT sibling
    assert machine.cpu_identity(str(tmp_path / "missing")) == {}


def test_the_environment_records_the_identity_and_the_machine_line_says_it() -> None:
    env = environment("cpu")
    if not Path(machine.PROC_CPUINFO).exists():
        pytest.skip("no /proc/cpuinfo here")
    assert {"cpu_family", "cpu_model", "cpu_isa", "cpu_capability"} <= set(env)
    assert isinstance(env["cpu_isa"], list) and env["cpu_capability"]
    line = machine.describe(env)
    assert line.startswith(env["cpu"]) and f"family {env['cpu_family']}" in line
    gpu = machine.describe({"cpu": "X", "gpu": "NVIDIA H100", "gpu_capability": "9.0", "gpu_driver": "550.54"})
    assert gpu == "X, NVIDIA H100 (sm 9.0, driver 550.54)"


def _run_on(path: Path, **env) -> Path:
    run = make_run(path, A_CELLS)
    meta = read_meta(run)
    meta["environment"].update({"cpu_vendor": "GenuineIntel", "cpu_family": 6, "cpu_model": 143, "cpu_stepping": 8,
                                "cpu_isa": ["avx2", "avx512f"], "cpu_capability": "AVX512", **env})
    write_meta(run, meta)
    return run


def test_compare_warns_when_only_the_isa_differs_and_names_it(tmp_path: Path) -> None:
    a = _run_on(tmp_path / "a")
    b = _run_on(tmp_path / "b", cpu_isa=["avx2", "avx512f", "avx512_bf16", "amx_bf16"])
    (w,) = compare_runs(a, b).warnings
    assert "cpu_isa: avx512_bf16, amx_bf16 only in B" in w and "different machines" in w
    assert compare_runs(a, _run_on(tmp_path / "c")).warnings == []  # the same machine: no warning


def test_compare_names_a_stepping_or_a_gpu_driver_and_ignores_what_an_older_run_did_not_record(tmp_path) -> None:
    a = _run_on(tmp_path / "a", gpu_driver="535.1")
    w = compare_runs(a, _run_on(tmp_path / "b", cpu_stepping=6, gpu_driver="550.54")).warnings[0]
    assert "cpu_stepping 8 vs 6" in w and "gpu_driver '535.1' vs '550.54'" in w
    old = make_run(tmp_path / "old", A_CELLS)  # written before the identity was recorded: unknown, not different
    assert compare_runs(old, a).warnings == []


@pytest.mark.parametrize("argv, command", [
    (["/root/.pyenv/versions/3.11.7/bin/attnbench", "run", "--models", "all", "--seq", "1024..8192"],
     "attnbench run --models all --seq 1024..8192"),
    (["/work/main/attnbench/__main__.py", "run", "-p", "soft.landmarks=64"], "attnbench run -p soft.landmarks=64"),
    (["/home/me/bench/sweep.py", "--fast"], "python sweep.py --fast"),
    (["attnbench", "run", "--name", "my run"], "attnbench run --name 'my run'"),
])
def test_the_command_line_is_what_a_user_would_type(argv, command, monkeypatch) -> None:
    assert command_line(argv) == command
    monkeypatch.setattr(sys, "argv", argv)
    assert environment("cpu")["command"] == command
