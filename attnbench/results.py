"""One results schema for every run: rows appended as cells finish, read back for resume and reports.

A run directory ``results/<run-name>/`` holds ``results.csv`` (appended row by row, so nothing finished is lost
when a sweep dies), ``results.parquet`` (rewritten from the CSV), ``meta.json`` and the rendered reports.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from attnbench.schema import IDENTITY, KEY_COLUMNS, OUTCOME, ROUNDS, RUN, STATUSES, TRAIN, Column, Row

__all__ = ["COLUMNS", "COLUMN_SPECS", "NUMERIC_COLUMNS", "ALL_COLUMNS", "TRAIN_COLUMNS", "STATUSES", "KEY_COLUMNS",
           "Row", "RunLock", "new_row", "append_row", "load_results", "write_parquet",
           "environment", "command_line", "write_meta", "read_meta", "write_text_atomic", "check_writable",
           "RUN_FILES"]


def _schema() -> list[Column]:
    from attnbench.measure.probes import PROBES

    measured = [c for p in PROBES for c in p.columns]
    core = [c for c in (*IDENTITY, *OUTCOME, *measured) if c.core]
    extra = [c for c in (*measured, *ROUNDS, *IDENTITY, *RUN) if not c.core]
    return core + extra + list(TRAIN)


# every column, in file order: the design's core columns, then the extras, then training's
COLUMN_SPECS: dict[str, Column] = {c.name: c for c in _schema()}
COLUMNS = [c for c, spec in COLUMN_SPECS.items() if spec.core]
TRAIN_COLUMNS = [c.name for c in TRAIN]
EXTRA_COLUMNS = [c for c, spec in COLUMN_SPECS.items() if not spec.core and c not in TRAIN_COLUMNS]
ALL_COLUMNS = list(COLUMN_SPECS)
NUMERIC_COLUMNS = [c for c, spec in COLUMN_SPECS.items() if spec.numeric]

CSV_NAME, PARQUET_NAME, META_NAME = "results.csv", "results.parquet", "meta.json"


def new_row(**values: Any) -> Row:
    """A results row (``run`` and ``train`` both build theirs here); unknown column names are a ValueError."""
    return Row.of(COLUMN_SPECS, **values)


def append_row(run_dir: str | Path, row: dict[str, Any]) -> None:
    """Append one row to ``run_dir/results.csv`` (header on first write) and flush it to disk. A file written with
    an older schema (other columns) is first rewritten in this one, so that a resumed run's rows line up."""
    path = Path(run_dir) / CSV_NAME
    row = new_row(**row)  # checks the column names
    for name, spec in COLUMN_SPECS.items():
        if spec.derive is not None:
            row[name] = spec.derive(row)
    _drop_torn_line(path, truncate=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        _upgrade_header(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ALL_COLUMNS)
        if new:
            w.writeheader()
        w.writerow({k: _cell(row.get(k)) for k in ALL_COLUMNS})
        f.flush()
        os.fsync(f.fileno())


def _upgrade_header(path: Path) -> None:
    """Rewrite ``path`` with ALL_COLUMNS first (columns it has that the schema lacks kept after them)."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
        if header[:len(ALL_COLUMNS)] == ALL_COLUMNS:
            return
        f.seek(0)
        rows = list(csv.DictReader(f))
    fields = ALL_COLUMNS + [c for c in header if c not in ALL_COLUMNS]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _cell(v: Any) -> Any:
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    return "" if v is None else v


class RunLock:
    """One writer per run directory: an exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` holding the owner's PID.

    A second process (``run`` or ``train`` into the same folder) gets a one-line ValueError naming the holder's PID.
    The kernel drops the lock when the holder dies, however it dies, so a crashed run never leaves it stale. Within
    the process that holds it, a nested RunLock on the same folder (a train sweep around each training) is a no-op.
    """

    NAME = ".lock"
    _held: dict[Path, int] = {}  # lock files this process holds -> nesting depth

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / self.NAME
        self._fd: int | None = None
        self._key: Path | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        key = self.path.resolve()
        if key in RunLock._held:
            RunLock._held[key] += 1
            self._key = key
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ValueError(f"run directory {self.path.parent} is in use by another attnbench process (PID {holder}); "
                             "wait for it or choose another --name/--out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd, self._key = fd, key
        RunLock._held[key] = 1
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._key is not None:
            RunLock._held[self._key] -= 1
            if not RunLock._held[self._key]:
                del RunLock._held[self._key]
            self._key = None
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


_WARNED: set[str] = set()


def _warn_once(text: str) -> None:
    """A one-line warning, printed once per process whatever the number of reads."""
    if text not in _WARNED:
        _WARNED.add(text)
        warnings.warn(text, stacklevel=3)


def _drop_torn_line(path: Path, *, truncate: bool = False) -> bytes:
    """The file's complete lines. A last line without its newline is a row torn by a crash mid-write: it is left
    out with a warning (and cut from the file when ``truncate``, so that the next row starts on a line of its own)."""
    if not path.exists():
        return b""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        _warn_once(f"{path}: dropped a torn last row ({len(data) - keep} bytes without a newline)")
        if truncate:
            with open(path, "r+b") as f:
                f.truncate(keep)
        data = data[:keep]
    return data


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """Read a run's rows; a missing file gives an empty frame, a corrupt one (or a folder) a one-line ValueError."""
    path = Path(run_dir) / CSV_NAME
    if not path.exists():
        return pd.DataFrame(columns=ALL_COLUMNS)
    if path.is_dir():
        raise ValueError(f"corrupt results file {path}: a folder, not a file")
    try:
        df = pd.read_csv(io.BytesIO(_drop_torn_line(path)), keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"corrupt results file {path}: {str(e).splitlines()[0]}") from None
    missing = [c for c in ("model", "seq_len", "status") if c not in df.columns]
    if missing:
        raise ValueError(f"corrupt results file {path}: missing columns {missing}; expected the attnbench schema")
    for c in ALL_COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    for c in ("seq_len", "batch"):
        nums = pd.to_numeric(df[c], errors="coerce")
        bad = nums.isna() & df[c].notna() | (nums.notna() & (nums % 1 != 0))
        if bad.any():
            raise ValueError(f"corrupt results file {path}: column {c!r} holds {df.loc[bad, c].iloc[0]!r} in row "
                             f"{int(bad.idxmax()) + 2}; expected a whole number")
        df[c] = nums.astype("int64" if nums.notna().all() else "Int64")
    bad = ~df["status"].isin(STATUSES)
    if bad.any():
        raise ValueError(f"corrupt results file {path}: unknown status {df.loc[bad, 'status'].iloc[0]!r} "
                         f"in row {int(bad.idxmax()) + 2}; accepted: {', '.join(STATUSES)}")
    return df[ALL_COLUMNS + [c for c in df.columns if c not in ALL_COLUMNS]]


def write_parquet(run_dir: str | Path, df: pd.DataFrame | None = None) -> Path:
    run_dir = Path(run_dir)
    df = load_results(run_dir) if df is None else df
    out = run_dir / PARQUET_NAME
    tmp = out.with_suffix(".parquet.tmp")
    df.convert_dtypes().to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return out


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it again: ``attnbench run ...`` whether it ran as the installed script
    (``/root/.pyenv/.../bin/attnbench``) or ``python -m attnbench`` (``.../attnbench/__main__.py``); any other
    program as ``python <its file name> ...``; arguments quoted for a shell where they need it."""
    import shlex

    argv = list(sys.argv if argv is None else argv)
    prog = argv[0] if argv else ""
    path = Path(prog)
    if path.name == "attnbench" or (path.name == "__main__.py" and path.parent.name == "attnbench"):
        head = "attnbench"
    elif prog == "-c":
        head = "python -c"
    else:
        head = f"python {path.name}".strip()
    return " ".join([head, shlex.join(argv[1:])]).strip()


def _cpu_env() -> dict[str, Any]:
    """The CPU as torch sees it: model name, identity and kernel ISA (``machine.cpu_identity``), and the ATen
    capability torch dispatches to (``AVX2``, ``AVX512``, ...)."""
    import torch

    from attnbench.machine import cpu_identity

    env: dict[str, Any] = {"cpu": _cpu_model(), **cpu_identity()}
    try:
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        pass
    return env


def _gpu_env(device: str | None) -> dict[str, Any]:
    """The GPU a CUDA run used: name, compute capability, CUDA runtime and kernel driver; ``{}`` without CUDA."""
    import torch

    from attnbench.machine import gpu_driver

    if not torch.cuda.is_available():
        return {}
    dev = torch.device(device) if device and device.startswith("cuda") else torch.device("cuda", 0)
    props = torch.cuda.get_device_properties(dev)
    return {"cuda": torch.version.cuda, "gpu": props.name, "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_driver": gpu_driver()}


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions, hardware and command line: what a reader needs to trust or reproduce a number."""
    import torch

    import attnbench

    env: dict[str, Any] = {
        "attnbench": getattr(attnbench, "__version__", None),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **_cpu_env(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "command": command_line(),
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        import timm

        env["timm"] = timm.__version__
    except ImportError:
        env["timm"] = None
    env.update(_gpu_env(device))
    env["device"] = device
    return env


RUN_FILES = (CSV_NAME, PARQUET_NAME, META_NAME, RunLock.NAME)  # what a sweep writes in its run directory


def check_writable(folder: str | Path, names: Iterable[str] = (), *, field: str = "run_dir") -> None:
    """Refuse, before any work, a ``folder`` whose files could not be written, creating nothing. It must be a
    writable folder, or, when missing, the nearest existing one above it (where it would be created). Each of
    ``names`` (a glob such as ``*.png`` too) that exists in it, and its ``.tmp`` sibling (atomic writes go through
    it), must be a writable file. A one-line ConfigError naming ``field``."""
    from attnbench.config import ConfigError, ref

    folder = Path(folder)
    base = folder
    while not base.exists() and base != base.parent:
        base = base.parent
    problem = None if base.is_dir() else "is not a folder"
    problem = problem or (None if os.access(base, os.W_OK | os.X_OK) else "is not writable")
    if problem:
        raise ConfigError(field, f"cannot write to {ref(field)} {folder}: {base} {problem}")
    if base != folder:
        return
    for name in names:
        for path in sorted(folder.glob(name)) if "*" in name else [folder / name]:
            for p in (path, path.with_name(path.name + ".tmp")):
                if p.is_dir():
                    raise ConfigError(field, f"cannot write to {ref(field)} {folder}: {p} is a folder")
                if p.exists() and not os.access(p, os.W_OK):
                    raise ConfigError(field, f"cannot write to {ref(field)} {folder}: {p} is not writable")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``path`` through a temporary file and a rename: a reader (or a crash) never sees half of it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_meta(run_dir: str | Path, meta: dict[str, Any]) -> None:
    write_text_atomic(Path(run_dir) / META_NAME, json.dumps(meta, indent=2, sort_keys=True, default=str))


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / META_NAME
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt {path}: {e}") from None


def rows_to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=ALL_COLUMNS)
