"""One cell of a sweep: (model, skeleton, seq_len, batch, dtype, device, mode, hparams) measured in a process of its
own, ending with a typed status.

This module is the child's side; :mod:`attnbench.runner` is the parent's (``CellRunner``, ``run_cell_subprocess``).
``python -m attnbench.cell`` reads the spec as JSON on stdin and prints the row as JSON on stdout's last line;
``--serve`` runs the fork server. Inside the child, :func:`run_cell` builds the skeleton, counts parameters, runs one
warm-up step (checking the output is finite), measures peak memory (first, while the process is fresh), traces
FLOPs with fvcore and audits the attention's MACs against its closed-form formula, then times the step.

Statuses (``results.STATUSES``):

* ``ok``: every measurement ran (a quantity that cannot be measured here is empty, with the reason).
* ``oom``: ``MemoryError``, an allocator "out of memory", the address-space cap (``mem_limit_bytes``, set with
  ``RLIMIT_AS`` in the child on top of what it uses after start-up) or death by SIGKILL (the kernel's OOM killer).
* ``timeout``: the child ran past ``timeout`` seconds and was killed with its process group.
* ``nan``: the warm-up step's output (infer) or loss (train) is not finite.
* ``skipped``: the cell makes no sense here: CUDA asked for but absent, a dtype torch cannot autocast on the
  device, or the attention says it cannot run, asked before anything is built (the registry entry's ``devices``
  and the class's ``not_supported_reason`` on every token grid the skeleton gives it: xformers without CUDA,
  Linformer with k >= N, ...).
* ``error``: anything else, with a one-line reason; an exception while building the model included (a bug in an
  attention must not look like a skip).

The batch never changes: a cell that does not fit is ``oom``, never retried smaller.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CellSpec", "run_cell", "scope_of", "classify_exception", "key_of", "main"]

_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "bad_alloc",
                "memoryerror", "outofmemoryerror")


def scope_of(skeleton: str) -> str:
    """``layer`` / ``vit`` / ``pyramid``: the scope of the skeleton's family (an unknown name is its own scope)."""
    from attnbench.skeletons import find_family

    family = find_family(skeleton)
    return family.scope if family is not None else skeleton


def _hparams_json(hparams: Any) -> str:
    if isinstance(hparams, str):
        hparams = json.loads(hparams or "{}")
    return json.dumps(dict(hparams or {}), sort_keys=True, default=str)


@dataclass(frozen=True)
class CellSpec:
    """What one cell measures. Frozen and hashable: it is the key for resume and sharding.

    Attributes:
        model: registered attention name (or ``module:Class``).
        skeleton: ``layer``, ``vit-tiny``, ... (``attnbench.skeletons.skeleton_names()``).
        seq_len: tokens N the attention sees.
        batch: samples per step; never changed.
        dtype: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        device: ``cpu``, ``cuda`` or ``cuda:i``.
        mode: ``infer`` or ``train``.
        hparams: the attention's hyper-parameters as sorted JSON (a dict is accepted and normalised).
        compile: ``torch.compile`` mode for the skeleton (``default``, ``max-autotune``, ...); empty: eager.
        min_time: seconds of timing (at least 7 ``Timer.timeit`` blocks); not part of the key.
        threads: intra-op CPU threads for the whole cell (None: torch's default, one per core); recorded in the
            row's ``num_threads``; not part of the key.
        shard: ``"i/n"`` of the sweep that ran it, for the row; not part of the key.
        peak_gflops: the run's calibrated matmul GFLOP/s for this dtype (``measure.calibrate``), for the row's
            share of peak; not part of the key.
        timing_only: a later timing round: only the probes marked ``every_round`` (warm-up, timing) run; not part
            of the key.
        min_blocks: time at least this many blocks (a re-measured slow cell); None: the latency module's rule.
        target_blocks: blocks to reach when the step is fast enough (None: ``latency.MIN_BLOCKS``; a cell timed in
            several rounds needs fewer per round).
    """

    model: str
    skeleton: str
    seq_len: int
    batch: int = 1
    dtype: str = "fp32"
    device: str = "cpu"
    mode: str = "infer"
    hparams: str = "{}"
    compile: str = ""
    min_time: float = field(default=0.5, compare=False)
    threads: int | None = field(default=None, compare=False)
    shard: str | None = field(default=None, compare=False)
    peak_gflops: float | None = field(default=None, compare=False)
    timing_only: bool = field(default=False, compare=False)
    min_blocks: int | None = field(default=None, compare=False)
    target_blocks: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams", _hparams_json(self.hparams))
        object.__setattr__(self, "seq_len", int(self.seq_len))
        object.__setattr__(self, "batch", int(self.batch))

    @property
    def hparams_dict(self) -> dict[str, Any]:
        return json.loads(self.hparams)

    @property
    def scope(self) -> str:
        return scope_of(self.skeleton)

    def key(self) -> tuple:
        """The values of ``results.KEY_COLUMNS``, as strings (the way they round-trip through the CSV)."""
        return key_of(asdict(self))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CellSpec":
        return cls(**json.loads(text))

    def base_row(self) -> dict[str, Any]:
        """The row's identifying columns; measurements are added by :func:`run_cell`."""
        return {"model": self.model, "scope": self.scope, "skeleton": self.skeleton, "seq_len": self.seq_len,
                "batch": self.batch, "dtype": self.dtype, "device": self.device, "mode": self.mode,
                "hparams": self.hparams, "compile": self.compile, "shard": self.shard}


