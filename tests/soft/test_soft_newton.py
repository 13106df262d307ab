"""Newton–Raphson inverse: accuracy vs pinv, the official SOFT routine, convergence residual, tolerance, backward."""
from __future__ import annotations

import types

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from soft import gaussian_kernel, newton_inverse, newton_residual, newton_schulz
from soft.newton import _NewtonInverse

from soft_helpers import gaussian_points, rel_err, spd_with_condition


def _kernel(spread: float, m: int = 49, batch=(), seed: int = 0) -> torch.Tensor:
    k = gaussian_points(m, 32, spread, batch=batch, seed=seed)
    return gaussian_kernel(k, k)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["fp64", "fp32"])
@pytest.mark.parametrize("spread", [0.25, 0.2], ids=["kappa28", "kappa92"])
def test_matches_pinv_on_well_conditioned_kernels(dtype, tol, spread):
    A = _kernel(spread, batch=(2, 3))
    V = newton_inverse(A.to(dtype), 20, ridge=0.0)
    assert V.dtype == dtype
    assert rel_err("newton vs pinv", V, torch.linalg.pinv(A)) <= tol


def test_code_defaults_match_inverse_of_shifted_matrix():
    A = _kernel(0.2, batch=(4,))  # max row sum ~22: the regime where T = 20 converges
    V, res = newton_inverse(A, return_residual=True)  # ridge 0.01, T = 20
    eye = torch.eye(49, dtype=A.dtype)
    assert rel_err("newton vs inv(A+0.01I)", V, torch.linalg.inv(A + 0.01 * eye)) <= 1e-13
    assert res.max().item() <= 1e-12
    assert newton_residual(A, V, 0.01, ord=2).max().item() <= 1e-13


def test_residual_reports_non_convergence_and_more_iterations_fix_it():
    A = _kernel(0.1)  # kappa ~ 2e3, max row sum ~40
    _, res20 = newton_inverse(A, 20, ridge=0.0, return_residual=True)
    V30, res30 = newton_inverse(A, 30, ridge=0.0, return_residual=True)
    assert res20.item() > 0.1, "T = 20 cannot converge at kappa ~ 2e3; the residual must say so"
    assert res30.item() < 1e-9
    assert rel_err("T=30 vs pinv", V30, torch.linalg.pinv(A)) <= 1e-10


@pytest.mark.parametrize("kappa,iters", [(1e2, 20), (1e3, 30), (1e4, 36)], ids=["k1e2-T20", "k1e3-T30", "k1e4-T36"])
def test_spd_with_negative_entries_converges_with_abs_row_sums(kappa, iters):
    # a signed row sum is no norm bound here; absolute sums keep α valid
    A = spd_with_condition(32, kappa, seed=4)
    assert (A < 0).any()
    V, res = newton_inverse(A, iters, ridge=0.0, return_residual=True)
    assert torch.isfinite(V).all()
    assert res.item() < 1e-8
    assert rel_err("newton vs inv", V, torch.linalg.inv(A)) <= 1e-8


def test_gradcheck_custom_backward():
    A = _kernel(0.3, m=6, batch=(2,)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: newton_inverse(a, 30, ridge=0.01), (A,))


