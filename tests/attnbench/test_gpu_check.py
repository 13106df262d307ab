"""scripts/gpu-check.sh: on a machine without CUDA it says so and exits 0, touching nothing (its CUDA path runs only
where a GPU is: ``bash scripts/gpu-check.sh``)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_script_parses():
    out = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_cpu_path_says_so_and_exits_zero(tmp_path):
    work = tmp_path / "work"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable, "GPU_CHECK_OUT": str(work)}
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)  # the script finds the repository from its own path
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no CUDA device" in out.stdout and "exiting 0" in out.stdout
    assert "summary" not in out.stdout  # no step ran
    assert not work.exists()  # nothing was written


def test_cpu_path_with_a_python_that_lacks_torch_still_exits_zero(tmp_path):
    """A python without torch cannot see a GPU either: the script must not crash on the probe."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHON": str(fake), "GPU_CHECK_OUT": str(tmp_path / "w")})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no CUDA device" in out.stdout
