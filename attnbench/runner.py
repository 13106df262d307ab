"""The parent's side of a cell: start it in a fresh process (spawned, or forked from a warm server), enforce the
timeout and the memory cap, and turn whatever happened into a row with a typed status (see :mod:`attnbench.cell`).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Iterator

from attnbench.cell import _OOM_MARKERS, CellSpec, _one_line

__all__ = ["CellRunner", "run_cell_subprocess", "Terminated", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (SLURM's time limit, ``kill``), raised where Ctrl-C would be so that the same clean-up runs."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`Terminated`: rows kept, cells killed, exit 143."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_sig: int, _frame: Any) -> None:
        raise Terminated("terminated by SIGTERM")
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _extra_imports(model: str) -> list[str]:
    """Modules the child must import so that a model registered at run time in this process exists there too."""
    from attnbench import registry

    entry = registry._REGISTRY.get(model)
    if entry is None or ":" in model:
        return []
    mod = entry.cls.__module__
    builtin = ("soft", "baselines", "attnbench")
    return [] if mod.split(".")[0] in builtin or mod == "__main__" else [mod]


def _failure_from_exit(returncode: int, stderr: str) -> tuple[str, str]:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1].strip()[:300] if lines else ""
    if returncode < 0:
        sig = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        if -returncode == signal.SIGKILL:
            return "oom", f"killed by {sig} (the kernel's OOM killer?){': ' + last if last else ''}"
        return "error", f"child died from {sig}{': ' + last if last else ''}"
    if any(m in last.lower() for m in _OOM_MARKERS):
        return "oom", last
    return "error", f"child exited with code {returncode}{': ' + last if last else ''}"


def run_cell_subprocess(spec: CellSpec, timeout: float | None = None, mem_limit_bytes: int | None = None, *,
                        python: str | None = None) -> dict[str, Any]:
    """Run ``spec`` in ``python -m attnbench.cell`` and return its row; a failure of any kind is a row.

    Args:
        spec: the cell.
        timeout: seconds before the child (and its process group) is killed: status ``timeout``. None: no limit.
        mem_limit_bytes: cap the child's address space at its start-up size plus this many bytes (RLIMIT_AS);
            exceeding it is status ``oom``. RLIMIT_AS counts virtual memory (thread stacks, arenas), so it is a
            safety cap and a way to simulate OOM, not a measurement.
        python: interpreter (default: this one).

    KeyboardInterrupt while waiting kills the child and is re-raised.
    """
    cmd = [python or sys.executable, "-m", "attnbench.cell"]
    if mem_limit_bytes:
        cmd += ["--mem-limit", str(int(mem_limit_bytes))]
    for mod in _extra_imports(spec.model):
        cmd += ["--import", mod]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_child_env(), start_new_session=True)  # own process group: no terminal Ctrl-C, one kill
    try:
        stdout, stderr = proc.communicate(spec.to_json(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        row = spec.base_row()
        row.update(status="timeout", reason=f"exceeded the {timeout:g} s timeout", wall_s=time.perf_counter() - t0)
        return row
    except BaseException:  # KeyboardInterrupt included: never leave a cell running
        _kill_group(proc)
        raise
    return _row_from_output(spec, proc.returncode, stdout, stderr, time.perf_counter() - t0)


def _row_from_output(spec: CellSpec, returncode: int, stdout: str, stderr: str, wall_s: float) -> dict[str, Any]:
    row = None
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if lines:
        try:
            row = json.loads(lines[-1])
        except json.JSONDecodeError:
            row = None
    if not isinstance(row, dict):
        row = spec.base_row()
        status, reason = _failure_from_exit(returncode, stderr)
        row.update(status=status, reason=reason)
    row["wall_s"] = round(wall_s, 3)
    return row


class CellRunner:
    """Runs cells, each in a fresh process, with a timeout, a memory cap and a typed status.

    ``isolation="spawn"`` starts ``python -m attnbench.cell`` per cell (:func:`run_cell_subprocess`): every cell
    pays the interpreter start and the imports of torch, timm and fvcore (about 6 s on an idle 2-core machine,
    10 s on a busy one). ``isolation="fork"`` (POSIX) starts one server, ``python -m attnbench.cell --serve``,
    that imports all of that once and forks every cell from it: each cell still gets a process of its own (its
    peak memory is its own, a crash or the OOM killer takes only it), but starts in milliseconds. The server never
    touches CUDA, so a forked cell initialises CUDA itself. A server that dies is restarted for the next cell.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, isolation: str = "fork") -> None:
        if isolation not in ("fork", "spawn"):
            raise ValueError(f"isolation {isolation!r} is not supported; accepted: fork, spawn")
        if isolation == "fork" and not hasattr(os, "fork"):
            isolation = "spawn"
        self.isolation = isolation
        self._server: subprocess.Popen | None = None
        self._buf = b""
        self._tmp: Any = None

    def __enter__(self) -> "CellRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server (if any) and remove its scratch files."""
        if self._server is not None:
            _kill_group(self._server)
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def run(self, spec: CellSpec, timeout: float | None = None, mem_limit_bytes: int | None = None) -> dict[str, Any]:
        """Measure ``spec`` in a fresh process and return its row (see :func:`run_cell_subprocess`).

        KeyboardInterrupt kills the running cell and is re-raised.
        """
        if self.isolation == "spawn":
            return run_cell_subprocess(spec, timeout, mem_limit_bytes)
        return self._run_forked(spec, timeout, mem_limit_bytes)

    def _start_server(self) -> subprocess.Popen:
        import tempfile

        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="attnbench-cells-")
        log = open(os.path.join(self._tmp.name, "server.log"), "ab")
        env = {**_child_env(), "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}  # a CUDA probe must not cuInit the server
        self._server = subprocess.Popen([sys.executable, "-m", "attnbench.cell", "--serve", "--scratch",
                                         self._tmp.name], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
        log.close()
        self._buf = b""
        return self._server

    def _readline(self, deadline: float | None) -> dict[str, Any] | None:
        """The server's next reply, or None at the deadline; EOFError if the server died."""
        import select

        assert self._server is not None and self._server.stdout is not None
        fd = self._server.stdout.fileno()
        while b"\n" not in self._buf:
            wait = None if deadline is None else max(0.0, deadline - time.perf_counter())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("the cell server exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def _run_forked(self, spec: CellSpec, timeout: float | None, mem_limit_bytes: int | None) -> dict[str, Any]:
        server = self._server if self._server is not None and self._server.poll() is None else self._start_server()
        out, err = (os.path.join(self._tmp.name, n) for n in ("cell.out", "cell.err"))
        req = {"spec": spec.to_json(), "mem_limit": mem_limit_bytes, "imports": _extra_imports(spec.model),
               "out": out, "err": err}
        t0 = time.perf_counter()
        pid = None
        try:
            assert server.stdin is not None
            server.stdin.write((json.dumps(req) + "\n").encode())
            server.stdin.flush()
            pid = self._readline(None)["pid"]  # the fork is immediate; the server is warm after its first reply
            t0 = time.perf_counter()  # the timeout is the cell's own time, not the server's start-up
            done = self._readline(None if timeout is None else t0 + timeout)
            if done is None:  # timed out: kill the cell's session, collect the server's reply
                _kill_pid_group(pid)
                self._readline(time.perf_counter() + 30)
                row = spec.base_row()
                row.update(status="timeout", reason=f"exceeded the {timeout:g} s timeout",
                           wall_s=round(time.perf_counter() - t0, 3))
                return row
        except (EOFError, BrokenPipeError, OSError, ValueError) as e:
            _kill_pid_group(pid)
            self.close()
            row = spec.base_row()
            row.update(status="error", reason=f"the cell server died: {_one_line(e)}",
                       wall_s=round(time.perf_counter() - t0, 3))
            return row
        except BaseException:  # KeyboardInterrupt included: never leave a cell running
            _kill_pid_group(pid)
            self.close()
            raise
        ws = done["wait_status"]
        code = -os.WTERMSIG(ws) if os.WIFSIGNALED(ws) else os.WEXITSTATUS(ws)
        return _row_from_output(spec, code, _read(out), _read(err), time.perf_counter() - t0)


def _child_env() -> dict[str, str]:
    """This process's environment, with its sys.path, so that the child imports what this process imports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _kill_pid_group(pid: int | None) -> None:
    if pid is None:
        return
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, ValueError):
        proc.kill()
