"""How busy the machine is: idle cores and other processes' CPU share from ``/proc/stat``, load average, governor.

Torch-free and cheap. The cores counted are the ones this process may run on (``os.sched_getaffinity``), read from
their ``cpuN`` lines of ``/proc/stat``; busy time is everything but ``idle`` and ``iowait`` (``steal`` counts as
busy: a hypervisor that takes the CPU slows a cell as much as a neighbour does). Where ``/proc/stat`` cannot be
read (macOS, a locked-down container) every function returns None and the sweep runs without load checks.

* :func:`idle_cores` samples the cores for a moment while this process waits: how many a cell may use.
* :class:`CpuWindow` brackets a measurement: the share of the cores' time that *other* processes took during it
  (busy ticks of all counted cores minus this process's own CPU time, over the cores' total ticks).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BUSY_SLACK", "cpu_ids", "read_ticks", "busy_cores", "idle_cores", "load_avg_1m", "governor",
           "CpuWindow", "machine_state"]

BUSY_SLACK = 0.3  # a core more than this busy (fraction of its time) is taken: 0.2 busy is idle, 0.4 is not
PROC_STAT = "/proc/stat"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_ids() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def read_ticks(cpus: list[int] | None = None, path: str | None = None) -> tuple[int, int] | None:
    """(busy, total) clock ticks since boot summed over ``cpus`` (default :func:`cpu_ids`), or None if unreadable.

    A ``cpuN`` line is ``user nice system idle iowait irq softirq steal guest guest_nice``; guest time is already
    inside user/nice, so it is not added again.
    """
    wanted = {f"cpu{i}" for i in (cpu_ids() if cpus is None else cpus)}
    busy = total = 0
    seen = 0
    try:
        with open(path or PROC_STAT) as f:
            for line in f:
                parts = line.split()
                if not parts or parts[0] not in wanted:
                    continue
                v = [int(x) for x in parts[1:9]] + [0] * max(0, 8 - len(parts[1:9]))
                idle = v[3] + v[4]
                t = sum(v[:8])
                busy += t - idle
                total += t
                seen += 1
    except (OSError, ValueError):
        return None
    return (busy, total) if seen else None


def busy_cores(seconds: float = 0.25, cpus: list[int] | None = None) -> float | None:
    """How many cores' worth of CPU everything on the machine used while this process slept ``seconds``."""
    cpus = cpu_ids() if cpus is None else cpus
    a = read_ticks(cpus)
    if a is None:
        return None
    time.sleep(seconds)
    b = read_ticks(cpus)
    if b is None or b[1] <= a[1]:
        return None
    return len(cpus) * (b[0] - a[0]) / (b[1] - a[1])


def idle_cores(seconds: float = 0.25, cpus: list[int] | None = None) -> int | None:
    """Cores not taken by other processes now (a core busier than :data:`BUSY_SLACK` is taken); None if unknown."""
    cpus = cpu_ids() if cpus is None else cpus
    busy = busy_cores(seconds, cpus)
    if busy is None:
        return None
    return max(0, len(cpus) - max(0, math.ceil(busy - BUSY_SLACK)))


def load_avg_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def governor(cpus: list[int] | None = None) -> str | None:
    """The CPU frequency governor(s) of the counted cores (``performance``, ``powersave,performance``), or None
    where cpufreq is not exposed (most VMs and containers)."""
    found = []
    for i in cpu_ids() if cpus is None else cpus:
        try:
            found.append(Path(f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_governor").read_text().strip())
        except OSError:
            continue
    return ",".join(dict.fromkeys(found)) or None


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class CpuWindow:
    """What other processes took of the cores between :meth:`start` and :meth:`stop`.

    >>> w = CpuWindow().start(); work(); share = w.stop()  # 0.0 quiet .. 1.0 every core busy with others
    """

    cpus: list[int] | None = None
    _ticks: tuple[int, int] | None = None
    _own: float = 0.0

    def start(self) -> "CpuWindow":
        self.cpus = cpu_ids() if self.cpus is None else self.cpus
        self._ticks, self._own = read_ticks(self.cpus), _own_cpu_s()
        return self

    def stop(self) -> float | None:
        """Other processes' share of the counted cores' time since :meth:`start`, in [0, 1]; None if unknown."""
        end, own = read_ticks(self.cpus), _own_cpu_s()
        if self._ticks is None or end is None or end[1] <= self._ticks[1]:
            return None
        busy_s = (end[0] - self._ticks[0]) / _CLK_TCK
        total_s = (end[1] - self._ticks[1]) / _CLK_TCK
        return round(min(1.0, max(0.0, (busy_s - (own - self._own)) / total_s)), 4)


def machine_state(sample_s: float = 0.25) -> dict[str, Any]:
    """The machine now, for meta.json: counted cores, busy cores (sampled), 1-min load average, governor."""
    cpus = cpu_ids()
    busy = busy_cores(sample_s, cpus)
    return {"cores": len(cpus), "busy_cores": None if busy is None else round(busy, 2),
            "load_avg_1m": load_avg_1m(), "governor": governor(cpus)}