def key_of(row: dict[str, Any]) -> tuple:
    """``results.KEY_COLUMNS`` of a row or spec dict, normalised to strings."""
    from attnbench.results import KEY_COLUMNS

    out = []
    for c in KEY_COLUMNS:
        v = row.get(c)
        if c == "hparams":
            v = _hparams_json(v if isinstance(v, (str, dict)) else None)
        elif c in ("seq_len", "batch"):
            v = int(v)
        elif c == "compile" and (v is None or v != v):  # absent (older runs) or NaN: eager
            v = ""
        out.append(str(v))
    return tuple(out)


class SkipCell(Exception):
    """The cell makes no sense on this machine or with these settings: a ``skipped`` row."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(e).__name__}: {first}"[:300] if first else type(e).__name__


def classify_exception(e: BaseException) -> tuple[str, str]:
    """(status, one-line reason) for an exception raised while measuring."""
    if isinstance(e, SkipCell):
        return "skipped", str(e)
    text = f"{type(e).__name__} {e}".lower()
    if isinstance(e, MemoryError) or any(m in text for m in _OOM_MARKERS):
        return "oom", _one_line(e)
    return "error", _one_line(e)


# ------------------------------------------------------------------------------------------------- in the child


def _check_device(spec: CellSpec, entry: Any) -> None:
    import torch

    from attnbench.config import DTYPES, MODES, ConfigError, check_choice
    from attnbench.measure.step import autocast_unsupported

    try:
        check_choice("dtype", spec.dtype, DTYPES)
        check_choice("mode", spec.mode, MODES)
    except ConfigError as e:
        raise SkipCell(str(e)) from None
    dev = torch.device(spec.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SkipCell(f"device {spec.device} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SkipCell(f"device {spec.device} requested but only {torch.cuda.device_count()} CUDA device(s)")
    _check_supported(spec, entry, dev.type)
    reason = autocast_unsupported(dev, spec.dtype)
    if reason:
        raise SkipCell(reason)


def _check_supported(spec: CellSpec, entry: Any, device: str) -> None:
    """SkipCell with the attention's own reason when it cannot run on some token grid the skeleton gives it."""
    from attnbench.skeletons import family_of

    family = family_of(spec.skeleton)
    try:
        grids = family.attention_grids(spec.seq_len)
    except ValueError as e:
        raise SkipCell(f"{spec.skeleton} cannot tile N={spec.seq_len}: {_one_line(e)}") from None
    for hw in grids:
        reason = entry.not_supported_reason(device=device, dtype=spec.dtype, seq_len=hw[0] * hw[1], hw=hw,
                                            hparams=spec.hparams_dict)
        if reason:
            raise SkipCell(reason)


