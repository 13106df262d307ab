"""Latency with ``torch.utils.benchmark.Timer``: median and IQR of one step over several blocks, synchronised.

Warm-up calls run first (lazy initialisation, allocator and kernel caches, the optimizer state). Then blocks of
``number`` steps (enough for ~1 ms, so that timer overhead is negligible) are timed with ``Timer.timeit`` until
``min_run_time`` has passed and at least ``MIN_BLOCKS`` blocks exist, and merged into one torch ``Measurement``.
``blocked_autorange`` is not used as is: its block-size rule (overhead <= 1e-4, blocks grown tenfold) makes one
block of the whole budget for steps of a few ms, so its IQR is always 0. A step so slow that ``MIN_BLOCKS`` of them
exceed ``SLOW_BUDGET_S`` (and ``min_run_time``) gets fewer blocks, down to one, whose spread is then unknown
(``iqr_ms`` 0 with ``runs`` 1; the report marks it). The Timer synchronises the accelerator around every block. The
thread count is pinned to ``num_threads`` (default: ``torch.get_num_threads()``, not the Timer's default of 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import math

import torch

if TYPE_CHECKING:  # imported lazily: torch.utils.benchmark probes CUDA at import, which must not happen in the
    from torch.utils.benchmark import Measurement  # fork server of attnbench.runner.CellRunner

__all__ = ["Latency", "time_step", "MIN_BLOCKS"]

MIN_BLOCKS = 7  # enough for a quartile to mean something
SLOW_BUDGET_S = 3.0  # what a slow step may spend reaching MIN_BLOCKS beyond min_run_time
BLOCK_S = 1e-3


@dataclass(frozen=True)
class Latency:
    """Timing of one step.

    Attributes:
        median_ms: median time per step, ms.
        iqr_ms: interquartile range of the per-block means, ms.
        throughput_per_s: samples per second, ``batch / median``.
        num_threads: the intra-op thread count the Timer pinned.
        runs: number of steps timed (all blocks).
        blocks: number of timed blocks.
        measurement: torch's Measurement (for ``torch.utils.benchmark.Compare``); not part of a results row.
    """

    median_ms: float
    iqr_ms: float
    throughput_per_s: float
    num_threads: int
    runs: int
    blocks: int = 1
    measurement: Measurement | None = field(default=None, compare=False, repr=False)


def time_step(step: Callable[[], Any], *, batch: int, min_time: float = 0.5, warmup: int = 2,
              num_threads: int | None = None, label: str | None = None, sub_label: str | None = None,
              description: str | None = None, min_blocks: int | None = None,
              target_blocks: int = MIN_BLOCKS) -> Latency:
    """Time ``step()``.

    Args:
        step: one step (see :func:`attnbench.measure.step.make_step`).
        batch: samples per step, for throughput.
        min_time: seconds ``blocked_autorange`` runs at least.
        warmup: untimed calls first.
        num_threads: intra-op threads while timing; default the current ``torch.get_num_threads()``.
        label, sub_label, description: torch's Compare rows/columns (mode, attention, N).
        min_blocks: time at least this many blocks whatever the step costs (beyond ``SLOW_BUDGET_S``): a re-measured
            slow cell asks for them.
        target_blocks: blocks to reach when the budget allows (``MIN_BLOCKS``; one of several rounds needs fewer).
    """
    from torch.utils.benchmark import Timer

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    num_threads = num_threads or torch.get_num_threads()
    for _ in range(warmup):
        step()
    from torch.utils.benchmark import Measurement

    timer = Timer(stmt="step()", globals={"step": step}, num_threads=num_threads, label=label,
                  sub_label=sub_label, description=description)
    first = timer.timeit(1)
    t1 = max(first.median, 1e-9)
    number = max(1, math.ceil(BLOCK_S / t1))
    block = t1 * number
    blocks = max(math.ceil(min_time / block), 1)
    if blocks < target_blocks:
        blocks = max(blocks, min(target_blocks, math.floor(max(SLOW_BUDGET_S, min_time) / block)))
    blocks = max(blocks, min_blocks or 0)
    parts = [first] if number == 1 else []
    while len(parts) < blocks:
        parts.append(timer.timeit(number))
    m = Measurement.merge(parts)[0]
    median = m.median
    return Latency(median_ms=median * 1e3, iqr_ms=m.iqr * 1e3, throughput_per_s=batch / median,
                   num_threads=num_threads, runs=len(parts) * number, blocks=len(parts), measurement=m)
