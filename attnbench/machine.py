"""How busy the machine is: idle cores and other processes' CPU share from ``/proc/stat``, load average, governor.

Torch-free and cheap. The cores counted are the ones this process may run on (``os.sched_getaffinity``), read from
their ``cpuN`` lines of ``/proc/stat``; busy time is everything but ``idle`` and ``iowait`` (``steal`` counts as
busy: a hypervisor that takes the CPU slows a cell as much as a neighbour does). Where ``/proc/stat`` cannot be
read (macOS, a locked-down container) every function returns None and the sweep runs without load checks.

* :func:`idle_cores` samples the cores for a moment while this process waits: how many a cell may use.
* :class:`CpuWindow` brackets a measurement: the share of the cores' time that *other* processes took during it
  (busy ticks of all counted cores minus this process's own CPU time, over the cores' total ticks).
* :func:`cpu_identity` says which CPU it really is (``/proc/cpuinfo``): family, model, stepping and the ISA features
  that decide which kernels torch runs; :func:`differences` names what differs between two runs' machines.
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BUSY_SLACK", "cpu_ids", "read_ticks", "busy_cores", "idle_cores", "load_avg_1m", "governor",
           "CpuWindow", "machine_state", "KERNEL_ISA", "IDENTITY_KEYS", "cpu_identity", "physical_cores", "cpu_max_ghz",
           "gpu_driver",
           "describe", "differences"]

BUSY_SLACK = 0.3  # a core more than this busy (fraction of its time) is taken: 0.2 busy is idle, 0.4 is not
PROC_STAT = "/proc/stat"
PROC_CPUINFO = "/proc/cpuinfo"
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


# ------------------------------------------------------------------------------------------------ identity

# cpuinfo flags that change which kernels torch (ATen, oneDNN, MKL) picks: two machines with the same model name
# but another of these run other code (a VM may hide avx512 from one and not the other)
KERNEL_ISA = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
              "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "sve", "sve2", "bf16", "i8mm")
# environment() keys that identify the hardware (beyond the model name and core count): any difference between two
# runs makes their timings incomparable
IDENTITY_KEYS = ("cpu_vendor", "cpu_family", "cpu_model", "cpu_stepping", "cpu_isa", "cpu_capability",
                 "gpu_capability", "gpu_driver")
# /proc/cpuinfo fields -> identity keys; x86 names first, then ARM's (implementer, part, revision)
_CPUINFO_FIELDS = {"vendor_id": "cpu_vendor", "cpu family": "cpu_family", "model": "cpu_model",
                   "stepping": "cpu_stepping", "CPU implementer": "cpu_vendor", "CPU part": "cpu_model",
                   "CPU revision": "cpu_stepping"}


def _int_or_text(v: str) -> int | str:
    try:
        return int(v, 16) if v.lower().startswith("0x") else int(v)
    except ValueError:
        return v


def cpu_identity(path: str | None = None) -> dict[str, Any]:
    """The first CPU's vendor, family, model, stepping and :data:`KERNEL_ISA` flags (``cpu_isa``, sorted) from
    ``/proc/cpuinfo``; ``{}`` where it cannot be read. Fields a CPU does not report are left out."""
    out: dict[str, Any] = {}
    flags: set[str] = set()
    try:
        with open(path or PROC_CPUINFO) as f:
            for line in f:
                if not line.strip():
                    if out:  # the first processor's block is enough: the cores of one machine are alike
                        break
                    continue
                name, _, value = (p.strip() for p in line.partition(":"))
                if name in _CPUINFO_FIELDS and _CPUINFO_FIELDS[name] not in out:
                    out[_CPUINFO_FIELDS[name]] = _int_or_text(value) if name != "vendor_id" else value
                elif name in ("flags", "Features"):
                    flags = set(value.split())
    except OSError:
        return {}
    if out or flags:
        out["cpu_isa"] = [f for f in KERNEL_ISA if f in flags]
    return out


def physical_cores(path: str | None = None) -> int | None:
    """Cores, not SMT siblings, among the CPUs this process may run on (``physical id`` and ``core id`` of
    ``/proc/cpuinfo``); the CPUs themselves where cpuinfo does not tell; None where it cannot be read."""
    allowed, cores, cpu, phys = set(cpu_ids()), set(), None, None
    try:
        with open(path or PROC_CPUINFO) as f:
            for line in f:
                name, _, value = (p.strip() for p in line.partition(":"))
                if name == "processor":
                    cpu, phys = _int_or_text(value), None
                elif name == "physical id":
                    phys = value
                elif name == "core id" and cpu in allowed:
                    cores.add((phys, value))
    except OSError:
        return None
    return len(cores) or len(allowed)


def cpu_max_ghz(path: str | None = None) -> tuple[float, str] | None:
    """The cores' highest clock and where it was read: cpufreq's ``cpuinfo_max_freq`` (the turbo limit), else
    ``/proc/cpuinfo``'s ``cpu MHz`` (in a VM, usually the nominal clock); None where neither exists."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq max"
    except (OSError, ValueError):
        pass
    try:
        with open(path or PROC_CPUINFO) as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.partition(":")[2]) / 1e3, "cpu MHz"
    except (OSError, ValueError):
        pass
    return None


def gpu_driver() -> str | None:
    """The NVIDIA kernel driver's version (``/proc/driver/nvidia/version``), None where there is none."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    found = re.search(r"Kernel Module(?: for [\w]+)?\s+(\d+(?:\.\d+)+)", text)
    return found[1] if found else None


def describe(env: dict[str, Any]) -> str:
    """The hardware of an ``environment()`` in a few words, for the machine line: ``AMD EPYC (family 25 model 1
    stepping 1; avx2 fma; torch AVX2)``, plus ``NVIDIA H100 (sm 9.0, driver 550.54)`` where a GPU was used."""
    ident = [f"{k.removeprefix('cpu_')} {env[k]}" for k in ("cpu_family", "cpu_model", "cpu_stepping")
             if env.get(k) is not None]
    parts = [" ".join(ident)] if ident else []
    if env.get("cpu_isa") is not None:
        parts.append(" ".join(env["cpu_isa"]) or "no vector ISA listed")
    if env.get("cpu_capability"):
        parts.append(f"torch {env['cpu_capability']}")
    text = str(env.get("cpu") or "CPU ?") + (f" ({'; '.join(parts)})" if parts else "")
    if env.get("gpu"):
        gpu = [f"sm {env['gpu_capability']}"] if env.get("gpu_capability") else []
        gpu += [f"driver {env['gpu_driver']}"] if env.get("gpu_driver") else []
        text += f", {env['gpu']}" + (f" ({', '.join(gpu)})" if gpu else "")
    return text


def differences(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...] = IDENTITY_KEYS) -> list[str]:
    """What differs between two ``environment()`` dicts in ``keys``, one phrase each (``cpu_isa: avx512_bf16 only in
    B``). A key that one of them does not record (an older meta.json) is unknown, not a difference."""
    out = []
    for k in keys:
        if k not in a or k not in b or a[k] == b[k]:
            continue
        if isinstance(a[k], list) and isinstance(b[k], list):
            only = [f"{', '.join(x)} only in {side}" for side, x in
                    (("A", [f for f in a[k] if f not in b[k]]), ("B", [f for f in b[k] if f not in a[k]])) if x]
            out.append(f"{k}: {'; '.join(only) or 'same features in another order'}")
        else:
            out.append(f"{k} {a[k]!r} vs {b[k]!r}")
    return out
