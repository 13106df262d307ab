"""Tiny attentions that exercise the harness: a reference softmax with its MAC formula, and cells that fail on
purpose (raise, sleep, produce NaN, allocate without bound).

They are addressed as ``module:Class`` (``attnbench.measure.testing:Sleepy``), so that a cell's subprocess finds
them by import, with no registration in the parent.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["process_alive", "signal_running_cell", "run_lock_holder", "stop", "ExplicitSoftmax", "Failing", "Sleepy", "NaNOut", "Hungry", "WrongShape",
           "CannotRunHere", "BrokenInit"]


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone); Linux ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(proc: subprocess.Popen, sig: int, timeout: float = 60) -> str:
    """Send ``sig`` to ``proc`` (started with ``start_new_session``, stderr piped) and wait for it to exit; its stderr.
    If it is still running after ``timeout`` seconds, its process group is killed."""
    try:
        proc.send_signal(sig)
        return proc.communicate(timeout=timeout)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def signal_running_cell(proc: subprocess.Popen, pidfile: Path, sig: int, wait: float = 120) -> tuple[int, str]:
    """Wait until the ``Sleepy`` cell of ``proc``'s sweep has written ``pidfile``, then :func:`stop` ``proc`` with
    ``sig``: (the cell's pid, ``proc``'s stderr)."""
    deadline = time.time() + wait
    while time.time() < deadline and not (pidfile.exists() and pidfile.read_text()):
        time.sleep(0.2)
    if not pidfile.exists():
        stop(proc, signal.SIGKILL)
        raise AssertionError("the Sleepy cell never started")
    return int(pidfile.read_text()), stop(proc, sig)


@contextlib.contextmanager
def run_lock_holder(run_dir: str | Path) -> Iterator[subprocess.Popen]:
    """Another process that holds ``results.RunLock(run_dir)`` while the block runs (its PID is the Popen's)."""
    code = "import sys, time\nfrom attnbench.results import RunLock\nwith RunLock(sys.argv[1]):\n" \
           "    print('locked', flush=True)\n    time.sleep(600)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        if holder.stdout is None or holder.stdout.readline().strip() != "locked":
            raise RuntimeError(f"the lock holder for {run_dir} did not start")
        yield holder
    finally:
        holder.kill()
        holder.wait()


class ExplicitSoftmax(nn.Module):
    """softmax(q kᵀ / √d) v with materialised scores; ``macs`` is its closed form."""

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, h, N, d]
        attn = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)  # [B, h, N, N]
        o = attn.softmax(-1) @ v
        return self.proj(o.transpose(1, 2).reshape(B, N, C))

    @staticmethod
    def macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, **_: object) -> int:
        return 4 * B * N * dim * dim + 2 * B * N * N * dim


class Failing(ExplicitSoftmax):
    """Raises in forward: an ``error`` cell."""

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        raise RuntimeError("deliberate failure for the harness tests")


class Sleepy(ExplicitSoftmax):
    """Sleeps ``seconds`` in every forward: a ``timeout`` cell. With ``pidfile``, writes its process id there first
    (so a test can check that the process was killed)."""

    def __init__(self, dim: int, num_heads: int = 8, *, seconds: float = 60.0, pidfile: str | None = None,
                 **kw: object) -> None:
        super().__init__(dim, num_heads, **kw)
        self.seconds, self.pidfile = seconds, pidfile

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        if self.pidfile:
            with open(self.pidfile, "w") as f:
                f.write(str(os.getpid()))
        time.sleep(self.seconds)
        return super().forward(x, hw)


class NaNOut(ExplicitSoftmax):
    """Returns NaN: a ``nan`` cell."""

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        return super().forward(x, hw) * float("nan")


class Hungry(ExplicitSoftmax):
    """Allocates ``gib`` GiB in forward: an ``oom`` cell under a smaller memory cap."""

    def __init__(self, dim: int, num_heads: int = 8, *, gib: float = 4.0, **kw: object) -> None:
        super().__init__(dim, num_heads, **kw)
        self.gib = gib

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        blob = torch.ones(int(self.gib * 2**30) // 4)
        return super().forward(x, hw) + blob[:1]


class WrongShape(ExplicitSoftmax):
    """Returns the wrong shape (``cut="tokens"``: [B, 1, C], which broadcasts through a residual;
    ``cut="channels"``: [B, N, C/2]): an ``error`` cell."""

    def __init__(self, dim: int, num_heads: int = 8, *, cut: str = "tokens", **kw: object) -> None:
        super().__init__(dim, num_heads, **kw)
        self.cut = cut

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        out = super().forward(x, hw)
        return out[:, :1] if self.cut == "tokens" else out[..., : out.shape[-1] // 2]


class CannotRunHere(ExplicitSoftmax):
    """Declares that it cannot run anywhere (``not_supported_reason``): a ``skipped`` cell, never built."""

    @classmethod
    def not_supported_reason(cls, *, device: str, dtype: str, seq_len: int, hparams: dict,
                             hw: tuple[int, int] | None = None) -> str | None:
        return f"deliberately unsupported on {device}"

    def __init__(self, *args: object, **kw: object) -> None:
        raise AssertionError("built although not_supported_reason said no")


class BrokenInit(ExplicitSoftmax):
    """Raises ValueError in ``__init__``: a bug, so an ``error`` cell (which ``--retry-failed`` runs again)."""

    def __init__(self, *args: object, **kw: object) -> None:
        raise ValueError("deliberate failure in __init__ for the harness tests")
