"""SOFT++: symmetric normalisation, and the official SOFT-Norm routine re-derived in float64."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from soft import SoftAttention, gaussian_kernel, newton_residual, soft_kernel_attention, soft_middle
from soft_helpers import gaussian_points, rel_err


def official_soft_norm_newton(mat: torch.Tensor, max_iter: int = 20) -> tuple[torch.Tensor, int]:
    """SOFT-Norm's published Newton routine, re-derived as a plain loop: one α for the whole tensor from the
    largest row sum, halved while the largest column sum of |I - P V₀| exceeds 1.01 (at most 10 times), no ridge,
    autograd through every step. Returns (V, number of halvings)."""
    P = mat
    eye = torch.eye(mat.shape[-1], dtype=mat.dtype)
    alpha = 2 / torch.max(torch.sum(mat, dim=-1)) ** 2
    V = alpha * P
    pnorm = torch.max(torch.sum(torch.abs(eye - P @ V), dim=-2))
    halvings = 0
    while pnorm > 1.01 and halvings < 10:
        alpha = alpha * 0.5
        V = alpha * P
        pnorm = torch.max(torch.sum(torch.abs(eye - P @ V), dim=-2))
        halvings += 1
    for _ in range(max_iter):
        V = 2 * V - V @ P @ V
    return V, halvings


def official_soft_norm_middle(A: torch.Tensor) -> torch.Tensor:
    d = 1 / A.sum(-1, keepdim=True).sqrt()  # [..., m, 1]
    return d * official_soft_norm_newton(A)[0] * d.transpose(-1, -2)


def official_soft_norm_layer(layer: SoftAttention, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """The official SOFT-Norm attention forward (W_q/W_v, conv landmarks, kernels, D^-½ newton(A) D^-½, value
    conv, output projection), written out with ``layer``'s weights (a float64 layer: gradients reach them)."""
    ref = layer
    (B, N, C), (H, W) = x.shape, hw
    h, d = ref.num_heads, ref.head_dim
    Q = ref.W_q(x).reshape(B, N, h, d).transpose(1, 2) / math.sqrt(math.sqrt(d))
    V = ref.W_v(x).reshape(B, N, h, d).transpose(1, 2)
    L = ref.sampler.conv(Q.reshape(B * h, H, W, d).permute(0, 3, 1, 2))
    L = F.gelu(ref.sampler.norm(L.flatten(2).transpose(1, 2).reshape(B, h, -1, d)))

    def sqdist(a, b):
        return (a ** 2).sum(-1, keepdim=True) + (b ** 2).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2)

    k1, k2 = torch.exp(-sqdist(Q, L) / 2), torch.exp(-sqdist(L, L) / 2)
    X = (k1 @ official_soft_norm_middle(k2)) @ (k1.transpose(-1, -2) @ V)
    img = V.reshape(B, h, H, W, d).permute(0, 4, 1, 2, 3).reshape(B * d, h, H, W)
    w = ref.local_conv.conv.weight
    X = X + F.conv2d(img, w, padding=w.shape[-1] // 2, groups=h).reshape(B, d, h, H, W).flatten(3).permute(0, 2, 3, 1)
    return ref.proj(X.transpose(1, 2).reshape(B, N, C))


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


@pytest.mark.parametrize("spread,converged", [(0.3, True), (0.1, False)], ids=["kappa-small", "clustered"])
def test_soft_plus_default_equals_official_soft_norm(spread, converged):
    k = gaussian_points(49, 32, spread, batch=(2, 3), seed=4)
    A = gaussian_kernel(k, k)
    M, res = soft_middle(A, iters=20, ridge=0.0, symmetric_norm=True, variant="soft-norm", return_residual=True)
    want = official_soft_norm_middle(A)
    assert rel_err("SOFT++ vs official SOFT-Norm", M, want) <= 1e-12
    assert official_soft_norm_newton(A)[1] > 0, "the halving rule was not exercised"
    assert (res.max().item() < 1e-6) == converged  # the comparison holds whether or not 20 steps converge


def test_soft_plus_gradient_equals_autograd_through_official_soft_norm():
    k = gaussian_points(20, 32, 0.15, batch=(2, 2), seed=6)
    A = gaussian_kernel(k, k)
    G = torch.randn(A.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a1, a2 = A.clone().requires_grad_(True), A.clone().requires_grad_(True)
    (soft_middle(a1, ridge=0.0, symmetric_norm=True, variant="soft-norm") * G).sum().backward()
    (official_soft_norm_middle(a2) * G).sum().backward()
    assert rel_err("SOFT++ dA vs official autograd", a1.grad, a2.grad) <= 1e-10


def _soft_plus_layer(**kw) -> SoftAttention:
    torch.manual_seed(0)
    layer = SoftAttention(64, 2, symmetric_norm=True, sampler="conv", sr_ratio=4, conv_kernel=5, **kw).double()
    for p in layer.sampler.norm.parameters():  # a non-trivial LayerNorm so that the landmarks are not all alike
        torch.nn.init.normal_(p, std=0.5)
    return layer


def test_soft_plus_layer_defaults_are_official_forward_and_backward():
    layer = _soft_plus_layer()
    assert (layer.newton_variant, layer.ridge) == ("soft-norm", 0.0)
    x = torch.randn(2, 16 * 16, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = layer(x, hw=(16, 16))
    want = official_soft_norm_layer(layer, x, (16, 16))
    assert rel_err("SOFT++ layer vs official", out, want) <= 1e-10
    ref = copy.deepcopy(layer)
    out.pow(2).sum().backward()
    official_soft_norm_layer(ref, x, (16, 16)).pow(2).sum().backward()
    for (name, p), q in zip(layer.named_parameters(), ref.parameters()):
        assert rel_err(f"d{name}", p.grad, q.grad) <= 1e-8


def test_project_variant_stays_available_and_differs():
    official, project = _soft_plus_layer(), _soft_plus_layer(newton_variant="soft")
    assert (project.newton_variant, project.ridge) == ("soft", 0.01)
    x = torch.randn(1, 16 * 16, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert rel_err("project vs official SOFT++", project(x), official(x)) > 1e-6  # the ridge alone moves it


def test_global_start_value_couples_unconverged_samples():
    # one α for the batch: a clustered sample lowers α for a well-spread one; harmless once both converge
    spread = gaussian_points(49, 32, 0.3, batch=(1,), seed=1)
    clustered = gaussian_points(49, 32, 0.05, batch=(1,), seed=2)
    A = gaussian_kernel(*(torch.cat([spread, clustered]),) * 2)
    alone = soft_middle(A[:1], ridge=0.0, variant="soft-norm", iters=8)
    together = soft_middle(A, ridge=0.0, variant="soft-norm", iters=8)[:1]
    assert rel_err("sample alone vs with a clustered one", together, alone) > 1e-3
    assert newton_residual(A[:1], soft_middle(A[:1], ridge=0.0, variant="soft-norm", iters=40)).item() < 1e-8