def test_custom_backward_equals_analytic_inverse_gradient():
    A = _kernel(0.2, batch=(2,))
    G = torch.randn(2, 49, 49, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a1 = A.clone().requires_grad_(True)
    (newton_inverse(a1, 20, ridge=0.01) * G).sum().backward()
    a2 = A.clone().requires_grad_(True)
    (torch.linalg.inv(a2 + 0.01 * torch.eye(49, dtype=A.dtype)) * G).sum().backward()
    assert rel_err("custom vs analytic grad", a1.grad, a2.grad) <= 1e-12


def test_custom_backward_matches_unrolled_iteration_at_convergence():
    A = _kernel(0.25, m=12, batch=(2,))
    G = torch.randn(2, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a1 = A.clone().requires_grad_(True)
    (newton_inverse(a1, 25, ridge=0.0) * G).sum().backward()
    a2 = A.clone().requires_grad_(True)
    (newton_schulz(a2, 25) * G).sum().backward()  # autograd through all 25 steps (α depends on A)
    assert rel_err("custom vs unrolled grad", a1.grad, a2.grad) <= 1e-8


def test_backward_keeps_only_m_squared_state():
    A = _kernel(0.2, batch=(3,)).requires_grad_(True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        newton_inverse(A, 20)
    assert sum(saved) == A.numel(), f"saved {saved}; expected only V ({A.numel()} elements), not one per iteration"
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        saved.clear()
        newton_schulz(A, 20)
    assert sum(saved) > 20 * A.numel()  # what autograd through the iterations would keep


def test_no_grad_input_and_backward_returns_none():
    A = _kernel(0.2)
    assert not newton_inverse(A).requires_grad
    w = torch.ones(49, 49, dtype=A.dtype, requires_grad=True)
    (newton_inverse(A) * w).sum().backward()  # graph needs grad, A does not
    assert torch.allclose(w.grad, newton_inverse(A))
    ctx = types.SimpleNamespace(needs_input_grad=(False,) * 5, saved_tensors=(A,))
    assert _NewtonInverse.backward(ctx, torch.ones_like(A), None)[0] is None


def test_bf16_autocast_inverts_in_float32():
    A = _kernel(0.2, batch=(2,)).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        V = newton_inverse(A.bfloat16())
    assert V.dtype == torch.float32
    ref = newton_inverse(A.bfloat16().float())
    assert rel_err("autocast vs fp32", V, ref) <= 1e-6


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_input_raises(bad):
    A = _kernel(0.2)
    A[3, 4] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        newton_inverse(A)


@pytest.mark.parametrize("kwargs,match", [
    (dict(A=torch.ones(3, 4)), "square"),
    (dict(A=torch.eye(3), iters=-1), "iters"),
    (dict(A=torch.eye(3), ridge=-0.1), "ridge"),
    (dict(A=torch.eye(3), alpha_scale=1.5), "alpha_scale"),
    (dict(A=torch.eye(3), variant="nystrom"), "accepted: soft, soft-norm"),
    (dict(A=torch.eye(3), tol=0.0), "newton_tol must be a positive finite number"),
    (dict(A=torch.eye(3), tol=float("nan")), "newton_tol must be a positive finite number"),
    (dict(A=torch.eye(3), tol=float("inf")), "newton_tol must be a positive finite number"),
    (dict(A=torch.eye(3), tol="1e-3"), "newton_tol must be a positive finite number"),
], ids=["non-square", "neg-iters", "neg-ridge", "alpha", "variant", "tol-0", "tol-nan", "tol-inf", "tol-str"])
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        newton_inverse(**kwargs)


def _official_soft_newton(mat: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """SOFT's published routine, re-derived in float64: α = 0.9·2/(max row sum of A)² per matrix from the
    unshifted A, P = A + 0.01 I, V₀ = α P, then V <- 2V - V P V."""
    alpha = 0.9 * 2 / mat.sum(-1).amax(-1) ** 2
    P = mat + 0.01 * torch.eye(mat.shape[-1], dtype=mat.dtype)
    V = alpha[..., None, None] * P
    for _ in range(iters):
        V = 2 * V - V @ P @ V
    return V


@pytest.mark.parametrize("spread", [0.25, 0.1], ids=["converged", "unconverged"])
def test_soft_variant_is_the_official_routine(spread):
    # the start value is the official 1.8/rowsum(A)², not 1.8/(rowsum + ridge)²: equal even where 20 steps stop
    # far from the inverse, so the comparison also pins the start value
    A = _kernel(spread, batch=(3,), seed=2)
    V, res = newton_inverse(A, return_residual=True)
    assert rel_err("soft variant vs official", V, _official_soft_newton(A)) <= 1e-12
    assert (res.max().item() < 1e-8) == (spread == 0.25)


def test_alpha_cap_keeps_a_large_ridge_convergent():
    # ‖A‖ = 0.1 and ridge 1: the official α (from A alone) would overshoot P = A + I; the cap bounds P instead
    A = 0.1 * spd_with_condition(16, 10.0, seed=3)
    V, res = newton_inverse(A, 30, ridge=1.0, return_residual=True)
    assert res.item() < 1e-10
    assert rel_err("capped α vs inv", V, torch.linalg.inv(A + torch.eye(16, dtype=A.dtype))) <= 1e-10


def test_tol_stops_early_when_converged_and_reports_a_free_residual():
    A = _kernel(0.25, batch=(2,))  # converges well within 20 steps
    V_tol, res_tol = newton_inverse(A, 20, tol=1e-6, return_residual=True)
    assert res_tol.max().item() <= 1e-6
    V_all, res_all = newton_inverse(A, 20, return_residual=True)
    assert res_all.max().item() < res_tol.max().item()  # the fixed 20 steps went further
    assert rel_err("tol vs 20 steps", V_tol, V_all) <= 1e-5
    with FlopCounterMode(display=False) as fc:
        newton_inverse(A, 20, tol=1e-6, return_residual=True)
    assert fc.get_total_flops() < 2 * (2 * 20 * 2 * 49 ** 3)  # fewer than 20 fixed steps (2 m³ MACs each, 2 matrices)


@pytest.mark.parametrize("variant", ["soft", "soft-norm"])
def test_tol_with_a_higher_cap_converges_where_twenty_steps_do_not(variant):
    A = _kernel(0.1, batch=(2,))  # kappa ~ 2e3
    _, res20 = newton_inverse(A, 20, ridge=0.0, variant=variant, return_residual=True)
    V, res = newton_inverse(A, 60, ridge=0.0, variant=variant, tol=1e-8, return_residual=True)
    assert res20.max().item() > 0.1 and res.max().item() <= 1e-8
    assert rel_err("tol vs pinv", V, torch.linalg.pinv(A)) <= 1e-8
    _, capped = newton_inverse(A, 20, ridge=0.0, variant=variant, tol=1e-8, return_residual=True)
    assert capped.max().item() > 0.1  # the cap wins: the residual says it did not converge


def test_tol_keeps_the_closed_form_backward():
    A = _kernel(0.2, batch=(2,))
    G = torch.randn(2, 49, 49, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a1 = A.clone().requires_grad_(True)
    (newton_inverse(a1, 40, tol=1e-12) * G).sum().backward()
    a2 = A.clone().requires_grad_(True)
    (torch.linalg.inv(a2 + 0.01 * torch.eye(49, dtype=A.dtype)) * G).sum().backward()
    assert rel_err("tol grad vs analytic", a1.grad, a2.grad) <= 1e-10
