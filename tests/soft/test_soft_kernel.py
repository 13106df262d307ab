"""Gaussian kernel: matmul expansion vs direct differences, range, symmetry."""
from __future__ import annotations

import pytest
import torch

from soft import gaussian_kernel, naive_gaussian_kernel, squared_distance

from soft_helpers import gaussian_points


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 1e-6)], ids=["fp64", "fp32"])
def test_expansion_matches_direct_differences(dtype, tol):
    q = gaussian_points(40, 32, 0.3, batch=(2, 3), seed=1, dtype=dtype)
    k = gaussian_points(9, 32, 0.3, batch=(2, 3), seed=2, dtype=dtype)
    err = (gaussian_kernel(q, k).double() - naive_gaussian_kernel(q, k)).abs().max().item()
    assert err <= tol, f"kernel max-abs error {err:.2e} > {tol:.0e}"


def test_landmark_kernel_is_symmetric_unit_diagonal_in_range():
    k = gaussian_points(49, 32, 0.2, batch=(2,), seed=3)
    A = gaussian_kernel(k, k)
    assert torch.equal(A, A.transpose(-1, -2)) or (A - A.transpose(-1, -2)).abs().max() < 1e-15
    assert torch.allclose(A.diagonal(dim1=-2, dim2=-1), torch.ones(2, 49, dtype=A.dtype), atol=1e-14)
    assert (A > 0).all() and (A <= 1).all()


def test_distance_is_clamped_at_zero():
    q = torch.full((1, 5, 8), 1e3, dtype=torch.float32)  # identical large vectors: the expansion cancels
    assert (squared_distance(q, q) >= 0).all()
