"""SOFT's attention as pure functions (arXiv 2110.11945; SOFT++: arXiv 2207.03341); see docs/methods.md.

Nyström form with tied Q = K and landmarks Q̃ = K̃:

    K1 = exp(-½ dist²(Q̄, K̃))   [n, m]        A = exp(-½ dist²(K̃, K̃))   [m, m]
    out = (K1 · M) · (K1ᵀ · V),   M = newton(A)              (SOFT)
                                  M = D^-½ newton(A) D^-½,   D = diag(A·1)   (SOFT++, symmetric normalisation)

evaluated in that order so that nothing of size n×n exists: O(n m d + n m² + T m³) time, O(n m) memory.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .kernel import gaussian_kernel
from .newton import newton_inverse

__all__ = ["soft_middle", "soft_kernel_attention"]


def soft_middle(A: Tensor, *, iters: int = 20, ridge: float = 0.01, symmetric_norm: bool = False,
                variant: str = "soft", tol: float | None = None,
                return_residual: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The middle factor M of Ŝ = K1 M K1ᵀ: newton(A), or D^-½ newton(A) D^-½ for SOFT++.

    D = diag(A·1) uses the row sums of the m×m landmark kernel only (the official SOFT-Norm kernel), so the extra
    cost is O(m²) and no MACs. The official SOFT++ inverts with ``variant="soft-norm"`` and ``ridge=0``.

    Args:
        A: [..., m, m] landmark kernel (float32/float64; see :func:`soft.newton.newton_inverse`).
        iters, ridge, variant, tol: Newton options (see :func:`soft.newton.newton_inverse`).
        symmetric_norm: SOFT++.

    Returns:
        M [..., m, m]; or (M, residual [...]) with ``return_residual=True`` (‖I - (A + ridge·I) newton(A)‖_F,
        before the SOFT++ scaling).
    """
    out = newton_inverse(A, iters, ridge, variant=variant, tol=tol, return_residual=return_residual)
    M, residual = out if return_residual else (out, None)
    if symmetric_norm:
        d_inv_sqrt = A.to(M.dtype).sum(-1).rsqrt()  # [..., m]; rows of a Gaussian kernel sum to >= 1 (diag = 1)
        M = d_inv_sqrt.unsqueeze(-1) * M * d_inv_sqrt.unsqueeze(-2)  # D^-½ M D^-½
    return (M, residual) if return_residual else M


def soft_kernel_attention(q_bar: Tensor, q_tilde: Tensor, v: Tensor, *, iters: int = 20, ridge: float = 0.01,
                          symmetric_norm: bool = False, variant: str = "soft", tol: float | None = None,
                          dropout: Callable[[Tensor], Tensor] | None = None,
                          return_residual: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """SOFT / SOFT++ attention output ``(K1 · M) · (K1ᵀ · V)`` without the local value conv.

    Args:
        q_bar: [B, h, n, d] queries scaled by d^(-1/4) (= keys: Q and K are tied).
        q_tilde: [B, h, m, d] landmarks (already scaled/normalised by the sampler).
        v: [B, h, n, d] values.
        iters, ridge, variant, tol: Newton options (see :func:`soft.newton.newton_inverse`).
        symmetric_norm: SOFT++ (D^-½ newton(A) D^-½ with D = diag(A·1)).
        dropout: applied to the token-to-landmark weights K1·M (SOFT forms no n×n attention map to drop from).
        return_residual: also return ‖I - (A + ridge·I) newton(A)‖_F [B, h] (before SOFT++ scaling).

    Returns:
        [B, h, n, d]; or (output, residual [B, h]).
    """
    K1 = gaussian_kernel(q_bar, q_tilde)  # [B, h, n, m]
    # A feeds the inverse: build it in float32 even under autocast (m² d MACs, negligible), where bf16 rounding
    # of |k|² + |k|² - 2k·k would otherwise perturb an already ill-conditioned matrix
    k = q_tilde if q_tilde.dtype in (torch.float32, torch.float64) else q_tilde.float()
    with torch.autocast(device_type=k.device.type, enabled=False):
        A = gaussian_kernel(k, k)  # [B, h, m, m]
        out = soft_middle(A, iters=iters, ridge=ridge, symmetric_norm=symmetric_norm, variant=variant, tol=tol,
                          return_residual=return_residual)
    M, residual = out if return_residual else (out, None)
    left = torch.matmul(K1, M.to(K1.dtype))  # [B, h, n, m]
    if dropout is not None:
        left = dropout(left)
    right = torch.matmul(K1.transpose(-1, -2), v)  # [B, h, m, d]
    o = torch.matmul(left, right.to(left.dtype))  # [B, h, n, d]
    return (o, residual) if return_residual else o
