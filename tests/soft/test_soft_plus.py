"""SOFT++ symmetric normalisation (spec soft.md §1.9, §5.7)."""
from __future__ import annotations

import torch

from soft import gaussian_kernel, soft_kernel_attention, soft_middle
from soft_helpers import gaussian_points, rel_err


def test_middle_factor_is_d_inv_sqrt_pinv_d_inv_sqrt():
    k = gaussian_points(49, 32, 0.2, batch=(2,))
    A = gaussian_kernel(k, k)
    M = soft_middle(A, iters=20, ridge=0.0, symmetric_norm=True)
    D = torch.diag_embed(A.sum(-1).rsqrt())
    assert rel_err("SOFT++ middle", M, D @ torch.linalg.pinv(A) @ D) <= 1e-10


def test_reduces_to_soft_when_landmark_kernel_is_identity():
    k = gaussian_points(16, 32, 10.0, batch=(1, 2))  # far apart: off-diagonal exp(-½ dist²) underflows to 0
    A = gaussian_kernel(k, k)
    assert (A - torch.eye(16, dtype=A.dtype)).abs().max() <= 1e-10  # diagonal 1 up to expansion rounding
    q = gaussian_points(30, 32, 10.0, batch=(1, 2), seed=5)
    q[..., :16, :] = k + 0.1 * torch.randn_like(k)  # some tokens near the landmarks, so K1 is not all zero
    v = torch.randn(1, 2, 30, 8, dtype=torch.float64)
    soft = soft_kernel_attention(q, k, v, ridge=0.0, symmetric_norm=False)
    soft_pp = soft_kernel_attention(q, k, v, ridge=0.0, symmetric_norm=True)
    assert soft.abs().max() > 0.1  # the check is not vacuous
    assert rel_err("SOFT++ vs SOFT at A = I", soft_pp, soft) <= 1e-9


def test_normalised_attention_matrix_is_symmetric():
    q = gaussian_points(25, 32, 0.2, batch=(1, 2))
    k = gaussian_points(9, 32, 0.2, batch=(1, 2), seed=7)
    eye = torch.eye(25, dtype=torch.float64).expand(1, 2, 25, 25)
    S_hat = soft_kernel_attention(q, k, eye, symmetric_norm=True)  # Ŝ · I = Ŝ, through the linear-cost path
    assert (S_hat - S_hat.transpose(-1, -2)).abs().max().item() <= 1e-12
    assert not torch.allclose(S_hat, soft_kernel_attention(q, k, eye, symmetric_norm=False))
