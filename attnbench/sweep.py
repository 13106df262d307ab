"""A sweep: the Cartesian product model × seq_len × mode, each cell measured in a fresh process, rows appended as
cells finish.

>>> from attnbench.sweep import SweepConfig, run_sweep
>>> df = run_sweep(SweepConfig(models=["soft", "softmax"], seq_lens=[1024, 4096]), "results/my-run")

* **Order and shards.** Cells run model-major in the order given (model, then N, then mode). Shard ``(i, n)``
  (0-based) takes every n-th cell starting at i: disjoint, and the union of the n shards is the whole sweep. Give
  each shard its own run directory; ``attnbench report`` joins them.
* **Files.** ``meta.json`` (``results.environment()`` and the config) is written before the first cell; each row is
  appended to ``results.csv`` (flushed and fsynced) as its cell finishes; ``results.parquet`` is rewritten from the
  CSV at the end. The CSV is authoritative.
* **Resume.** ``resume=True`` skips every cell whose key (``results.KEY_COLUMNS``) already has a row, whatever its
  status; a corrupt results file raises ValueError before anything runs.
* **Ctrl-C.** KeyboardInterrupt kills the running cell's process, rewrites ``results.parquet`` from the finished
  rows and is re-raised (so the CLI can exit 130). Every finished row is already on disk.
* **Bad input** raises a one-line ValueError before any cell runs: ``attnbench.config.validate``, where
  :class:`SweepConfig` is defined (re-exported here), names the offending field (``ConfigError.field``).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from attnbench.cell import CellSpec, key_of
from attnbench.config import ConfigError, SweepConfig, ref, resolve_device, validate
from attnbench.runner import CellRunner

__all__ = ["SweepConfig", "run_sweep", "plan_cells", "validate", "resolve_device", "prepare_dir"]

OnCell = Callable[[CellSpec, dict[str, Any], int, int], None]


def plan_cells(config: SweepConfig, device: str | None = None) -> list[CellSpec]:
    """Every cell of the sweep in its stable order (model, N, mode), then this shard's share of it.

    ``hparams`` in each spec are what the skeleton's family records (``SkeletonFamily.cell_hparams``): the
    registry defaults merged under the config's overrides (``seq_len`` excluded), so a changed default is a new
    cell, not a resumed one; in the SOFT pyramid, whose stages set their own settings, the overrides alone.
    A shard takes every n-th (model, N) pair, all modes of a pair together, so that shards get a mix of N.
    """
    from attnbench.registry import get_attention
    from attnbench.skeletons import family_of

    device = device or resolve_device(config.device)
    shard = f"{config.shard[0]}/{config.shard[1]}" if config.shard else None
    family = family_of(config.skeleton)
    groups: list[list[CellSpec]] = []
    for model in config.models:
        entry = get_attention(model)
        overrides = config.hparams.get(model, {})
        for n in config.seq_lens:
            hp = family.cell_hparams(entry, overrides, n)
            groups.append([CellSpec(model=model, skeleton=config.skeleton, seq_len=n, batch=config.batch,
                                    dtype=config.dtype, device=device, mode=mode, hparams=hp,
                                    min_time=config.min_time, threads=config.threads, shard=shard)
                           for mode in config.modes])
    if config.shard is not None:
        i, n = config.shard
        groups = groups[i::n]
    return [cell for group in groups for cell in group]


def prepare_dir(run_dir: Path) -> None:
    """Create ``run_dir`` and prove it writable, or raise a one-line ConfigError (a ValueError)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".attnbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError("run_dir", f"cannot write to {ref('run_dir')} {run_dir}: {e.strerror or e}") from None


