"""Newton–Raphson (Newton–Schulz) inverse of SOFT's landmark kernel, in the two forms of the official code.

The iteration is V_{k+1} = 2 V_k - V_k P V_k with P = A + ridge·I. Its error E_k = I - P V_k squares every step
(E_{k+1} = E_k²), so per eigenvalue μ of P the start error 1 - αμ² must reach ~0 in T squarings: T = 20 steps
invert the directions with αμ² ≳ 2⁻²⁰, i.e. condition numbers up to ~100 (more need more steps), and
:func:`newton_residual` ‖I - P V‖_F says whether it converged. docs/methods.md has the derivation and the limits.

``variant`` picks one of the two routines of fudan-zvg/SOFT (bb0eec0 / d3febc3):

* ``"soft"``: SOFT's ``newton_inv`` (``SOFT/kernel/inverse.py`` with its autograd Function). One α per matrix,
  α = alpha_scale · 2 / (‖A‖₁‖A‖_∞) from the *unshifted* A (= the official 1.8 / (max row sum of A)² for the
  symmetric non-negative Gaussian kernel; absolute sums, because a signed row sum bounds no norm on a matrix with
  negative entries), V₀ = α Pᵀ, official ridge 0.01. The iterations run without an autograd graph and the backward
  is the inverse-matrix derivative -Vᵀ G Vᵀ once, keeping only V (m² per matrix) instead of T iterates.
* ``"soft-norm"``: SOFT-Norm's ``newton_inv`` (the SOFT++ kernel in ``models/softmax_free_transformer.py``).
  One α for the whole batch, 2 / (max row sum over every matrix)², halved while max column sum of |I - P V₀|
  exceeds 1.01 (at most 10 times); no ridge in the official code; autograd through the T iterations (α included).
  The global α makes a sample's start value depend on the rest of the batch (its converged result does not).

Beyond the official code: ``tol`` iterates until max ‖I - P V‖_F <= tol (``iters`` is then the cap), and half or
bfloat16 input is inverted in float32 with autocast off, because the squared-error iteration stalls at the input's
machine epsilon.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["NEWTON_VARIANTS", "newton_inverse", "newton_residual", "newton_schulz", "newton_alpha",
           "newton_alpha_global"]

NEWTON_VARIANTS = ("soft", "soft-norm")
_HALVINGS, _HALVING_BOUND = 10, 1.01  # SOFT-Norm's start-value rule


def _norm_bound(A: Tensor) -> Tensor:
    """‖A‖₁‖A‖_∞ per matrix (absolute column and row sums), an upper bound of σ_max(A)². Returns [...]."""
    absA = A.abs()
    return absA.sum(-2).amax(-1) * absA.sum(-1).amax(-1)


def newton_alpha(A: Tensor, alpha_scale: float = 0.9, ridge: float = 0.0) -> Tensor:
    """SOFT's start scale per matrix: α = alpha_scale · 2 / (‖A‖₁‖A‖_∞), from A without the ridge.

    Newton–Schulz from V₀ = α Pᵀ converges iff 0 < α σ_max(P)² < 2. The official α bounds A, not P = A + ridge·I,
    so it is capped at 1.99 / (√(‖A‖₁‖A‖_∞) + ridge)², a bound for P. The cap binds only when ridge exceeds
    ~5 % of ‖A‖ (never for a Gaussian kernel, whose diagonal is 1, with the official ridge 0.01).

    Args:
        A: [..., m, m] (ridge not added).

    Returns:
        [..., 1, 1]
    """
    bound = _norm_bound(A)
    alpha = 2.0 * alpha_scale / bound
    if ridge:
        alpha = torch.minimum(alpha, 1.99 / (bound.sqrt() + ridge) ** 2)
    return alpha[..., None, None]


def newton_alpha_global(A: Tensor, P: Tensor | None = None) -> Tensor:
    """SOFT-Norm's start scale: one α = 2 / (max row sum over all matrices)², halved while ‖I - α P P‖₁ > 1.01.

    Meant for symmetric kernels (V₀ = α P). The official loop recomputes I - P V₀ after each halving (up to 10);
    here P P is formed once (m³ MACs per matrix) and the 11 candidate scales are tested elementwise, which picks
    the same α without a host sync. For an entrywise non-negative A the rule stops after at most 8 halvings
    (‖I - α A²‖₁ <= 1 + α ‖A‖_∞², so α <= 2⁻⁸ · 2/‖A‖_∞² passes); the 10-halving cap never binds.
    The halving count is not differentiated (a comparison); α itself is, through the max, as in the official code.

    Args:
        A: [..., m, m], the kernel (row sums taken on |A|, equal to the official signed sums for A >= 0).
        P: the matrix to invert (A + ridge·I); None means A.

    Returns:
        a tensor of shape [1, ..., 1] (one α for every matrix).
    """
    P = A if P is None else P
    alpha = 2.0 / A.abs().sum(-1).amax() ** 2
    with torch.no_grad():
        PP = torch.matmul(P, P)  # P V₀ / α
        eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
        scales = 0.5 ** torch.arange(_HALVINGS + 1, dtype=P.dtype, device=P.device)  # [11]
        # max over all matrices of the max column sum of |I - α_k P P|, for each candidate α_k
        pnorm = torch.stack([(eye - (alpha * s) * PP).abs().sum(-2).amax() for s in scales])  # [11]
        bad = (pnorm > _HALVING_BOUND)[:_HALVINGS]
        halvings = torch.cumprod(bad.to(torch.int64), 0).sum()  # leading failures, at most 10
    return (alpha * 0.5 ** halvings.to(alpha.dtype)).reshape([1] * A.dim())


def _start(A: Tensor, P: Tensor, variant: str, alpha_scale: float, ridge: float) -> Tensor:
    """V₀ with the variant's α: α Pᵀ for ``"soft"`` (converges for any P); α P for ``"soft-norm"``, as published,
    so that autograd through it gives the official gradient entry by entry (the same value for symmetric P)."""
    if variant == "soft":
        return newton_alpha(A, alpha_scale, ridge) * P.transpose(-1, -2)
    return newton_alpha_global(A, P) * P


def _iterate(P: Tensor, V: Tensor, iters: int, tol: float | None) -> tuple[Tensor, Tensor | None]:
    """T Newton steps; with ``tol``, stop once max ‖I - P V‖_F <= tol. Returns (V, residual of V or None)."""
    if tol is None:
        for _ in range(iters):
            V = 2 * V - torch.matmul(torch.matmul(V, P), V)  # the official form
        return V, None
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    for _ in range(iters):
        E = eye - torch.matmul(P, V)  # the residual comes with the step: V (2I - P V) = V + V E
        residual = torch.linalg.matrix_norm(E.detach())
        if residual.max() <= tol:  # one host sync per step
            return V, residual
        V = V + torch.matmul(V, E)
    return V, None


def newton_schulz(P: Tensor, iters: int, alpha_scale: float = 0.9) -> Tensor:
    """The plain iteration from V₀ = α Pᵀ, α = alpha_scale·2/(‖P‖₁‖P‖_∞) (differentiable if autograd is on).

    Args:
        P: [..., m, m] the matrix to invert (ridge already added).
        iters: number of Newton steps T (2 m³ MACs each).

    Returns:
        [..., m, m] ≈ P†.
    """
    return _iterate(P, _start(P, P, "soft", alpha_scale, 0.0), iters, None)[0]


def _shift(A: Tensor, ridge: float) -> Tensor:
    if ridge == 0:
        return A
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return A + ridge * eye


class _NewtonInverse(torch.autograd.Function):
    """SOFT's form: Newton iterations in forward (no graph), ∂L/∂A = -Vᵀ G Vᵀ in backward (exact at convergence).

    Returns (V, residual); the residual is empty unless ``tol`` stopped the iteration (then it is free).
    """

    @staticmethod
    def forward(ctx, A: Tensor, iters: int, ridge: float, alpha_scale: float,  # type: ignore[override]
                tol: float | None) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            P = _shift(A, ridge)
            V, residual = _iterate(P, _start(A, P, "soft", alpha_scale, ridge), iters, tol)
        ctx.save_for_backward(V)  # O(m²) state: the gradient needs only V, not the T iterates
        residual = residual if residual is not None else V.new_empty(0)
        ctx.mark_non_differentiable(residual)
        return V, residual

    @staticmethod
    def backward(ctx, G: Tensor, _g_residual: Tensor):  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        (V,) = ctx.saved_tensors
        # backward may run inside the caller's autocast region: keep the m×m products in V's precision
        with torch.autocast(device_type=V.device.type, enabled=False):
            Vt = V.transpose(-1, -2)
            grad_A = -torch.matmul(torch.matmul(Vt, G.to(V.dtype)), Vt)  # d(P⁻¹) = -P⁻¹ dP P⁻¹, dP = dA
        return grad_A, None, None, None, None


def _all_finite(A: Tensor) -> bool:
    with torch.no_grad():  # isfinite is composite (abs): without no_grad it would save A for a backward
        return bool(torch.isfinite(A).all())


def check_newton_options(iters: int, ridge: float, variant: str, tol: float | None, alpha_scale: float = 0.9) -> None:
    """Raise a one-line ValueError naming what is accepted for an invalid Newton option."""
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be a non-negative int, got {iters!r}")
    if not isinstance(ridge, (int, float)) or isinstance(ridge, bool) or not ridge >= 0 or not math.isfinite(ridge):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    if variant not in NEWTON_VARIANTS:
        raise ValueError(f"unknown Newton variant {variant!r}; accepted: {', '.join(NEWTON_VARIANTS)}")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol)
                            or tol <= 0):
        raise ValueError(f"newton_tol must be a positive finite number or None, got {tol!r}")
    if not 0 < alpha_scale <= 1:
        raise ValueError(f"alpha_scale must lie in (0, 1], got {alpha_scale}")


def newton_inverse(A: Tensor, iters: int = 20, ridge: float = 0.01, *, variant: str = "soft",
                   alpha_scale: float = 0.9, tol: float | None = None, return_residual: bool = False,
                   check_finite: bool = True) -> Tensor | tuple[Tensor, Tensor]:
    """Approximate (A + ridge·I)† with Newton–Schulz steps, in SOFT's (default) or SOFT-Norm's form.

    Args:
        A: [..., m, m] matrices (SOFT: the landmark kernel, symmetric and positive). half/bfloat16 input is
            computed in float32 (autocast is disabled inside); the result is then float32.
        iters: number of Newton steps T (default 20, as the official code); with ``tol``, the most steps.
        ridge: shift added to the diagonal before inverting (SOFT's official 0.01; SOFT-Norm's official 0).
        variant: ``"soft"`` (per-matrix α, closed-form backward) or ``"soft-norm"`` (global α with the halving
            rule, autograd through the steps); see the module docstring.
        alpha_scale: ``"soft"`` only: α = alpha_scale · 2 / (‖A‖₁‖A‖_∞), in (0, 1] (official 0.9).
        tol: stop once max ‖I - P V‖_F over all matrices is <= tol (one host sync per step; the steps cost
            2 m³ MACs as before), at most ``iters`` steps. None: exactly ``iters`` steps.
        return_residual: also return ‖I - (A + ridge·I) V‖_F per matrix (no grad; one extra m³ matmul unless
            ``tol`` stopped the iteration, whose last residual is reused).
        check_finite: raise on NaN/inf in A. Costs one reduction over the small m×m input (a device sync on
            CUDA); skipped while tracing.

    Returns:
        V: [..., m, m] in float32/float64; or (V, residual [...]) with ``return_residual=True``.

    Raises:
        ValueError: A is not a (batch of) square matrices, has non-finite entries, or an option is invalid.
    """
    if A.dim() < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"newton_inverse expects square matrices [..., m, m], got shape {tuple(A.shape)}")
    check_newton_options(iters, ridge, variant, tol, alpha_scale)
    tracing = torch.jit.is_tracing()
    if check_finite and not tracing and not _all_finite(A):
        raise ValueError("newton_inverse got a matrix with NaN or inf entries; the landmark kernel is not finite "
                         "(check the inputs / learning rate upstream)")
    if A.dtype not in (torch.float32, torch.float64):
        A = A.float()
    ridge = float(ridge)
    with torch.autocast(device_type=A.device.type, enabled=False):
        if variant == "soft" and not tracing:
            V, residual = _NewtonInverse.apply(A, iters, ridge, float(alpha_scale), tol)
            residual = residual if residual.numel() else None
        else:
            # SOFT-Norm differentiates through the steps; and torch.jit.trace (fvcore) records a custom Function
            # as one opaque prim::PythonOp and drops its matmuls from the FLOP count, so trace the plain steps
            P = _shift(A, ridge)
            V, residual = _iterate(P, _start(A, P, variant, alpha_scale, ridge), iters, tol)
        if not return_residual:
            return V
        if residual is None:
            with torch.no_grad():
                residual = newton_residual(A, V, ridge)
    return V, residual


def newton_residual(A: Tensor, V: Tensor, ridge: float = 0.0, ord: str | float = "fro") -> Tensor:
    """Convergence check ‖I - (A + ridge·I) V‖ per matrix (Frobenius by default, an upper bound of the 2-norm).

    Near 0 means V is the inverse; above ~1e-2 the result is not one (see docs/methods.md for the threshold).

    Args:
        A: [..., m, m]; V: [..., m, m] from :func:`newton_inverse` with the same ``ridge``.
        ord: any ``torch.linalg.matrix_norm`` order (2 = spectral norm, costs an SVD).

    Returns:
        [...] residual norms.
    """
    P = _shift(A.to(V.dtype), ridge)
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    return torch.linalg.matrix_norm(eye - torch.matmul(P, V), ord=ord)
