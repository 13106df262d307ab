"""Measurement: FLOP handles (custom Functions, broadcasts, SDPA, cdist, einsum); CPU peak memory; latency."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attnbench.measure.flops import count_flops
from attnbench.measure.latency import time_step
from attnbench.measure.memory import cpu_peak_unavailable, measure_peak
from attnbench.measure.step import make_step

# The audit of every registered attention's MACs against its formula (layer and ViT scopes) is in test_registry.py.


class _Inv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A):  # two Newton steps, no graph: invisible to fvcore without the subgraph handle
        with torch.no_grad():
            V = A.clone()
            for _ in range(2):
                V = 2 * V - V @ A @ V
        return V

    @staticmethod
    def backward(ctx, g):
        return g


class _Probe(nn.Module):
    def forward(self, x):  # x [B, h, N, d]
        A = x[..., :8, :8].transpose(-1, -2) @ x[..., :8, :8]  # [B, h, d, d]... with d = 8
        V = _Inv.apply(A)
        w = torch.ones(8, 8)
        y = w @ x[..., :8]  # broadcast [8, 8] @ [B, h, N, 8] with N == 8
        s = torch.nn.functional.scaled_dot_product_attention(x, x, x)
        return V.exp().sum() + y.sum() + s.sum() + torch.cdist(x, x).sum() + torch.einsum("bhnd,bhmd->bhnm", x, x).sum()


def test_flop_handles_custom_function_broadcast_sdpa_cdist_einsum() -> None:
    B, h, N, d = 2, 3, 8, 8
    fc = count_flops(_Probe(), torch.randn(B, h, N, d))
    ops = fc.by_operator
    assert ops["matmul"] == B * h * 8 * 8 * 8 * (1 + 2 * 2) + B * h * N * 8 * 8  # A, 2 Newton steps x 2, w @ x
    assert ops["sdpa"] == B * h * N * N * 2 * d
    assert ops["cdist"] == B * h * N * N * d
    assert ops["einsum"] == B * h * N * N * d
    assert fc.elementwise_by_operator["exp"] == B * h * 8 * 8
    assert fc.uncounted_ops == ()


def test_unknown_op_is_listed_not_dropped() -> None:
    class M(nn.Module):
        def forward(self, x):
            return torch.fft.fft(x).real

    fc = count_flops(M(), torch.randn(4, 8))
    assert any("fft" in op for op in fc.uncounted_ops), fc.uncounted_ops


@pytest.mark.skipif(cpu_peak_unavailable() is not None, reason="no writable /proc/self/clear_refs here")
def test_cpu_peak_of_known_allocation_within_5_percent() -> None:
    size = 200 * 2**20

    def alloc():
        t = torch.ones(size // 4)  # 200 MiB, filled, so every page is resident
        return float(t[-1])

    mem = measure_peak(alloc, "cpu")
    assert mem.method == "cpu-vmhwm" and mem.reason is None
    assert abs(mem.peak_bytes - size) / size < 0.05, mem


def test_latency_and_train_step() -> None:
    model = nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 4))
    x = torch.randn(8, 16)
    before = model[0].weight.detach().clone()
    step = make_step(model, x, mode="train", num_classes=4)
    lat = time_step(step, batch=8, min_time=0.05, warmup=1)
    assert not torch.equal(model[0].weight, before)  # the optimizer stepped
    assert lat.median_ms > 0 and lat.iqr_ms >= 0 and lat.runs >= 1
    assert lat.throughput_per_s == pytest.approx(8 / (lat.median_ms / 1e3))
    assert lat.num_threads == torch.get_num_threads() and lat.measurement is not None
    out = make_step(model, x, mode="infer")()
    assert out.shape == (8, 4) and not out.requires_grad


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="accepted: infer, train"):
        make_step(nn.Linear(2, 2), torch.ones(1, 2), mode="fwd")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_of_known_allocation() -> None:
    size = 256 * 2**20
    mem = measure_peak(lambda: torch.ones(size // 4, device="cuda"), "cuda")
    assert mem.method == "cuda-allocator" and abs(mem.peak_bytes - size) / size < 0.01
