"""Gaussian kernel of SOFT (arXiv 2110.11945 eq. 4; reference code fudan-zvg/SOFT @ d3febc3).

S_ij = exp(-||q_i - k_j||^2 / (2 sqrt(d))). The official code folds the 1/sqrt(d) into the inputs by scaling
q and k by d^(-1/4) first; the functions here take those *scaled* vectors (q̄, k̄) and compute exp(-½||q̄ - k̄||²).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["squared_distance", "gaussian_kernel"]


def squared_distance(q: Tensor, k: Tensor) -> Tensor:
    """Pairwise squared distances through the matmul expansion ``|q|² + |k|² - 2 q kᵀ``, clamped at 0.

    Never builds the (n, m, d) difference tensor; the only matmul is ``q kᵀ`` (n·m·d MACs).
    The row norms use sums, not the official code's ``q² @ ones`` matmuls, so they cost no MACs.

    Args:
        q: [..., n, d]
        k: [..., m, d] (same leading dims as ``q``; no broadcasting so that FLOP counters see plain bmm)

    Returns:
        [..., n, m], non-negative.
    """
    q_sq = q.pow(2).sum(-1, keepdim=True)  # [..., n, 1]
    k_sq = k.pow(2).sum(-1).unsqueeze(-2)  # [..., 1, m]
    qk = torch.matmul(q, k.transpose(-1, -2))  # [..., n, m]
    # rounding can push the expansion slightly below zero for near-identical vectors; a distance cannot be
    return (q_sq + k_sq - 2.0 * qk).clamp_min(0.0)


def gaussian_kernel(q_bar: Tensor, k_bar: Tensor) -> Tensor:
    """SOFT's softmax-free kernel ``exp(-½ ||q̄_i - k̄_j||²)`` on d^(-1/4)-scaled inputs.

    Entries lie in (0, 1]; with ``k_bar is q_bar`` the matrix is symmetric with unit diagonal.

    Args:
        q_bar: [..., n, d] scaled queries q̄ = q · d^(-1/4).
        k_bar: [..., m, d] scaled keys (SOFT ties K = Q, so these are landmarks or queries).

    Returns:
        [..., n, m]
    """
    return torch.exp(-0.5 * squared_distance(q_bar, k_bar))
