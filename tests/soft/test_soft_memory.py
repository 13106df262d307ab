"""Linear cost at fixed m: no N×N tensor, peak memory ~linear in N."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from soft import SoftAttention

SCRIPT = Path(__file__).with_name("soft_peak_memory.py")


class _AllocationRecorder(TorchDispatchMode):
    """Records the shape of every tensor any op returns (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.shapes += [tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


def _n_by_n(shapes, n):
    return [s for s in shapes if sum(dim == n for dim in s) >= 2 or (len(s) and torch.Size(s).numel() % (n * n) == 0
                                                                      and torch.Size(s).numel() >= n * n)]


@pytest.mark.parametrize("kw", [dict(), dict(symmetric_norm=True), dict(sampler="conv", sr_ratio=4)],
                         ids=["pool", "soft++", "conv-s4"])
def test_no_n_by_n_tensor_in_forward_and_backward(kw):
    n = 32 * 32
    layer = SoftAttention(96, 3, **kw)
    x = torch.randn(1, n, 96, requires_grad=True)
    rec = _AllocationRecorder()
    with rec:
        layer(x).sum().backward()
    assert len(rec.shapes) > 50, "the recorder saw too few ops to mean anything"
    assert not _n_by_n(rec.shapes, n), f"N x N tensors allocated: {_n_by_n(rec.shapes, n)[:5]}"
    assert max(torch.Size(s).numel() for s in rec.shapes) < n * n // 4


def test_recorder_detects_n_by_n_with_identity_landmarks():
    # positive control: m = N materialises N×N kernels, and the recorder must catch it
    n = 16 * 16
    layer = SoftAttention(96, 3, sampler="identity", newton_iters=2)
    rec = _AllocationRecorder()
    with rec:
        layer(torch.randn(1, n, 96)).sum()
    assert _n_by_n(rec.shapes, n)


def _peak_bytes(n: int) -> int:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, str(SCRIPT), str(n)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs (VmHWM)")
@pytest.mark.heavy  # tens of seconds of process start-ups: run with -m heavy
def test_peak_memory_is_linear_in_n():
    small, large = _peak_bytes(1024), _peak_bytes(4096)
    ratio = large / small
    print(f"peak growth fwd+bwd, dim 192, 3 heads, m=49: N=1024 {small / 2**20:.1f} MiB, "
          f"N=4096 {large / 2**20:.1f} MiB, ratio {ratio:.2f}")
    assert 3.0 <= ratio <= 5.0, f"4x tokens gave {ratio:.2f}x peak memory (linear: ~4, quadratic: ~16)"


@pytest.mark.heavy
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs (VmHWM)")
def test_peak_memory_is_linear_up_to_16k_tokens():
    p4k, p16k = _peak_bytes(4096), _peak_bytes(16384)
    assert 3.4 <= p16k / p4k <= 4.6
