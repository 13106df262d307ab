"""Float64 reference forms of every mechanism, written from the papers' definitions, for tests and gates.

Each ``naive_*`` function computes in float64 the *quadratic* (left-product) form: it materialises the N x N (or
N x k) weights and never uses the tricks of the fast path (no stabiliser, no right product, no iterative
pseudo-inverse, segments by ``torch.tensor_split``). Inputs of any dtype are promoted (differentiably); outputs
are float64.
:func:`naive_module_forward` runs a whole module's projections in float64 around one of them.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "naive_softmax_attention", "naive_favor_attention", "naive_linformer_attention", "naive_nystrom_attention",
    "naive_linear_attention", "naive_cosformer_attention", "naive_module_forward",
]


def _f64(*xs: Tensor) -> list[Tensor]:
    return [x.to(torch.float64) for x in xs]  # keeps the graph: references serve gradient checks too


def naive_softmax_attention(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None) -> Tensor:
    """softmax(q kᵀ · scale) v, scale = d^-½ by default. ``[B, h, N, d] -> [B, h, N, d]``."""
    q, k, v = _f64(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v


def naive_favor_attention(q: Tensor, k: Tensor, v: Tensor, projection: Tensor) -> Tensor:
    """Row-normalised φ(Q) φ(K)ᵀ times V with the unstabilised positive features
    φ(x) = m^-½ exp(W x̂ − ‖x̂‖²/2), x̂ = x d^-¼ (Performer Lemma 1); equals FAVOR+ with eps = 0."""
    q, k, v, W = _f64(q, k, v, projection)
    d, m = q.shape[-1], W.shape[0]

    def phi(x: Tensor) -> Tensor:
        x = x * d ** -0.25
        return m ** -0.5 * torch.exp(x @ W.T - (x * x).sum(-1, keepdim=True) / 2)

    A = phi(q) @ phi(k).transpose(-2, -1)  # [B, h, N, N], E[A_ij] = exp(q_i·k_j/√d)
    return (A / A.sum(dim=-1, keepdim=True)) @ v


def naive_linformer_attention(q: Tensor, k: Tensor, v: Tensor, E: Tensor, F_: Tensor, *,
                              scale: float | None = None) -> Tensor:
    """softmax(q (E k)ᵀ · scale) (F v) with E, F ``[k, N]`` applied from the left (Linformer eq. 7)."""
    q, k, v, E, F_ = _f64(q, k, v, E, F_)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return torch.softmax(q @ (E @ k).transpose(-2, -1) * scale, dim=-1) @ (F_ @ v)


def naive_nystrom_attention(q: Tensor, k: Tensor, v: Tensor, num_landmarks: int, *,
                            scale: float | None = None) -> Tensor:
    """Nyström approximation with ``torch.linalg.pinv`` (an SVD) and segments from ``torch.tensor_split``."""
    q, k, v = _f64(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q_l = torch.stack([s.mean(dim=-2) for s in torch.tensor_split(q, num_landmarks, dim=-2)], dim=-2)
    k_l = torch.stack([s.mean(dim=-2) for s in torch.tensor_split(k, num_landmarks, dim=-2)], dim=-2)
    k1 = torch.softmax(q @ k_l.transpose(-2, -1) * scale, dim=-1)
    k2 = torch.softmax(q_l @ k_l.transpose(-2, -1) * scale, dim=-1)
    k3 = torch.softmax(q_l @ k.transpose(-2, -1) * scale, dim=-1)
    return k1 @ torch.linalg.pinv(k2) @ k3 @ v


def naive_linear_attention(q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Quadratic form (A V) / (A 1 + eps), A = φ(Q) φ(K)ᵀ, φ = elu + 1 (Katharopoulos eq. 4)."""
    q, k, v = _f64(q, k, v)
    A = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-2, -1)  # [B, h, N, N]
    return (A @ v) / (A.sum(dim=-1, keepdim=True) + eps)


def naive_cosformer_attention(q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Quadratic form with s_ij = ReLU(q_i)ᵀReLU(k_j) cos(π/2 (i − j)/M), M = N, rows divided by
    max(Σ_j s_ij, eps) (cosFormer eq. 9)."""
    q, k, v = _f64(q, k, v)
    N = q.shape[-2]
    i = torch.arange(1, N + 1, dtype=torch.float64, device=q.device)
    w = torch.cos(math.pi / 2 * (i[:, None] - i[None, :]) / N)  # [N, N]
    S = (F.relu(q) @ F.relu(k).transpose(-2, -1)) * w
    return (S @ v) / S.sum(dim=-1, keepdim=True).clamp_min(eps)


def naive_module_forward(module: torch.nn.Module, x: Tensor,
                         core: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Tensor:
    """A whole attention module in float64: its qkv Linear, ``core(q, k, v)`` per head, its output Linear.

    Args:
        module: a :class:`baselines._common.QKVAttention` (its ``qkv``, ``proj`` and ``num_heads`` are read).
        x: ``[B, N, C]``.
        core: maps float64 ``[B, h, N, d]`` q, k, v to ``[B, h, N, d]``.

    Returns:
        float64 ``[B, N, C]``.
    """
    (x,) = _f64(x)
    B, N, C = x.shape
    h = module.num_heads
    W, b = module.qkv.weight.detach().double(), module.qkv.bias
    qkv = x @ W.T + (0 if b is None else b.detach().double())
    q, k, v = qkv.reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, h, N, d]
    o = core(q, k, v).transpose(1, 2).reshape(B, N, C)
    return o @ module.proj.weight.detach().double().T + module.proj.bias.detach().double()
