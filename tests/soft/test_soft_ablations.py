"""The ablations beside SOFT: the exact tied Gaussian kernel it approximates, and landmarks at the queries' scale."""
from __future__ import annotations

import pytest
import torch

from soft import SoftAttention, naive_kernel_attention
from soft.exact import GaussianKernelAttention, gaussian_exact_macs


def _shared(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    dst.load_state_dict({k: v for k, v in src.state_dict().items() if k in dst.state_dict()}, strict=False)


def test_gaussian_exact_is_soft_in_its_exact_limit():
    """With every token a landmark and the inverse converged, SOFT's kernel term K1 pinv(A) K1ᵀ V is S V exactly:
    the ablation and SOFT differ by the approximation alone."""
    torch.manual_seed(0)
    soft = SoftAttention(24, 2, sampler="identity", newton_iters=60, ridge=0.0, conv_kernel=3).double().eval()
    exact = GaussianKernelAttention(24, 2, conv_kernel=3).double().eval()
    _shared(exact, soft)
    with torch.no_grad():  # a well-conditioned kernel: distinct, spread-out queries
        soft.W_q.weight.mul_(4.0)
        exact.W_q.weight.copy_(soft.W_q.weight)
    x = torch.randn(2, 16, 24, dtype=torch.float64)
    torch.testing.assert_close(exact(x, (4, 4)), soft(x, (4, 4)), rtol=1e-6, atol=1e-8)


def test_gaussian_exact_matches_the_float64_reference_with_and_without_row_norm():
    torch.manual_seed(1)
    for row_norm in (False, True):
        layer = GaussianKernelAttention(16, 2, conv_kernel=0, row_norm=row_norm).double().eval()
        x = torch.randn(3, 9, 16, dtype=torch.float64)
        q_bar = layer.W_q(x).reshape(3, 9, 2, 8).transpose(1, 2) * 8 ** -0.25
        v = layer.W_v(x).reshape(3, 9, 2, 8).transpose(1, 2)
        if row_norm:
            S = torch.exp(-0.5 * torch.cdist(q_bar, q_bar) ** 2)
            ref = (S / S.sum(-1, keepdim=True)) @ v
        else:
            ref = naive_kernel_attention(q_bar, v)
        ref = layer.proj(ref.transpose(1, 2).reshape(3, 9, 16))
        torch.testing.assert_close(layer(x, (3, 3)), ref, rtol=1e-10, atol=1e-12)


def test_gaussian_exact_macs_follow_n_squared():
    assert (gaussian_exact_macs(1, 2048, 64, 2, conv_kernel=0) - 3 * 2048 * 64 * 64
            == 4 * (gaussian_exact_macs(1, 1024, 64, 2, conv_kernel=0) - 3 * 1024 * 64 * 64))


def test_matched_landmarks_take_the_queries_mean_norm():
    torch.manual_seed(2)
    layer = SoftAttention(32, 2, sampler="conv", sr_ratio=2, landmark_scale="match").eval()
    x = torch.randn(2, 64, 32)
    q_bar, q_tilde, _ = layer._heads(x, (8, 8))
    torch.testing.assert_close(q_tilde.norm(dim=-1), q_bar.norm(dim=-1).mean(-1, keepdim=True).expand(-1, -1, 16))
    plain = SoftAttention(32, 2, sampler="conv", sr_ratio=2).eval()
    plain.load_state_dict(layer.state_dict())
    _, raw, _ = plain._heads(x, (8, 8))
    torch.testing.assert_close(q_tilde / q_tilde.norm(dim=-1, keepdim=True), raw / raw.norm(dim=-1, keepdim=True))
    with pytest.raises(ValueError, match="landmark_scale"):
        SoftAttention(32, 2, landmark_scale="bigger")
