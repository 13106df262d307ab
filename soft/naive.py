"""Slow float64 references for tests and correctness gates: direct differences, explicit n×n Ŝ, exact pinv.

Nothing here is meant to be fast; every function materialises what the fast path avoids.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor

from .grid import resolve_hw

__all__ = ["naive_gaussian_kernel", "naive_soft_attention", "naive_kernel_attention", "naive_soft_attention_layer"]


def naive_gaussian_kernel(q_bar: Tensor, k_bar: Tensor) -> Tensor:
    """exp(-½ Σ_c (q̄_ic - k̄_jc)²) from the explicit difference tensor, in float64.

    Args: q_bar [..., n, d], k_bar [..., m, d]. Returns [..., n, m].
    """
    diff = q_bar.double().unsqueeze(-2) - k_bar.double().unsqueeze(-3)  # [..., n, m, d]
    return torch.exp(-0.5 * diff.pow(2).sum(-1))


def naive_soft_attention(q_bar: Tensor, q_tilde: Tensor, v: Tensor, *, ridge: float = 0.01,
                         symmetric_norm: bool = False) -> Tensor:
    """Ŝ V with Ŝ = K1 M K1ᵀ built explicitly (n×n), M = pinv(A + ridge·I) (SOFT++: D^-½ M D^-½), in float64.

    Args: q_bar [B, h, n, d], q_tilde [B, h, m, d], v [B, h, n, d]. Returns [B, h, n, d] float64.
    """
    K1 = naive_gaussian_kernel(q_bar, q_tilde)  # [B, h, n, m]
    A = naive_gaussian_kernel(q_tilde, q_tilde)  # [B, h, m, m]
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    M = torch.linalg.pinv(A + ridge * eye, hermitian=True)
    if symmetric_norm:
        d = A.sum(-1).rsqrt()
        M = d.unsqueeze(-1) * M * d.unsqueeze(-2)
    S_hat = K1 @ M @ K1.transpose(-1, -2)  # [B, h, n, n]
    return S_hat @ v.double()


def naive_kernel_attention(q_bar: Tensor, v: Tensor) -> Tensor:
    """The exact kernel attention S V, S = exp(-½ dist²(q̄, q̄)) (n×n), in float64. Returns [..., n, d]."""
    return naive_gaussian_kernel(q_bar, q_bar) @ v.double()


def naive_soft_attention_layer(layer: torch.nn.Module, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
    """Replay a :class:`soft.SoftAttention` forward (eval mode, no dropout) in float64 with the naive pieces.

    The layer's own sampler is reused (on a float64 copy) since its LayerNorm/GELU/conv have no simpler form.
    Differentiable with respect to ``x`` (autograd through the exact pinv), for gradient checks.

    Args: x [B, N, C]. Returns [B, N, C] float64.
    """
    ref = copy.deepcopy(layer).double().eval()
    x = x.double()
    B, N, C = x.shape
    hw = resolve_hw(N, hw)
    h, d = ref.num_heads, ref.head_dim
    q = F.linear(x, ref.W_q.weight, ref.W_q.bias).reshape(B, N, h, d).transpose(1, 2)  # [B, h, N, d]
    v = F.linear(x, ref.W_v.weight, ref.W_v.bias).reshape(B, N, h, d).transpose(1, 2)  # [B, h, N, d]
    q_bar = q / d ** 0.25
    q_tilde = ref.sampler(q_bar, hw)  # [B, h, m, d]
    out = naive_soft_attention(q_bar, q_tilde, v, ridge=ref.ridge, symmetric_norm=ref.symmetric_norm)
    if ref.local_conv is not None:
        w = ref.local_conv.conv.weight  # [h, 1, k, k]
        img = v.permute(0, 3, 1, 2).reshape(B * d, h, *hw)  # [B·d, h, H, W]
        local = F.conv2d(img, w, padding=w.shape[-1] // 2, groups=h)  # [B·d, h, H, W]
        out = out + local.reshape(B, d, h, N).permute(0, 2, 3, 1)
    out = out.transpose(1, 2).reshape(B, N, C)
    return F.linear(out, ref.proj.weight, ref.proj.bias)
