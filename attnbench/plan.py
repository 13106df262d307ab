"""What a sweep will do before it does it (``attnbench run --dry-run``): its cells in run order, which of them are
skipped (the sweep's own ``planned_skips``: what cannot run here, or exceeds the memory estimate) or already done
(``--resume``), and a rough wall-time estimate.

The estimate is a model, not a measurement, and says so. A cell's step takes ``flops_per_step(MACs) /
(EFFICIENCY x calibrated matmul GFLOP/s)``, with the MACs from the attention's closed form over the skeleton's
attention layers (plus the ViT blocks' MLPs); its first round costs ``FIRST_ROUND_S`` of process start-up, model
build, FLOP count and memory pass plus ``FIRST_ROUND_STEPS`` steps, each later round ``ROUND_S`` plus a warm-up
step; the timing itself is ``--min-time`` or the timed blocks, whichever is longer. The constants were fitted on
the 2-core development VM (docs/measurement.md); a busy machine, retries and ``--compile`` add to it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.cell import CellSpec
from attnbench.config import SweepConfig

__all__ = ["PlannedCell", "Plan", "plan_sweep", "step_seconds", "EFFICIENCY", "FIRST_ROUND_S", "ROUND_S"]

EFFICIENCY = 0.25  # share of the matmul peak an attention step reaches (measured cells: mostly 0.1-0.5)
FIRST_ROUND_S = 2.0  # fresh process: build, warm-up, memory pass, FLOP count, diagnostics
FIRST_ROUND_STEPS = 4  # warm-up, memory pass, FLOP-count forward, diagnostics forward
ROUND_S = 0.5  # a later round: a forked worker and its warm-up


@dataclass
class PlannedCell:
    spec: CellSpec
    status: str  # "run", "skipped" (the reason says why) or "done" (a row exists; --resume keeps it)
    reason: str | None = None
    seconds: float = 0.0


@dataclass
class Plan:
    cells: list[PlannedCell]
    repeats: int
    gflops: float | None  # the calibrated matmul rate the estimate used
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.cells)

    def count(self, status: str) -> int:
        return sum(1 for c in self.cells if c.status == status)


def _macs(spec: CellSpec) -> int | None:
    from attnbench.registry import get_attention
    from attnbench.skeletons import family_of

    family, entry = family_of(spec.skeleton), get_attention(spec.model)
    total = 0
    grids = {h * w: (h, w) for h, w in family.attention_grids(spec.seq_len)}
    for n, dim, heads in family.attention_layers(spec.skeleton, spec.seq_len):
        try:
            m = entry.count_macs(spec.batch, n, dim, heads, hw=grids.get(n), **spec.hparams_dict)
        except (TypeError, ValueError):
            m = None
        if m is None:
            return None
        total += m + family.block_macs(spec.batch, n, dim)
    return total or None


def step_seconds(spec: CellSpec, gflops: float | None) -> float | None:
    """The modelled time of one step of ``spec`` at ``gflops`` (None without a MAC formula or a rate)."""
    from attnbench.measure.calibrate import flops_per_step

    macs = _macs(spec)
    if macs is None or not gflops:
        return None
    return flops_per_step(macs, spec.mode) / (EFFICIENCY * gflops * 1e9)


def _cell_seconds(step: float, config: SweepConfig) -> float:
    from attnbench.stats import MIN_TIMED_BLOCKS

    r = config.repeats
    timing = max(config.min_time, r * math.ceil(MIN_TIMED_BLOCKS / r) * step)
    return FIRST_ROUND_S + FIRST_ROUND_STEPS * step + (r - 1) * (ROUND_S + step) + timing


def plan_sweep(config: SweepConfig, run_dir: str | Path | None = None, *, resume: bool = False,
               retry_failed: bool = False, calibration: dict[str, Any] | None = None) -> Plan:
    """The sweep ``run_sweep(config, run_dir, resume=..., retry_failed=...)`` would run, without running it.

    ``config`` must be valid (``config.validate``). ``calibration`` defaults to a fresh
    ``measure.calibrate_cached`` on the config's device (about a second), at the threads the sweep would use now.
    """
    from attnbench.config import resolve_device
    from attnbench.sweep import group_calibration, group_threads, kept_rows, plan_groups, planned_skips

    device = resolve_device(config.device)
    groups = plan_groups(config, device)
    cells = [c for g in groups for c in g]
    skips = planned_skips(config, cells)  # the sweep's own decision, so that both count the same skips
    done = kept_rows(config, run_dir, retry_failed) if resume and run_dir is not None and \
        (Path(run_dir) / "results.csv").exists() else {}
    if calibration is None:  # at the threads the sweep would time with now: the idle cores, unless --threads
        calibration = group_calibration(config, device, group_threads(config))
    gflops = calibration.get("matmul_gflops", {}).get("fp32" if config.dtype == "fp32" else "bf16")
    notes = [] if gflops else [f"no time estimate: {calibration.get('reason', 'the machine was not calibrated')}"]
    steps = {c.key(): step_seconds(c, gflops) for c in cells}
    known = [s for s in steps.values() if s is not None]
    if gflops and len(known) < len(steps):
        notes.append("cells without a MAC formula are estimated like the slowest cell that has one")
    if config.compile:
        notes.append("torch.compile's compile time (seconds to minutes per cell) is not in the estimate")
    planned = []
    for group in groups:
        whole = not all(c.key() in done for c in group)  # a group with a cell to run is measured again whole
        for c in group:
            if c.key() in done and not whole:  # a group left alone writes no row, skipped or not
                planned.append(PlannedCell(c, "done", f"has a row ({done[c.key()]['status']}); --resume keeps it"))
            elif c.key() in skips:
                planned.append(PlannedCell(c, "skipped", skips[c.key()]))
            else:
                step = steps[c.key()] if steps[c.key()] is not None else max(known, default=None)
                planned.append(PlannedCell(c, "run", "re-measured with its group" if c.key() in done else None,
                                           _cell_seconds(step, config) if step is not None else 0.0))
    return Plan(planned, config.repeats, gflops, notes)
