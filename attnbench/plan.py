"""What a sweep will do before it does it (``attnbench run --dry-run``): its cells in run order, which of them are
skipped (the sweep's own ``planned_skips``: what cannot run here, or exceeds the memory estimate) or already done
(``--resume``), and a rough wall-time estimate.

The estimate is a model, not a measurement, and says so. A cell's step takes ``flops_per_step(MACs) /
(EFFICIENCY x calibrated matmul GFLOP/s)``, with the MACs from the attention's closed form over the skeleton's
attention layers (plus the ViT blocks' MLPs); its first round costs ``FIRST_ROUND_S`` of process start-up, model
build, FLOP count and memory pass plus ``FIRST_ROUND_STEPS`` steps, each later round ``ROUND_S`` plus a warm-up
step; the timing itself is ``--min-time`` or the timed blocks, whichever is longer, split over the first rounds.
With ``--repeats auto`` the estimate is a range: every cell stops after the first 3 rounds (its intervals were
narrow at once), or every cell runs to ``--max-rounds`` as far as each group's time budget allows
(``config.AUTO_GROUP_BUDGET_S``). The constants were fitted on the 2-core development VM (docs/measurement.md); a
busy machine, retries of a fixed ``--repeats`` and ``--compile`` add to it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.cell import CellSpec
from attnbench.config import AUTO, AUTO_FIRST_ROUNDS, AUTO_GROUP_BUDGET_S, SweepConfig, first_rounds, round_cap

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
    seconds: float = 0.0  # its first rounds
    seconds_max: float = 0.0  # with the extra rounds --repeats auto may add (the same without auto)


@dataclass
class Plan:
    cells: list[PlannedCell]
    repeats: int | str
    gflops: float | None  # the calibrated matmul rate the estimate used
    notes: list[str] = field(default_factory=list)
    max_rounds: int | None = None  # the cap of --repeats auto (None: a fixed count)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.cells)

    @property
    def seconds_max(self) -> float:
        return sum(c.seconds_max for c in self.cells)

    @property
    def rounds(self) -> str:
        """``3 rounds each`` or ``3 to 9 rounds each``."""
        first = AUTO_FIRST_ROUNDS if self.max_rounds is not None else self.repeats
        return f"{first} rounds each" if self.max_rounds is None else f"{first} to {self.max_rounds} rounds each"

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


def _round_timing(step: float, config: SweepConfig) -> float:
    """Seconds of timing in one round: its share of --min-time, or its share of the 7 blocks if longer."""
    from attnbench.stats import MIN_TIMED_BLOCKS

    r = first_rounds(config)
    return max(config.min_time / r, math.ceil(MIN_TIMED_BLOCKS / r) * step)


def _cell_seconds(step: float, config: SweepConfig) -> float:
    """A cell's first rounds: the first with its process, build and passes, the others a fork and a warm-up."""
    r = first_rounds(config)
    return FIRST_ROUND_S + FIRST_ROUND_STEPS * step + (r - 1) * (ROUND_S + step) + r * _round_timing(step, config)


def _extra_rounds(first: list[float], later: list[float], config: SweepConfig) -> int:
    """The most extra rounds --repeats auto may give a group whose cells' first rounds take ``first`` seconds and
    each later round ``later``: up to the cap, while a round, at the average so far, ends inside the budget."""
    if config.repeats != AUTO:
        return 0
    done, spent, k = first_rounds(config), sum(first), 0
    while done + k < round_cap(config) and spent * (done + k + 1) / (done + k) <= AUTO_GROUP_BUDGET_S:
        spent, k = spent + sum(later), k + 1
    return k


def plan_sweep(config: SweepConfig, run_dir: str | Path | None = None, *, resume: bool = False,
               retry_failed: bool = False, calibration: dict[str, Any] | None = None) -> Plan:
    """The sweep ``run_sweep(config, run_dir, resume=..., retry_failed=...)`` would run, without running it.

    ``config`` must be valid (``config.validate``). ``calibration`` defaults to a fresh
    ``measure.calibrate_cached`` on the config's device (about a second), at the threads the sweep would use now.
    """
    from attnbench.config import resolve_device
    from attnbench.measure.calibrate import peak_of
    from attnbench.sweep import group_calibration, group_threads, kept_rows, plan_groups, planned_skips

    device = resolve_device(config.device)
    groups = plan_groups(config, device)
    cells = [c for g in groups for c in g]
    skips = planned_skips(config, cells)  # the sweep's own decision, so that both count the same skips
    done = kept_rows(config, run_dir, retry_failed) if resume and run_dir is not None and \
        (Path(run_dir) / "results.csv").exists() else {}
    if calibration is None:  # at the threads the sweep would time with now: the idle cores, unless --threads
        calibration = group_calibration(config, device, group_threads(config))
    gflops = peak_of(calibration, config.dtype)
    notes = [] if gflops else [f"no time estimate: {calibration.get('reason', 'the machine was not calibrated')}"]
    steps = {c.key(): step_seconds(c, gflops) for c in cells}
    known = [s for s in steps.values() if s is not None]
    if gflops and len(known) < len(steps):
        notes.append("cells without a MAC formula are estimated like the slowest cell that has one")
    if config.compile:
        notes.append("torch.compile's compile time (seconds to minutes per cell) is not in the estimate")
    planned = []
    for group in groups:
        planned += _plan_group(group, config, done, skips, steps, max(known, default=None))
    return Plan(planned, config.repeats, gflops, notes, round_cap(config) if config.repeats == AUTO else None)


def _plan_group(group: list[CellSpec], config: SweepConfig, done: dict, skips: dict, steps: dict,
                slowest: float | None) -> list[PlannedCell]:
    """The planned cells of one group, with their first rounds' seconds and, under --repeats auto, what the most
    extra rounds its budget allows add."""
    whole = not all(c.key() in done for c in group)  # a group with a cell to run is measured again whole
    out, later = [], []
    for c in group:
        if c.key() in done and not whole:  # a group left alone writes no row, skipped or not
            out.append(PlannedCell(c, "done", f"has a row ({done[c.key()]['status']}); --resume keeps it"))
            continue
        if c.key() in skips:
            out.append(PlannedCell(c, "skipped", skips[c.key()]))
            continue
        out.append(PlannedCell(c, "run", "re-measured with its group" if c.key() in done else None))
        step = steps[c.key()] if steps[c.key()] is not None else slowest
        if step is not None:
            out[-1].seconds = _cell_seconds(step, config)
            later.append((out[-1], ROUND_S + step + _round_timing(step, config)))
    extra = _extra_rounds([p.seconds for p, _ in later], [t for _, t in later], config)
    for p, t in later:
        p.seconds_max = p.seconds + extra * t
    return out
