"""Newton–Raphson (Newton–Schulz) Moore–Penrose inverse with a closed-form backward.

SOFT (arXiv 2110.11945, Alg. 1; arXiv 2207.03341 §3.3; reference ``SOFT/kernel/inverse.py`` of fudan-zvg/SOFT
@ bb0eec0) inverts the m×m landmark kernel with V_{k+1} = 2 V_k - V_k P V_k, P = A + ridge·I. The error
E = I - V P squares every step, so per eigenvalue μ of P the start error 1 - αμ² must reach ~0 in T squarings:
20 steps invert directions with αμ² ≳ 2⁻²⁰, i.e. condition numbers up to ~100; more need more iterations, and
:func:`newton_residual` reports whether it converged.

Choices (defaults = the current official code unless said):

* ``iters = 20`` and ``ridge = 0.01``: official. The ridge makes the result (A + 0.01 I)⁻¹, not A†.
* α = ``alpha_scale`` · 2 / (‖P‖₁ ‖P‖_∞) per matrix, ``alpha_scale = 0.9``. For the symmetric, entrywise
  non-negative Gaussian kernel this is the official 1.8 / (max row sum)², except that we bound the matrix actually
  inverted (P, with the ridge) instead of A, and use *absolute* sums: a signed row sum is a valid norm bound only
  for non-negative matrices and diverges on SPD matrices with negative entries.
* V₀ = α Pᵀ (= α P for symmetric P), which converges to P† for any P (Ben-Israel & Cohen 1966).
* The iterations run without an autograd graph; the backward is the inverse-matrix derivative -Vᵀ G Vᵀ once
  (arXiv 2207.03341, reference commit bb0eec0), keeping only V (m² per matrix) instead of T copies.
* The inverse always runs in float32 or float64: half/bfloat16 input (autocast) is promoted to float32 and
  autocast is disabled inside, because the squared-error iteration stalls at the input's machine epsilon.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["newton_inverse", "newton_residual", "newton_schulz", "newton_alpha"]


def newton_alpha(P: Tensor, alpha_scale: float = 0.9) -> Tensor:
    """Initial scaling α = alpha_scale · 2 / (‖P‖₁ ‖P‖_∞) per matrix; ‖P‖₂² ≤ ‖P‖₁‖P‖_∞ makes α σ_max² < 2.

    Args:
        P: [..., m, m]

    Returns:
        [..., 1, 1]
    """
    absP = P.abs()
    norm_inf = absP.sum(-1).amax(-1)  # max absolute row sum, [...]
    norm_one = absP.sum(-2).amax(-1)  # max absolute column sum, [...]
    return (2.0 * alpha_scale / (norm_one * norm_inf))[..., None, None]


def newton_schulz(P: Tensor, iters: int, alpha_scale: float = 0.9) -> Tensor:
    """The plain iteration V_{k+1} = 2V_k - V_k P V_k from V₀ = α Pᵀ (differentiable if autograd is on).

    Args:
        P: [..., m, m] the matrix to invert (ridge already added).
        iters: number of Newton steps T (2 m³ MACs each).

    Returns:
        [..., m, m] ≈ P†.
    """
    V = newton_alpha(P, alpha_scale) * P.transpose(-1, -2)
    for _ in range(iters):
        V = 2 * V - torch.matmul(torch.matmul(V, P), V)
    return V


def _shift(A: Tensor, ridge: float) -> Tensor:
    if ridge == 0:
        return A
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return A + ridge * eye


class _NewtonInverse(torch.autograd.Function):
    """Newton iterations in forward (no graph), ∂L/∂A = -Vᵀ G Vᵀ in backward (exact at convergence)."""

    @staticmethod
    def forward(ctx, A: Tensor, iters: int, ridge: float, alpha_scale: float) -> Tensor:  # type: ignore[override]
        with torch.no_grad():
            V = newton_schulz(_shift(A, ridge), iters, alpha_scale)
        ctx.save_for_backward(V)  # O(m²) state: the gradient needs only V, not the T iterates
        return V

    @staticmethod
    def backward(ctx, G: Tensor):  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        (V,) = ctx.saved_tensors
        # backward may run inside the caller's autocast region: keep the m×m products in V's precision
        with torch.autocast(device_type=V.device.type, enabled=False):
            Vt = V.transpose(-1, -2)
            grad_A = -torch.matmul(torch.matmul(Vt, G.to(V.dtype)), Vt)  # d(P⁻¹) = -P⁻¹ dP P⁻¹, dP = dA
        return grad_A, None, None, None


def _all_finite(A: Tensor) -> bool:
    with torch.no_grad():  # isfinite is composite (abs): without no_grad it would save A for a backward
        return bool(torch.isfinite(A).all())


def newton_inverse(A: Tensor, iters: int = 20, ridge: float = 0.01, *, alpha_scale: float = 0.9,
                   return_residual: bool = False, check_finite: bool = True) -> Tensor | tuple[Tensor, Tensor]:
    """Approximate (A + ridge·I)† with T Newton–Schulz steps and a closed-form backward.

    Args:
        A: [..., m, m] matrices (SOFT: the landmark kernel, symmetric and positive). half/bfloat16 input is
            computed in float32 (autocast is disabled inside); the result is then float32.
        iters: number of Newton steps T (default 20, as the official code).
        ridge: shift added to the diagonal before inverting (default 0.01, as the official code; 0 = plain A†).
        alpha_scale: α = alpha_scale · 2 / (‖P‖₁‖P‖_∞); must lie in (0, 1] for guaranteed convergence.
        return_residual: also return ‖I - (A + ridge·I) V‖_F per matrix (no grad, one extra m³ matmul) so
            callers can see whether T steps were enough.
        check_finite: raise on NaN/inf in A. Costs one reduction over the small m×m input (a device sync on
            CUDA); skipped while tracing.

    Returns:
        V: [..., m, m] in float32/float64; or (V, residual [...]) with ``return_residual=True``.

    Raises:
        ValueError: A is not a (batch of) square matrices, has non-finite entries, or iters/ridge are invalid.
    """
    if A.dim() < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"newton_inverse expects square matrices [..., m, m], got shape {tuple(A.shape)}")
    if not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be a non-negative int, got {iters!r}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    if not 0 < alpha_scale <= 1:
        raise ValueError(f"alpha_scale must lie in (0, 1], got {alpha_scale}")
    tracing = torch.jit.is_tracing()
    if check_finite and not tracing and not _all_finite(A):
        raise ValueError("newton_inverse got a matrix with NaN or inf entries; the landmark kernel is not finite "
                         "(check the inputs / learning rate upstream)")
    if A.dtype not in (torch.float32, torch.float64):
        A = A.float()
    with torch.autocast(device_type=A.device.type, enabled=False):
        if tracing:
            # torch.jit.trace (fvcore) records a custom Function as one opaque prim::PythonOp and drops its
            # matmuls from the FLOP count; trace the identical plain iteration instead.
            V = newton_schulz(_shift(A, ridge), iters, alpha_scale)
        else:
            V = _NewtonInverse.apply(A, iters, float(ridge), float(alpha_scale))
        if not return_residual:
            return V
        with torch.no_grad():
            residual = newton_residual(A, V, ridge)
    return V, residual


def newton_residual(A: Tensor, V: Tensor, ridge: float = 0.0, ord: str | float = "fro") -> Tensor:
    """Convergence check ‖I - (A + ridge·I) V‖ per matrix (Frobenius by default, an upper bound of the 2-norm).

    Near 0 means V is the inverse; ≳ 1e-3 means T steps were not enough for this conditioning.

    Args:
        A: [..., m, m]; V: [..., m, m] from :func:`newton_inverse` with the same ``ridge``.
        ord: any ``torch.linalg.matrix_norm`` order (2 = spectral norm, costs an SVD).

    Returns:
        [...] residual norms.
    """
    P = _shift(A.to(V.dtype), ridge)
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    return torch.linalg.matrix_norm(eye - torch.matmul(P, V), ord=ord)
