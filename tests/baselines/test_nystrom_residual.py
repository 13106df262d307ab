"""Nyströmformer's convergence diagnostic: the pinv residual ‖I - A Z‖_F (track_residual / last_residual)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import baselines as B
from baselines.nystrom import nystrom_attention

DIM, HEADS = 64, 2


def _module(**kw) -> B.NystromAttention:
    torch.manual_seed(0)
    return B.NystromAttention(DIM, HEADS, num_landmarks=16, conv_kernel=0, track_residual=True, **kw).double()


def test_well_conditioned_landmark_kernel_converges():
    # one token per landmark and far-apart keys: A = softmax(Q̃ K̃ᵀ s) is close to I, which 6 iterations invert
    q = 8 * torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))[0].expand(1, 2, 16, 16)
    _, res = nystrom_attention(q, q, q, num_landmarks=16, scale=1.0, return_residual=True)
    assert res.shape == (1, 2) and res.max().item() < 1e-8


def test_default_iterations_on_a_random_layer_are_flagged_and_more_fix_it():
    # at initialisation the landmarks are near-identical: A is nearly rank one (cond ~1e5), and the paper's 6
    # iterations invert only its top directions
    x = torch.randn(2, 256, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    six, many = _module(), _module(pinv_iters=60)
    six(x), many(x)
    assert isinstance(six.last_residual, float) and six.last_residual > 1.0
    assert many.last_residual < 1e-6
    q, k, _ = six.qkv(x).reshape(2, 256, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
    _, res = nystrom_attention(q, k, q, num_landmarks=16, scale=six.scale, return_residual=True)
    # the layer's fused projection and this reshape may round differently (thread count, kernel): a tolerance
    assert six.last_residual == pytest.approx(res.max().item(), rel=1e-9)


def test_residual_is_off_by_default_and_costs_one_m_cubed_matmul():
    x = torch.randn(1, 64, DIM)
    plain = B.NystromAttention(DIM, HEADS, num_landmarks=8, conv_kernel=0)
    plain(x)
    assert plain.last_residual is None
    tracked = B.NystromAttention(DIM, HEADS, num_landmarks=8, conv_kernel=0, track_residual=True)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        tracked(x)
    want = B.nystrom_macs(1, 64, DIM, HEADS, num_landmarks=8, conv_kernel=0, track_residual=True)
    assert fc.get_total_flops() == 2 * want
    assert want - B.nystrom_macs(1, 64, DIM, HEADS, num_landmarks=8, conv_kernel=0) == HEADS * 8 ** 3
