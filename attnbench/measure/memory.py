"""Peak memory of one step, above what was live before it.

* **CUDA**: the caching allocator's own statistic. ``reset_peak_memory_stats``, run the step, synchronise, and
  report ``max_memory_allocated - memory_allocated_before`` (tensor memory; the allocator's cache and the CUDA
  context are not counted).
* **CPU**: there is no allocator statistic, so the process's resident high-water mark is used. The baseline is
  ``VmRSS`` after the model, inputs (and, in train mode, optimizer state) exist and after ``malloc_trim`` has
  returned freed heap pages to the OS; ``echo 5 > /proc/self/clear_refs`` resets ``VmHWM`` to the current RSS;
  the peak is ``VmHWM`` after the step minus that baseline. Anything else the process did before pollutes RSS, so
  this runs in the cell's own fresh process, in a pass of its own before FLOPs are traced or the step is timed.
  Where ``/proc/self/clear_refs`` cannot be written (not Linux, a locked-down container) there is no number:
  :class:`PeakMemory` carries ``peak_bytes=None`` and the reason.
"""
from __future__ import annotations

import ctypes
import gc
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["PeakMemory", "measure_peak", "cpu_peak_unavailable", "rss_bytes"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of one call above the baseline before it.

    Attributes:
        peak_bytes: the peak above the baseline, or None when it could not be measured.
        baseline_bytes: what was live before the call (RSS on CPU, allocated tensors on CUDA).
        method: ``"cuda-allocator"`` or ``"cpu-vmhwm"``.
        reason: why ``peak_bytes`` is None.
    """

    peak_bytes: int | None
    baseline_bytes: int | None
    method: str
    reason: str | None = None


def _status_bytes(field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.M)
    if m is None:
        raise OSError(f"{field} not in {_STATUS}")
    return int(m.group(1)) * 1024


def rss_bytes() -> int:
    """Current resident set size of this process (Linux)."""
    return _status_bytes("VmRSS")


def cpu_peak_unavailable() -> str | None:
    """None when the CPU high-water mark can be reset and read here, else the reason it cannot."""
    try:
        _status_bytes("VmHWM")
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError as e:
        return f"CPU peak memory needs a writable {_CLEAR_REFS} and VmHWM in {_STATUS} (Linux): {e}"
    return None


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS so that the RSS baseline holds live memory only (glibc)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_peak(fn: Callable[[], Any], device: str | torch.device = "cpu") -> PeakMemory:
    """Run ``fn()`` once and return its peak memory above what was live before it.

    On CPU the caller must run this in a process of its own (see the module docstring).
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return PeakMemory(torch.cuda.max_memory_allocated(device) - baseline, baseline, "cuda-allocator")
    if device.type != "cpu":
        return PeakMemory(None, None, "none", f"no peak-memory probe for device type {device.type!r}")
    reason = cpu_peak_unavailable()
    if reason is not None:
        fn()
        return PeakMemory(None, None, "cpu-vmhwm", reason)
    _malloc_trim()
    baseline = rss_bytes()
    _CLEAR_REFS.write_text("5")  # VmHWM := current RSS
    fn()
    peak = _status_bytes("VmHWM")
    return PeakMemory(max(peak - baseline, 0), baseline, "cpu-vmhwm")
