"""Processes and files outlive nothing: one writer per run directory; cells and scratch folders die with the
sweep, however it is stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from attnbench.measure.testing import process_alive, signal_running_cell, run_lock_holder
from attnbench.results import RunLock, load_results


def test_a_second_writer_gets_one_line_naming_the_holder(tmp_path: Path) -> None:
    with run_lock_holder(tmp_path) as holder, \
            pytest.raises(ValueError, match=rf"in use by another attnbench process \(PID {holder.pid}\)"), \
            RunLock(tmp_path):
        pass
    with RunLock(tmp_path):  # the kernel released the dead holder's lock
        pass


def test_a_non_numeric_seq_len_names_file_and_column(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("model,seq_len,status\nsoft,abc,ok\n")
    with pytest.raises(ValueError, match=r"results.csv: column 'seq_len' holds 'abc' in row 2"):
        load_results(tmp_path)


def _children_of(pid: int) -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(p.name))
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.heavy)])
def test_cells_and_scratch_die_with_the_parent(tmp_path: Path, sig: int) -> None:
    script = textwrap.dedent("""
        import sys
        from attnbench.cell import CellSpec
        from attnbench.runner import CellRunner
        r = CellRunner("fork")
        spec = CellSpec("attnbench.measure.testing:Sleepy", "layer", 16, hparams={"seconds": 60}, min_time=0.01)
        r._start_server()
        print(r._server.pid, r._tmp.name, flush=True)
        r.run(spec, timeout=120)
        """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    server_pid, scratch = parent.stdout.readline().split()
    server_pid = int(server_pid)
    deadline = time.time() + 60
    while not _children_of(server_pid) and time.time() < deadline:  # the cell is forked and sleeping
        time.sleep(0.2)
    cells = _children_of(server_pid)
    assert cells, "the cell never started"
    os.kill(parent.pid, sig)
    parent.wait(timeout=30)
    deadline = time.time() + 30
    while (any(map(process_alive, [server_pid, *cells])) or os.path.exists(scratch)) and time.time() < deadline:
        time.sleep(0.2)
    assert not process_alive(server_pid) and not any(map(process_alive, cells)), "a child outlived its parent"
    assert not os.path.exists(scratch), "the scratch folder was left behind"


@pytest.mark.heavy  # tens of seconds of process start-ups: run with -m heavy
def test_sigterm_of_run_keeps_rows_kills_the_cell_and_exits_143(tmp_path: Path) -> None:
    """SLURM sends SIGTERM at its time limit: the same clean-up as Ctrl-C, exit 128 + 15."""
    T = "attnbench.measure.testing:"
    pidfile, scratch = tmp_path / "cell.pid", tmp_path / "tmp"
    scratch.mkdir()
    common = ["--seq", "16", "--mode", "infer", "--device", "cpu", "--min-time", "0.01", "--out", str(tmp_path),
              "--name", "r", "--repeats", "1", "--no-plots"]
    # a finished group first (rows are written when a group's rounds are over), then one that hangs in Sleepy
    first = subprocess.run([sys.executable, "-m", "attnbench", "run", "-m", f"{T}ExplicitSoftmax", *common],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    cmd = [sys.executable, "-m", "attnbench", "run", "-m", f"{T}ExplicitSoftmax,{T}Sleepy", *common, "--resume",
           "-p", f"{T}Sleepy.pidfile={str(pidfile)!r}"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(scratch)})
    cell_pid, err = signal_running_cell(proc, pidfile, signal.SIGTERM)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM): 1 finished rows kept" in err
    assert list(load_results(tmp_path / "r").status) == ["ok"]
    time.sleep(0.5)
    assert not process_alive(cell_pid), "the running cell outlived the terminated sweep"
    assert not list(scratch.glob("attnbench-cells-*")), "the cell server's scratch folder was left behind"