def _write_meta(run_dir: Path, config: SweepConfig, device: str, resume: bool) -> None:
    from attnbench.results import environment, read_meta, write_meta

    env = environment(device)
    cfg = {**asdict(config), "device_resolved": device}
    meta = read_meta(run_dir) if resume else {}
    if meta:
        meta.setdefault("resumed", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": env,
                                               "config": cfg})
    else:
        meta = {"environment": env, "config": cfg, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_meta(run_dir, meta)


RETRYABLE = ("error", "timeout", "oom", "nan")


def run_sweep(config: SweepConfig, run_dir: str | os.PathLike, *, resume: bool = False, retry_failed: bool = False,
              on_cell: OnCell | None = None, runner: CellRunner | None = None) -> pd.DataFrame:
    """Run the sweep into ``run_dir`` and return all of its rows (earlier ones included when resuming).

    Args:
        config: what to sweep.
        run_dir: the run directory (created if missing).
        resume: skip cells whose key already has a row in ``run_dir/results.csv``. Without it, an existing
            ``results.csv`` is appended to as well: keys are not deduplicated (pass ``resume=True``).
        retry_failed: with ``resume``, run again the cells whose latest row is ``error``, ``timeout``, ``oom`` or
            ``nan`` (e.g. after raising ``timeout``); the new row is appended and reports keep the latest one.
        on_cell: ``on_cell(spec, row, done, total)`` after every cell (a progress bar); ``done`` counts this
            run's cells, skipped ones included.
        runner: a :class:`CellRunner` to reuse (its warm fork server saves the start-up in a notebook or across
            sweeps); default: a new one with ``config.isolation``, closed at the end.

    Returns:
        ``results.load_results(run_dir)``.

    Raises:
        ValueError: bad input (one line), a corrupt results file, or ``run_dir`` in use by another process (its
            lock), before any cell runs.
        KeyboardInterrupt: re-raised after the running cell is killed and ``results.parquet`` is rewritten
            (SIGTERM raises ``runner.Terminated``, a KeyboardInterrupt, the same way).
    """
    from attnbench.memory import SKIP_PREFIX, memory_skips
    from attnbench.results import RunLock, load_results, write_parquet
    from attnbench.runner import sigterm_as_interrupt

    device = validate(config)
    run_dir = Path(run_dir)
    prepare_dir(run_dir)
    with RunLock(run_dir), sigterm_as_interrupt():  # one writer per run dir; SIGTERM cleans up like Ctrl-C
        done_keys = set()
        if resume:
            latest = {key_of(r): r for r in load_results(run_dir).to_dict("records")}
            done_keys = {k for k, r in latest.items() if not (retry_failed and r["status"] in RETRYABLE)
                         and not (config.force and str(r["reason"]).startswith(SKIP_PREFIX))}
        cells = plan_cells(config, device)
        # cells that cannot fit are skipped rows with their estimate, decided before any cell runs
        skips = {} if config.force else memory_skips(cells, config.mem_limit)
        _write_meta(run_dir, config, device, resume)
        try:
            _run_cells(config, cells, done_keys, run_dir, on_cell, runner, skips)
        except KeyboardInterrupt:
            if (run_dir / "results.csv").exists():
                write_parquet(run_dir)
            raise
        df = load_results(run_dir)
        write_parquet(run_dir, df)
    return df


def _run_cells(config: SweepConfig, cells: list[CellSpec], done_keys: set, run_dir: Path, on_cell: OnCell | None,
               runner: CellRunner | None, skips: dict[tuple, str] | None = None) -> None:
    from attnbench.results import append_row

    done, total = 0, len(cells)
    with contextlib.nullcontext(runner) if runner is not None else CellRunner(config.isolation) as cells_runner:
        for spec in cells:
            if spec.key() in done_keys:
                done += 1
                continue
            if skips and spec.key() in skips:
                row = _as_row({**spec.base_row(), "status": "skipped", "reason": skips[spec.key()]})
            else:
                row = _as_row(cells_runner.run(spec, timeout=config.timeout, mem_limit_bytes=config.mem_limit))
            append_row(run_dir, row)
            done += 1
            if on_cell is not None:
                on_cell(spec, row, done, total)


def _as_row(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the schema's columns (``results.ALL_COLUMNS``); lists become JSON."""
    from attnbench.results import ALL_COLUMNS

    out = {k: v for k, v in row.items() if k in ALL_COLUMNS}
    if isinstance(out.get("flops_uncounted_ops"), (list, tuple)):
        out["flops_uncounted_ops"] = json.dumps(list(out["flops_uncounted_ops"]))
    return out
