"""Measurement: FLOPs (fvcore, audited), peak memory (CUDA allocator / CPU high-water mark), latency (torch Timer).

Each function returns its own small value; the probes of :mod:`attnbench.measure.probes` (one per quantity, with
the columns it writes) turn them into a results row, and :mod:`attnbench.cell` runs the probes.

* :func:`count_flops` -> :class:`FlopCount` (``flops.py``)
* :func:`measure_peak` -> :class:`PeakMemory` (``memory.py``)
* :func:`time_step` -> :class:`Latency` (``latency.py``), timing the closure of :func:`make_step` (``step.py``)
"""
from attnbench.measure.flops import FlopCount, count_flops
from attnbench.measure.latency import Latency, time_step
from attnbench.measure.memory import PeakMemory, measure_peak
from attnbench.measure.step import DTYPES, MODES, make_step

__all__ = ["FlopCount", "count_flops", "PeakMemory", "measure_peak", "Latency", "time_step", "make_step", "DTYPES",
           "MODES"]
