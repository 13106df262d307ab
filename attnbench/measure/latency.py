"""Latency with ``torch.utils.benchmark.Timer.blocked_autorange``: median and IQR of one step, synchronised.

Warm-up calls run first (lazy initialisation, allocator and kernel caches, the optimizer state), then
``blocked_autorange(min_run_time)`` sizes blocks so that timer overhead is negligible and runs them for at least
``min_run_time`` seconds; the Timer synchronises the accelerator around every block. The thread count is pinned to
``num_threads`` (default: ``torch.get_num_threads()``, not the Timer's default of 1) and recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:  # imported lazily: torch.utils.benchmark probes CUDA at import, which must not happen in the
    from torch.utils.benchmark import Measurement  # fork server of attnbench.cell.CellRunner

__all__ = ["Latency", "time_step"]


@dataclass(frozen=True)
class Latency:
    """Timing of one step.

    Attributes:
        median_ms: median time per step, ms.
        iqr_ms: interquartile range of the per-block means, ms.
        throughput_per_s: samples per second, ``batch / median``.
        num_threads: the intra-op thread count the Timer pinned.
        runs: number of steps timed (all blocks).
        measurement: torch's Measurement (for ``torch.utils.benchmark.Compare``); not part of a results row.
    """

    median_ms: float
    iqr_ms: float
    throughput_per_s: float
    num_threads: int
    runs: int
    measurement: Measurement | None = field(default=None, compare=False, repr=False)


def time_step(step: Callable[[], Any], *, batch: int, min_time: float = 0.5, warmup: int = 2,
              num_threads: int | None = None, label: str | None = None, sub_label: str | None = None,
              description: str | None = None) -> Latency:
    """Time ``step()``.

    Args:
        step: one step (see :func:`attnbench.measure.step.make_step`).
        batch: samples per step, for throughput.
        min_time: seconds ``blocked_autorange`` runs at least.
        warmup: untimed calls first.
        num_threads: intra-op threads while timing; default the current ``torch.get_num_threads()``.
        label, sub_label, description: torch's Compare rows/columns (mode, attention, N).
    """
    from torch.utils.benchmark import Timer

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    num_threads = num_threads or torch.get_num_threads()
    for _ in range(warmup):
        step()
    timer = Timer(stmt="step()", globals={"step": step}, num_threads=num_threads, label=label,
                  sub_label=sub_label, description=description)
    m = timer.blocked_autorange(min_run_time=min_time)
    median = m.median
    return Latency(median_ms=median * 1e3, iqr_ms=m.iqr * 1e3, throughput_per_s=batch / median,
                   num_threads=num_threads, runs=len(m.raw_times) * m.number_per_run, measurement=m)
