"""The machine's load from /proc/stat: ticks of the counted cores, idle cores, other processes' share."""
from __future__ import annotations

from pathlib import Path

import pytest

from attnbench import machine

STAT = """cpu  300 0 100 500 20 0 5 10 0 0
cpu0 100 0 50 200 10 0 5 5 0 0
cpu1 200 0 50 300 10 0 0 5 0 0
cpu2 999 0 0 0 0 0 0 0 0 0
intr 1 2 3
"""


def write_stat(tmp_path: Path, text: str) -> str:
    p = tmp_path / "stat"
    p.write_text(text)
    return str(p)


def test_ticks_count_only_the_given_cores_with_steal_as_busy(tmp_path: Path) -> None:
    path = write_stat(tmp_path, STAT)
    # cpu0: busy = user 100 + system 50 + softirq 5 + steal 5 = 160 of 370; cpu1: 255 of 565
    assert machine.read_ticks([0], path) == (160, 370)
    assert machine.read_ticks([0, 1], path) == (160 + 255, 370 + 565)
    assert machine.read_ticks([7], path) is None and machine.read_ticks([0], str(tmp_path / "none")) is None


def test_idle_cores_leave_out_busy_ones(monkeypatch) -> None:
    for busy, idle in ((0.1, 2), (0.35, 1), (1.0, 1), (1.4, 0), (2.0, 0)):
        monkeypatch.setattr(machine, "busy_cores", lambda *_a, b=busy: b)
        assert machine.idle_cores(0, [0, 1]) == idle, busy
    monkeypatch.setattr(machine, "busy_cores", lambda *_a: None)
    assert machine.idle_cores(0, [0, 1]) is None


def test_cpu_window_subtracts_this_process(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "stat"
    monkeypatch.setattr(machine, "PROC_STAT", str(path))
    own = iter([10.0, 11.0])  # this process used 1 s of CPU inside the window
    monkeypatch.setattr(machine, "_own_cpu_s", lambda: next(own))
    tck = machine._CLK_TCK
    path.write_text("cpu0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0\n")
    w = machine.CpuWindow(cpus=[0, 1]).start()
    # 2 s of wall time on 2 cores = 4 s of core time; 3 s busy, 1 s of it ours: others took 2 of 4
    path.write_text(f"cpu0 {2 * tck} 0 0 0 0 0 0 0\ncpu1 {tck} 0 0 {tck} 0 0 0 0\n")
    assert w.stop() == pytest.approx(0.5)


def test_the_real_machine_is_readable_here() -> None:
    if machine.read_ticks() is None:
        pytest.skip("no /proc/stat on this system")
    share = machine.CpuWindow().start().stop()
    assert share is None or 0.0 <= share <= 1.0
    state = machine.machine_state(0.05)
    assert state["cores"] >= 1 and 0 <= state["busy_cores"] <= state["cores"] + 0.5