def _build(spec: CellSpec) -> Any:
    """The cell's model, input and registry entry as a probe context (``setup`` and ``build`` phases)."""
    import torch

    from attnbench.measure.probes import CellContext
    from attnbench.registry import get_attention
    from attnbench.skeletons import build_skeleton

    if spec.threads:
        torch.set_num_threads(spec.threads)  # before anything runs: a shared machine is oversubscribed otherwise
    entry = get_attention(spec.model)
    _check_device(spec, entry)
    dev = torch.device(spec.device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # the Timer synchronises the current device only
    skel = build_skeleton(spec.skeleton, spec.model, spec.seq_len, hparams=spec.hparams_dict)  # raises: an error
    model = skel.model.to(dev)
    return CellContext(spec, entry, skel, model, skel.example_input(spec.batch, device=dev), dev)


def run_cell(spec: CellSpec) -> dict[str, Any]:
    """Measure ``spec`` in this process and return its row (never raises for a failing cell).

    Builds the model once, then runs every probe of :mod:`attnbench.measure.probes` in phase order (with
    ``spec.timing_only``, only those marked ``every_round``). Run it in a fresh process (that is what the runner
    does): the CPU peak-memory probe reads the process's high-water mark.
    """
    from attnbench.measure.probes import probes_in_run_order

    row = spec.base_row()
    row.update(status="ok", reason=None)
    phase = "build"
    ctx = None
    try:
        ctx = _build(spec)
        for p in probes_in_run_order():
            if p.needs_ok and row["status"] != "ok" or spec.timing_only and not p.every_round:
                continue
            phase = p.phase
            ctx.row = row
            row.update(p.run(ctx))
    except Exception as e:  # a failed cell is a row, never a crash
        status, reason = classify_exception(e)
        if status == "error":
            reason = f"{phase}: {reason}"
        row.update(status=status, reason=reason)
    if ctx is not None and ctx.notes and row["status"] == "ok":
        row["reason"] = "; ".join(ctx.notes)
    return row


def _set_memory_cap(extra_bytes: int) -> None:
    """Cap the address space at what the process maps now plus ``extra_bytes`` (RLIMIT_AS)."""
    import resource

    from attnbench.measure.memory import _status_bytes

    limit = _status_bytes("VmSize") + int(extra_bytes)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux ``PR_SET_PDEATHSIG``), so that no
    cell outlives a sweep killed with SIGKILL; elsewhere a no-op. A parent already gone means exit now."""
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child(spec: CellSpec, mem_limit: int | None, imports: list[str]) -> None:
    """The body of a cell's process: prints the row as JSON on the last line of stdout."""
    import importlib
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a cell stops
    die_with_parent()
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*")
    import torch  # noqa: F401  (imported before the cap, so that the cap measures the cell, not torch)

    for mod in imports:
        importlib.import_module(mod)
    if mem_limit:
        _set_memory_cap(mem_limit)
    row = run_cell(spec)
    sys.stdout.write("\n" + json.dumps(row, default=_json_default) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m attnbench.cell [--mem-limit BYTES] [--import MODULE]... < spec.json``: prints the row as JSON."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m attnbench.cell", description=main.__doc__)
    p.add_argument("--mem-limit", type=int, default=None)
    p.add_argument("--import", dest="imports", action="append", default=[])
    p.add_argument("--serve", action="store_true", help="run the cell server of CellRunner(isolation='fork')")
    p.add_argument("--scratch", default=None, help="the server's scratch folder, removed if its parent dies")
    args = p.parse_args(argv)
    if args.serve:
        _serve(args.scratch)
        return 0
    _child(CellSpec.from_json(sys.stdin.read()), args.mem_limit, args.imports)
    return 0


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def _serve(scratch: str | None = None) -> None:
    """The cell server: import everything once, then fork one fresh process per request.

    Protocol (one JSON object per line): request ``{"spec", "mem_limit", "imports", "out", "err"}`` on stdin;
    replies ``{"pid": pid}`` when the cell starts and ``{"pid": pid, "wait_status": ws}`` when it has ended.
    If the parent dies (even by SIGKILL) the server gets SIGTERM: it kills the running cell, removes ``scratch``
    and exits.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from imports must not corrupt the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    running: list[int] = []

    def orphaned(_sig: int, _frame: Any) -> None:
        import shutil

        for pid in running:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        os._exit(143)
    signal.signal(signal.SIGTERM, orphaned)
    die_with_parent(signal.SIGTERM)
    import attnbench.measure._preload  # noqa: F401

    # The preloaded objects go to a permanent generation: a cell's gc.collect() (before its memory probe) then scans
    # its own objects only, instead of touching, and so copying on write, every page of the server's (0.3 s a cell).
    gc.collect()
    gc.freeze()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the cell: a session of its own (one kill stops it all), stdout/stderr to files
            code = 1
            try:
                proto.close()  # only the server talks to the parent
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.setsid()
                die_with_parent()
                for fd, path in ((1, req["out"]), (2, req["err"])):
                    f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.dup2(f, fd)
                    os.close(f)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                _child(CellSpec.from_json(req["spec"]), req.get("mem_limit"), req.get("imports", []))
                code = 0
            except BaseException:  # noqa: BLE001  (report anything, then leave without running the server's code)
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        running[:] = [pid]
        proto.write(json.dumps({"pid": pid}) + "\n")
        _, ws = os.waitpid(pid, 0)
        running.clear()
        proto.write(json.dumps({"pid": pid, "wait_status": ws}) + "\n")


if __name__ == "__main__":
    # run the real module's main: under ``-m`` this file is ``__main__``, and the server's preload imports
    # ``attnbench.cell`` again; delegating keeps one copy of its classes (SkipCell) in the process
    from attnbench.cell import main as _main

    sys.exit(_main())
