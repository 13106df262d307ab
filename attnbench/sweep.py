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
* **Bad input** raises a one-line ValueError before any cell runs.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from attnbench.cell import CellSpec, key_of
from attnbench.runner import CellRunner

__all__ = ["SweepConfig", "run_sweep", "plan_cells", "validate", "resolve_device", "prepare_dir"]

OnCell = Callable[[CellSpec, dict[str, Any], int, int], None]


@dataclass
class SweepConfig:
    """What to sweep.

    Attributes:
        models: registered attention names (or ``module:Class``), in report order.
        seq_lens: token counts N, in order.
        skeleton: ``layer``, ``vit-tiny``, ... (``attnbench.skeletons.skeleton_names()``).
        batch: samples per step, the same for every cell (never changed on failure).
        dtype: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        modes: ``infer`` and/or ``train``.
        device: ``auto`` (cuda if available, else cpu), ``cpu``, ``cuda`` or ``cuda:i``.
        hparams: per-model overrides of the registry defaults, ``{"soft": {"landmarks": 64}}``.
        timeout: seconds per cell before it is killed (status ``timeout``); None for no limit.
        min_time: seconds of timing per cell (at least 7 ``Timer.timeit`` blocks, see ``measure.latency``).
        threads: intra-op CPU threads per cell; None: torch's default (one per core).
        mem_limit: bytes of address space a cell may add after start-up (status ``oom`` beyond); None: no cap.
        shard: ``(i, n)``, 0 <= i < n: run every n-th cell starting at i; None: all cells.
        isolation: ``fork`` (cells forked from a pre-imported server: ~0.1 s start) or ``spawn`` (a new
            interpreter per cell: ~6-10 s start). Both give every cell a fresh process.
    """

    models: list[str]
    seq_lens: list[int]
    skeleton: str = "layer"
    batch: int = 1
    dtype: str = "fp32"
    modes: list[str] = field(default_factory=lambda: ["infer"])
    device: str = "auto"
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout: float | None = 120.0
    min_time: float = 0.5
    threads: int | None = None
    mem_limit: int | None = None
    shard: tuple[int, int] | None = None
    isolation: str = "fork"


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda[:i]`` without CUDA (or past the device count) and
    anything else -> ValueError."""
    import re

    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ValueError(f"bad device {device!r}; accepted: auto, cpu, cuda, cuda:<index>")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available (no CUDA device is visible to torch); "
                         "use --device cpu or auto")
    idx = int(device.partition(":")[2] or 0)
    if idx >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device


def validate(config: SweepConfig) -> str:
    """Check everything that can be checked before a cell runs; returns the resolved device."""
    import inspect

    from attnbench.measure.step import DTYPES, MODES
    from attnbench.registry import get_attention
    from attnbench.skeletons import check_skeleton, grid_for

    if not config.models:
        raise ValueError("no models given; pass registered attention names (see `attnbench list`)")
    entries = {m: get_attention(m) for m in config.models}  # unknown -> ValueError listing the registered ones
    if len(set(config.models)) != len(config.models):
        raise ValueError(f"duplicate models in {config.models}")
    check_skeleton(config.skeleton)
    if not config.seq_lens:
        raise ValueError("no sequence lengths given")
    for n in config.seq_lens:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"bad sequence length {n!r}; expected a positive int")
        if config.skeleton.startswith("vit-"):
            grid_for(n)
        elif config.skeleton.startswith("soft-"):
            grid_for(n, multiple=8)
    if len(set(config.seq_lens)) != len(config.seq_lens):
        raise ValueError(f"duplicate sequence lengths in {config.seq_lens}")
    if isinstance(config.batch, bool) or not isinstance(config.batch, int) or config.batch < 1:
        raise ValueError(f"bad batch {config.batch!r}; expected an int >= 1")
    if config.dtype not in DTYPES:
        raise ValueError(f"bad dtype {config.dtype!r}; accepted: {', '.join(DTYPES)}")
    if not config.modes or any(m not in MODES for m in config.modes):
        raise ValueError(f"bad modes {config.modes!r}; accepted: {', '.join(MODES)}")
    if config.timeout is not None and config.timeout <= 0:
        raise ValueError(f"bad timeout {config.timeout!r}; expected seconds > 0 or None")
    if config.min_time <= 0:
        raise ValueError(f"bad min_time {config.min_time!r}; expected seconds > 0")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"bad threads {config.threads!r}; expected a count >= 1 (or None for one per core)")
    if config.mem_limit is not None and config.mem_limit <= 0:
        raise ValueError(f"bad mem_limit {config.mem_limit!r}; expected bytes > 0 or None")
    if config.isolation not in ("fork", "spawn"):
        raise ValueError(f"bad isolation {config.isolation!r}; accepted: fork, spawn")
    if config.shard is not None:
        i, n = config.shard
        if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
            raise ValueError(f"bad shard {config.shard!r}; expected (i, n) with 0 <= i < n")
    for model, hp in config.hparams.items():
        if model not in entries:
            raise ValueError(f"hparams given for {model!r}, which is not in models ({', '.join(config.models)})")
        params = inspect.signature(entries[model].cls.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            bad = sorted(set(hp) - set(params))
            if bad:
                raise ValueError(f"{model} has no hyper-parameter {bad[0]!r}; accepted: "
                                 f"{', '.join(p for p in params if p not in ('self', 'dim', 'num_heads'))}")
        if not config.skeleton.startswith("soft-"):  # the pyramid sets per-stage values; it checks at build time
            _check_values(entries[model], hp, max(config.seq_lens))
    return resolve_device(config.device)


def _check_values(entry: Any, hp: dict[str, Any], seq_len: int) -> None:
    """Build the attention once (ViT-Tiny width, the largest N) so that a bad value fails before the sweep,
    not as a row per cell."""
    import torch

    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG as it was (Performer seeds from it)
            entry.build(192, 3, seq_len=seq_len, **hp)
    except (TypeError, ValueError) as e:
        values = ", ".join(f"{k}={v!r}" for k, v in hp.items())
        raise ValueError(f"bad hyper-parameters for {entry.name} ({values}): {str(e).splitlines()[0]}") from None


def plan_cells(config: SweepConfig, device: str | None = None) -> list[CellSpec]:
    """Every cell of the sweep in its stable order (model, N, mode), then this shard's share of it.

    ``hparams`` in each spec are the registry defaults merged under the config's overrides (what the module is
    actually built with; ``seq_len`` excluded), so a changed default is a new cell, not a resumed one. In the SOFT
    pyramid (``soft-*``) the stages set their own attention settings, so there they are the overrides alone.
    A shard takes every n-th (model, N) pair, all modes of a pair together, so that shards get a mix of N.
    """
    from attnbench.registry import get_attention

    device = device or resolve_device(config.device)
    shard = f"{config.shard[0]}/{config.shard[1]}" if config.shard else None
    pyramid = config.skeleton.startswith("soft-")
    groups: list[list[CellSpec]] = []
    for model in config.models:
        entry = get_attention(model)
        overrides = config.hparams.get(model, {})
        for n in config.seq_lens:
            hp = dict(overrides) if pyramid else {
                k: v for k, v in entry.hparams(overrides, seq_len=n).items() if k != "seq_len"}
            groups.append([CellSpec(model=model, skeleton=config.skeleton, seq_len=n, batch=config.batch,
                                    dtype=config.dtype, device=device, mode=mode, hparams=hp,
                                    min_time=config.min_time, threads=config.threads, shard=shard)
                           for mode in config.modes])
    if config.shard is not None:
        i, n = config.shard
        groups = groups[i::n]
    return [cell for group in groups for cell in group]


def prepare_dir(run_dir: Path) -> None:
    """Create ``run_dir`` and prove it writable, or raise a one-line ValueError."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".attnbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write to the run directory {run_dir}: {e.strerror or e}") from None


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
        ValueError: bad input (one line) or a corrupt results file, before any cell runs.
        KeyboardInterrupt: re-raised after the running cell is killed and ``results.parquet`` is rewritten.
    """
    from attnbench.results import append_row, load_results, write_parquet

    device = validate(config)
    run_dir = Path(run_dir)
    prepare_dir(run_dir)
    done_keys = set()
    if resume:
        latest = {key_of(r): r["status"] for r in load_results(run_dir).to_dict("records")}
        done_keys = {k for k, status in latest.items() if not (retry_failed and status in RETRYABLE)}
    cells = plan_cells(config, device)
    total = len(cells)
    _write_meta(run_dir, config, device, resume)
    done = 0
    try:
        with contextlib.nullcontext(runner) if runner is not None else CellRunner(config.isolation) as cells_runner:
            for spec in cells:
                if spec.key() in done_keys:
                    done += 1
                    continue
                row = cells_runner.run(spec, timeout=config.timeout, mem_limit_bytes=config.mem_limit)
                row = _as_row(row)
                append_row(run_dir, row)
                done += 1
                if on_cell is not None:
                    on_cell(spec, row, done, total)
    except KeyboardInterrupt:
        if (run_dir / "results.csv").exists():
            write_parquet(run_dir)
        raise
    df = load_results(run_dir)
    write_parquet(run_dir, df)
    return df


def _as_row(row: dict[str, Any]) -> dict[str, Any]:
    """Keep the schema's columns (``results.ALL_COLUMNS``); lists become JSON."""
    from attnbench.results import ALL_COLUMNS

    out = {k: v for k, v in row.items() if k in ALL_COLUMNS}
    if isinstance(out.get("flops_uncounted_ops"), (list, tuple)):
        out["flops_uncounted_ops"] = json.dumps(list(out["flops_uncounted_ops"]))
    return out
