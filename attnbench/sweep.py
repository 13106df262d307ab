"""A sweep: the Cartesian product model × seq_len × mode, each cell measured in fresh processes over paired rounds,
rows appended as groups finish.

>>> from attnbench.sweep import SweepConfig, run_sweep
>>> df = run_sweep(SweepConfig(models=["soft", "softmax"], seq_lens=[1024, 4096]), "results/my-run")

* **Groups and rounds.** The cells of one (N, mode) form a *group*: every model at that N. A group is timed in
  ``config.repeats`` rounds; in each round its cells run back to back, in an order that rotates between rounds
  (``stats.rotation``), so that whatever the machine does falls on all of them alike and a ratio taken within a
  round is paired. Round 1 runs every probe in a fresh process (memory and FLOPs are measured there, once);
  later rounds fork a fresh process that only warms up and times. ``config.min_time`` and the 7 timed blocks
  (``stats.MIN_TIMED_BLOCKS``) are the cell's, split over its rounds, so R rounds cost about what one round did.
  The thread count is chosen once per group (``config.threads``, else the idle cores sampled before its first
  round), so that all its cells and rounds run the same. After the rounds, each cell is judged
  (``stats.summarize``: rounds disturbed by other processes do not count; trust rules ``stats.TRUST_RULES``);
  untrusted cells, with the baseline for their pairs (all cells when the baseline itself is untrusted), get extra
  rounds, up to ``config.max_retries``; cells untrusted for load are not re-measured while the machine is still
  busy (fewer idle cores than the group's threads: the retry would be disturbed too). A cell still untrusted is
  written with ``trusted`` 0 and the reason.
* **Rounds where they are needed** (``repeats="auto"``, the default). After the first 3 rounds
  (``config.AUTO_FIRST_ROUNDS``), the group keeps adding rounds, interleaved and paired the same way, for the cells
  whose paired speed-up interval against the baseline (``stats.speedup_interval``) has a half-width above
  ``config.target_ci`` percent, and for the untrusted ones, each with the baseline, until none is left or the cap:
  ``config.round_cap`` rounds (``max_rounds``, default 9) or a round that would end past
  ``config.AUTO_GROUP_BUDGET_S`` seconds of the group's rounds. An interval still wide at the cap is said in the
  cell's ``reason``; a cell still untrusted stays untrusted.
* **Order and shards.** Groups run N by N, both modes of an N together (alternating which mode goes first, so
  that shards mix them). Shard ``(i, n)`` (0-based) takes every n-th group starting at i: disjoint, and the union
  of the n shards is the whole sweep; a group is never split, so every pair is measured in one shard. Give each
  shard its own run directory; ``attnbench report`` joins them.
* **Files.** ``meta.json`` (``results.environment()``, the config and the machine's state, ``machine``) is
  written before the first cell and completed at the end; a group's rows are appended to ``results.csv``
  (flushed and fsynced) when its last round ends; ``results.parquet`` is rewritten from the CSV at the end. The
  CSV is authoritative.
* **Resume.** ``resume=True`` skips every group whose cells all have a row (``results.KEY_COLUMNS``), whatever
  their status; a group with a cell to (re-)run is measured again whole, so that its pairs stay in one set of
  rounds (new rows; reports keep the latest). The config must keep the cells and settings meta.json records for
  the run (``config.check_resume``); ``extend=True`` lets it add models, N and modes. A corrupt results file or
  another run's config raises ValueError before anything runs.
* **Skips.** A cell the attention or the device cannot run, or whose memory estimate exceeds the machine's, is a
  ``skipped`` row decided before any cell runs (:func:`planned_skips`, which the dry run asks too).
* **Ctrl-C.** KeyboardInterrupt kills the running cell's process, rewrites ``results.parquet`` from the finished
  rows and is re-raised (so the CLI can exit 130). Every finished group's rows are already on disk; the rounds of
  the group that was running are lost.
* **Bad input** raises a one-line ValueError before any cell runs: ``attnbench.config.validate``, where
  :class:`SweepConfig` is defined (re-exported here), names the offending field (``ConfigError.field``).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from attnbench.cell import CellSpec, key_of
from attnbench.config import (AUTO, AUTO_GROUP_BUDGET_S, ConfigError, SweepConfig, check_resume, config_from_dict,
                               first_rounds, ref, resolve_device, round_cap, validate)
from attnbench.runner import CellRunner
from attnbench.stats import BASELINES

__all__ = ["SweepConfig", "run_sweep", "plan_cells", "plan_groups", "validate", "resolve_device", "prepare_dir",
           "BASELINES", "OnCell", "OnStart", "kept_rows", "group_threads", "group_calibration", "planned_skips",
           "stored_config"]

OnCell = Callable[[CellSpec, dict[str, Any], int, int], None]
# on_start(spec, round (0-based), cell-rounds done, cell-rounds planned): a cell's round is starting (for an ETA)
OnStart = Callable[[CellSpec, int, int, int], None]


def plan_groups(config: SweepConfig, device: str | None = None) -> list[list[CellSpec]]:
    """The sweep's groups (every model at one (N, mode), in the config's model order) in their stable order, then
    this shard's share of them.

    Groups go N by N; at every other N the modes go in reverse order, so that a shard (every n-th group) gets a
    mix of N and modes. ``hparams`` in each spec are what the skeleton's family records
    (``SkeletonFamily.cell_hparams``): the registry defaults merged under the config's overrides (``seq_len``
    excluded), so a changed default is a new cell, not a resumed one; in the SOFT pyramid, whose stages set their
    own settings, the overrides alone.
    """
    from attnbench.registry import get_attention
    from attnbench.skeletons import family_of

    device = device or resolve_device(config.device)
    shard = f"{config.shard[0]}/{config.shard[1]}" if config.shard else None
    family = family_of(config.skeleton)
    entries = {m: get_attention(m) for m in config.models}
    groups: list[list[CellSpec]] = []
    for i, n in enumerate(config.seq_lens):
        hps = {m: family.cell_hparams(entries[m], config.hparams.get(m, {}), n) for m in config.models}
        for mode in config.modes if i % 2 == 0 else config.modes[::-1]:
            groups.append([CellSpec(model=m, skeleton=config.skeleton, seq_len=n, batch=config.batch,
                                    dtype=config.dtype, device=device, mode=mode, hparams=hps[m],
                                    compile=config.compile or "", min_time=config.min_time,
                                    threads=config.threads, shard=shard)
                           for m in config.models])
    if config.shard is not None:
        i, k = config.shard
        groups = groups[i::k]
    return groups


def plan_cells(config: SweepConfig, device: str | None = None) -> list[CellSpec]:
    """Every cell of the sweep (this shard's share) in the order the groups of :func:`plan_groups` run."""
    return [cell for group in plan_groups(config, device) for cell in group]


def prepare_dir(run_dir: Path, names: tuple[str, ...] = ()) -> None:
    """Create ``run_dir`` and prove it writable, with each of ``names`` there that exists (``results.check_writable``),
    or raise a one-line ConfigError (a ValueError)."""
    from attnbench.results import check_writable

    check_writable(run_dir, names)  # before mkdir: a refused run leaves no folder behind
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".attnbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError("run_dir", f"cannot write to {ref('run_dir')} {run_dir}: {e.strerror or e}") from None


def stored_config(run_dir: str | os.PathLike) -> SweepConfig | None:
    """The config of the run's latest session, from its ``meta.json`` (the first, or its last ``resumed`` entry);
    None for a folder no sweep has written (no meta.json, a joined report, a training run)."""
    from attnbench.results import read_meta

    meta = read_meta(run_dir)
    return config_from_dict((meta.get("resumed") or [meta])[-1].get("config"))


def planned_skips(config: SweepConfig, cells: list[CellSpec]) -> dict[tuple, str]:
    """``{cell key: reason}`` of the cells that are ``skipped`` rows without running: those the attention or the
    device cannot run (the cell's own check, ``cell._check_device``, asked here) and, unless ``config.force``, those
    whose memory estimate exceeds the machine's (``memory_plan``). The sweep and its dry run both ask this."""
    from attnbench.cell import SkipCell, _check_device
    from attnbench.memory_plan import memory_skips
    from attnbench.registry import get_attention

    out: dict[tuple, str] = {}
    for c in cells:
        try:
            _check_device(c, get_attention(c.model))
        except SkipCell as e:
            out[c.key()] = str(e)
    memory = {} if config.force else memory_skips([c for c in cells if c.key() not in out], config.mem_limit)
    return {**out, **memory}


def _write_meta(run_dir: Path, config: SweepConfig, device: str, resume: bool, calibration: dict[str, Any]) -> None:
    from attnbench.machine import machine_state
    from attnbench.results import environment, read_meta, write_meta

    env = environment(device)
    cfg = {**asdict(config), "device_resolved": device}
    meta = read_meta(run_dir) if resume else {}
    state = {"start": machine_state()}
    if meta:
        meta.setdefault("resumed", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": env,
                                               "config": cfg, "machine": state, "calibration": calibration})
    else:
        meta = {"environment": env, "config": cfg, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": state, "calibration": calibration}
    write_meta(run_dir, meta)


def _finish_meta(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Complete this sweep's ``machine`` entry of meta.json: the machine at the end, and what its cells saw
    (mean share of the cores other processes took while cells were timed, untrusted cells, the busy warning)."""
    from attnbench.machine import cpu_ids, governor, load_avg_1m
    from attnbench.results import read_meta, write_meta
    from attnbench.stats import machine_warning

    meta = read_meta(run_dir)
    entry = meta["resumed"][-1] if meta.get("resumed") else meta
    ok = [r for r in rows if r.get("status") == "ok"]
    shares = [r["load_other_share"] for r in ok if isinstance(r.get("load_other_share"), (int, float))]
    cores = len(cpu_ids())
    entry.setdefault("machine", {}).update(
        cores=cores, governor=governor(), load_avg_1m_end=load_avg_1m(), cells_timed=len(ok),
        other_share_mean=round(statistics.fmean(shares), 4) if shares else None,
        cells_untrusted=sum(1 for r in ok if r.get("trusted") == 0),
        rounds_excluded=sum(len(r.get("rounds_excluded") or []) for r in ok),
        warning=machine_warning(ok, cores))
    write_meta(run_dir, meta)


def _with_peak(cell: CellSpec, calibration: dict[str, Any]) -> CellSpec:
    """``cell`` with the run's calibrated matmul GFLOP/s for its dtype (``measure.calibrate``): its share of peak."""
    from attnbench.measure.calibrate import peak_of

    return replace(cell, peak_gflops=peak_of(calibration, cell.dtype))


RETRYABLE = ("error", "timeout", "oom", "nan")


def kept_rows(config: SweepConfig, run_dir: str | os.PathLike, retry_failed: bool = False) -> dict[tuple, dict]:
    """``{cell key: latest row}`` of the cells a resume of ``run_dir`` keeps (does not run again): all of them, less
    the failed ones with ``retry_failed`` and the memory skips with ``config.force``."""
    from attnbench.memory_plan import SKIP_PREFIX
    from attnbench.results import load_results

    latest = {key_of(r): r for r in load_results(run_dir).to_dict("records")}
    return {k: r for k, r in latest.items() if not (retry_failed and r["status"] in RETRYABLE)
            and not (config.force and str(r["reason"]).startswith(SKIP_PREFIX))}


def run_sweep(config: SweepConfig, run_dir: str | os.PathLike, *, resume: bool = False, retry_failed: bool = False,
              on_cell: OnCell | None = None, runner: CellRunner | None = None,
              on_start: OnStart | None = None, extend: bool = False) -> pd.DataFrame:
    """Run the sweep into ``run_dir`` and return all of its rows (earlier ones included when resuming).

    Args:
        config: what to sweep.
        run_dir: the run directory (created if missing).
        resume: skip cells whose key already has a row in ``run_dir/results.csv``. Without it, an existing
            ``results.csv`` is appended to as well: keys are not deduplicated (pass ``resume=True``).
        retry_failed: with ``resume``, run again the cells whose latest row is ``error``, ``timeout``, ``oom`` or
            ``nan`` (e.g. after raising ``timeout``); the new row is appended and reports keep the latest one.
        on_cell: ``on_cell(spec, row, done, total)`` for every cell when its group's rounds are over (a progress
            bar); ``done`` counts this run's cells, skipped ones included.
        runner: a :class:`CellRunner` to reuse (its warm fork server saves the start-up in a notebook or across
            sweeps); default: a new one with ``config.isolation``, closed at the end.
        on_start: ``on_start(spec, round, done, planned)`` before each round of each cell (0-based ``round``;
            ``done``/``planned`` count cell-rounds, retries added as they are planned): the running cell and an ETA.
        extend: with ``resume``, ``config`` may add models, N and modes to the run's (``config.check_resume``);
            without it, a resume must keep the run's cells and their settings as its ``meta.json`` records them.

    Returns:
        ``results.load_results(run_dir)``.

    Raises:
        ValueError: bad input (one line), a resume that changes the run's cells, a corrupt results file, an output
            that cannot be written, or ``run_dir`` in use by another process (its lock), before any cell runs.
        KeyboardInterrupt: re-raised after the running cell is killed and ``results.parquet`` is rewritten
            (SIGTERM raises ``runner.Terminated``, a KeyboardInterrupt, the same way).
    """
    from attnbench.measure.calibrate import calibrate_cached
    from attnbench.results import RUN_FILES, RunLock, load_results, write_parquet
    from attnbench.runner import sigterm_as_interrupt

    device = validate(config)
    run_dir = Path(run_dir)
    stored = stored_config(run_dir) if resume else None
    if stored is not None:
        check_resume(replace(config, device=device), stored, extend=extend)
    prepare_dir(run_dir, RUN_FILES)
    with RunLock(run_dir), sigterm_as_interrupt():  # one writer per run dir; SIGTERM cleans up like Ctrl-C
        done_keys = set(kept_rows(config, run_dir, retry_failed)) if resume else set()
        groups = plan_groups(config, device)
        # cells that cannot run or fit are skipped rows with the reason, decided before any cell runs
        skips = planned_skips(config, [c for g in groups for c in g])
        # the run's, for meta.json, measured before any cell; groups: _run_group (at their own thread count)
        calibration = calibrate_cached(device, config.threads, config.dtype)
        _write_meta(run_dir, config, device, resume, calibration)
        rows: list[dict[str, Any]] = []
        try:
            _run_groups(config, groups, done_keys, run_dir, runner, skips, _Events(on_cell, on_start), rows)
        except KeyboardInterrupt:
            if (run_dir / "results.csv").exists():
                write_parquet(run_dir)
            raise
        finally:
            if rows:
                _finish_meta(run_dir, rows)
        df = load_results(run_dir)
        write_parquet(run_dir, df)
    return df


@dataclass
class _Events:
    """The progress callbacks and the counts they report."""

    on_cell: OnCell | None
    on_start: OnStart | None
    done: int = 0
    total: int = 0
    units_done: int = 0
    units: int = 0

    def start(self, spec: CellSpec, round_index: int) -> None:
        if self.on_start is not None:
            self.on_start(spec, round_index, self.units_done, self.units)
        self.units_done += 1

    def cell(self, spec: CellSpec, row: dict[str, Any]) -> None:
        self.done += 1
        if self.on_cell is not None:
            self.on_cell(spec, row, self.done, self.total)


def _run_groups(config: SweepConfig, groups: list[list[CellSpec]], done_keys: set, run_dir: Path,
                runner: CellRunner | None, skips: dict[tuple, str], events: _Events,
                rows: list[dict[str, Any]]) -> None:
    """Run every group with a cell left to run; a group's rows are appended when its rounds are over."""
    from attnbench.results import append_row

    events.total = sum(len(g) for g in groups)
    todo = [g for g in groups if not all(c.key() in done_keys for c in g)]
    events.done = events.total - sum(len(g) for g in todo)
    events.units = sum(len([c for c in g if c.key() not in skips]) for g in todo) * first_rounds(config)
    run_id = uuid.uuid4().hex[:8]
    with contextlib.nullcontext(runner) if runner is not None else CellRunner(config.isolation) as cells_runner:
        for gi, group in enumerate(todo):
            for spec, row in _run_group(config, group, cells_runner, skips, events, f"{run_id}-{gi}"):
                row = _as_row(row)
                append_row(run_dir, row)
                rows.append(row)
                events.cell(spec, row)


def group_threads(config: SweepConfig) -> int | None:
    """``config.threads``, else the cores idle now (at least 1), else None (torch's default) where unknown."""
    from attnbench.machine import idle_cores

    if config.threads:
        return config.threads
    idle = idle_cores()
    return None if idle is None else max(1, idle)


def group_calibration(config: SweepConfig, device: str, threads: int | None) -> dict[str, Any]:
    """The calibration a group's share of peak is taken against: on a CPU the peak of the ``threads`` it runs with
    (the idle cores, unless --threads), on an accelerator the run's. Cached: measured once per device and threads."""
    from attnbench.measure.calibrate import calibrate_cached

    return calibrate_cached(device, config.threads if device.startswith("cuda") else threads, config.dtype)


def _still_busy(threads: int | None, cores: int) -> bool:
    """Fewer cores idle now than the group's threads need (unknown counts as not busy)."""
    from attnbench.machine import idle_cores

    idle = idle_cores()
    return idle is not None and idle < (threads or cores)


def _cores_needed(spec: CellSpec, row: dict[str, Any]) -> int:
    """The cores a cell's timing needs to itself: its intra-op threads on a CPU, the one launching thread on a GPU."""
    return 1 if spec.device.startswith("cuda") else int(row["num_threads"])


def _baseline(group: list[CellSpec]) -> str | None:
    models = [c.model for c in group]
    return next((b for b in BASELINES if b in models), None)


def _run_group(config: SweepConfig, group: list[CellSpec], runner: CellRunner, skips: dict[tuple, str],
               events: _Events, pair_group: str) -> list[tuple[CellSpec, dict[str, Any]]]:
    """Time one group in rotating rounds, add rounds where they are needed (``_next_round``), and return (spec,
    row) per cell."""
    from attnbench.machine import cpu_ids
    from attnbench.stats import MIN_TIMED_BLOCKS, RoundResult, rotation, summarize

    cores, threads = len(cpu_ids()), group_threads(config)
    calibration = group_calibration(config, group[0].device, threads)
    group = [_with_peak(c, calibration) for c in group]
    first_n = first_rounds(config)
    # --min-time and the 7 blocks are a cell's, split over its first rounds: R rounds cost about what one did
    per_round = dict(min_time=config.min_time / first_n, target_blocks=-(-MIN_TIMED_BLOCKS // first_n))
    first: dict[str, dict[str, Any]] = {}
    rounds: dict[str, list[RoundResult | None]] = {c.model: [] for c in group}
    failures: dict[str, list[str]] = {c.model: [] for c in group}
    load_avg: dict[str, list[float]] = {c.model: [] for c in group}
    min_blocks: dict[str, int] = {}
    for c in group:
        if c.key() in skips:
            first[c.model] = {**c.base_row(), "status": "skipped", "reason": skips[c.key()]}
    todo = [c for c in group if c.model not in first]
    summaries: dict[str, Any] = {}
    r, started = 0, time.monotonic()
    while todo:
        for spec in rotation(todo, r):
            events.start(spec, r)
            row = runner.run(replace(spec, threads=threads, timing_only=r > 0, min_blocks=min_blocks.get(spec.model),
                                     **per_round), timeout=config.timeout, mem_limit_bytes=config.mem_limit)
            first.setdefault(spec.model, row)
            rounds[spec.model] += [None] * (r + 1 - len(rounds[spec.model]))
            if row.get("status") == "ok":
                rounds[spec.model][r] = RoundResult(
                    ms=row["latency_ms_median"], iqr_ms=row["latency_ms_iqr"], blocks=int(row["timed_blocks"]),
                    threads=_cores_needed(spec, row), other_share=row.get("load_other_share"), cores=cores)
                if isinstance(row.get("load_avg_1m"), (int, float)):
                    load_avg[spec.model].append(row["load_avg_1m"])
            elif r > 0:
                failures[spec.model].append(f"round {r + 1}: {row.get('status')}: {row.get('reason') or ''}".strip())
        r += 1
        timed = [c for c in group if first[c.model].get("status") == "ok"]
        if r == 1:  # a cell that failed its first round has no more rounds
            events.units -= (len(todo) - len(timed)) * (first_n - 1)
        if r < first_n:
            todo = timed
            continue
        summaries = {c.model: summarize(rounds[c.model], required=first_n, failures=failures[c.model]) for c in timed}
        todo = _next_round(config, timed, summaries, _SoFar(r, time.monotonic() - started, threads, cores))
        min_blocks.update({c.model: MIN_TIMED_BLOCKS for c in todo if summaries[c.model].rule == "blocks"})
        events.units += len(todo)
    return [(c, _group_row(first[c.model], summaries.get(c.model), load_avg[c.model], pair_group)) for c in group]


@dataclass(frozen=True)
class _SoFar:
    """Where a group's rounds stand: rounds done, seconds they took, the threads its cells run, the cores counted."""

    rounds: int
    seconds: float
    threads: int | None
    cores: int

    def affords_another(self) -> bool:
        """One more round, as long as the average so far, ends inside the group's time budget."""
        return self.seconds * (self.rounds + 1) / self.rounds <= AUTO_GROUP_BUDGET_S


def _next_round(config: SweepConfig, timed: list[CellSpec], summaries: dict[str, Any],
                so_far: _SoFar) -> list[CellSpec]:
    """The cells of the group's next round, [] to stop: the untrusted cells (not for load while the machine is
    still busy) and, with ``--repeats auto``, those whose speed-up interval is wider than ``--target-ci``, each with
    the baseline (every cell when the baseline itself is untrusted); none at the cap (``round_cap``) or, with
    ``auto``, past the group's time budget, where an interval still wide is said in the cell's notes."""
    base = _baseline(timed)
    wide = _wide(config, timed, summaries, base) if config.repeats == AUTO else {}
    if so_far.rounds >= round_cap(config) or (config.repeats == AUTO and not so_far.affords_another()):
        for model, half in wide.items():
            width = f"±{half:.0%}" if math.isfinite(half) else "on too few paired rounds"
            summaries[model].notes.append(f"speed-up interval {width} after {so_far.rounds} rounds, wider than "
                                          f"--target-ci {config.target_ci:g} %")
        return []
    bad = [c for c in timed if not summaries[c.model].trusted]
    load = {c.model for c in bad if summaries[c.model].rule == "load"}
    if load and _still_busy(so_far.threads, so_far.cores):
        for model in load:  # a retry now would be disturbed as well: say so rather than spend the time
            summaries[model].reason += "; not re-measured: the machine was still busy"
        bad = [c for c in bad if c.model not in load]
    else:
        load = set()
    need = bad + [c for c in timed if c.model in wide and c not in bad and c.model not in load]
    if not need:
        return []
    # a retry pairs with the baseline; an untrusted baseline is every pair's problem: all cells again
    return timed if base in {c.model for c in bad} else need + [c for c in timed if c.model == base and c not in need]


def _wide(config: SweepConfig, timed: list[CellSpec], summaries: dict[str, Any], base: str | None) -> dict[str, float]:
    """``{model: half-width}`` of the cells whose speed-up interval against ``base`` is wider than ``target_ci``
    (or rests on fewer pairs than the first rounds)."""
    from attnbench.stats import interval_halfwidth, speedup_interval, used_rounds

    if base is None or base not in summaries:
        return {}
    counted = {m: used_rounds(s.rounds_ms, s.excluded) for m, s in summaries.items()}
    out = {}
    for c in timed:
        if c.model == base:
            continue
        iv = speedup_interval(counted[base], counted[c.model])
        half = interval_halfwidth(iv) if iv is not None and iv.n >= first_rounds(config) else math.inf
        if half > config.target_ci / 100:
            out[c.model] = half
    return out


def _group_row(row: dict[str, Any], s: Any, load_avg: list[float], pair_group: str) -> dict[str, Any]:
    """The first round's row (memory, FLOPs, ...) with the latency columns replaced by the rounds' summary."""
    row = {**row, "pair_group": pair_group}
    if s is None or row.get("status") != "ok":
        return row
    notes = [n for n in [row.get("reason"), *s.notes] if n]
    row.update(latency_ms_median=s.median_ms, latency_ms_iqr=s.iqr_ms,
               throughput_per_s=row["batch"] * 1e3 / s.median_ms,
               timed_blocks=s.timed_blocks, load_other_share=s.other_share,
               load_avg_1m=max(load_avg) if load_avg else None, latency_ms_rounds=s.rounds_ms,
               latency_rounds_min=s.min_ms, latency_rounds_max=s.max_ms, rounds=s.rounds,
               load_other_rounds=s.other_rounds, rounds_excluded=s.excluded, trusted=int(s.trusted),
               untrusted_reason=s.reason, reason="; ".join(notes) or None)
    return row


def _as_row(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the schema's columns (``results.ALL_COLUMNS``); lists become JSON."""
    from attnbench.results import ALL_COLUMNS

    out = {k: v for k, v in row.items() if k in ALL_COLUMNS}
    if isinstance(out.get("flops_uncounted_ops"), (list, tuple)):
        out["flops_uncounted_ops"] = json.dumps(list(out["flops_uncounted_ops"]))
    return out
