"""Linear attention with elu+1 features (Katharopoulos et al., "Transformers are RNNs", arXiv 2006.16236).

V′_i = φ(Q_i)ᵀ (Σ_j φ(K_j) V_jᵀ) / (φ(Q_i)ᵀ Σ_j φ(K_j) + eps), φ(x) = elu(x) + 1 (paper eqs. 5–7), in O(N d²).
Checked against idiap/fast-transformers ``LinearAttention``: φ on the raw q and k (no 1/√d), eps = 1e-6 added
to the denominator. (mlpen's LRA "linear" variant drops the denominator; this one keeps it.)
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from baselines._common import FeatureMapAttention, check_hparams, projection_macs

__all__ = ["LinearAttention", "elu_feature_map", "linear_attention", "linear_macs"]


def elu_feature_map(x: Tensor) -> Tensor:
    """φ(x) = elu(x) + 1 > 0."""
    return F.elu(x) + 1


def linear_attention(q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Right-product form φ(Q)(φ(K)ᵀ V) / (φ(Q) Σ_j φ(K_j) + eps).

    Args:
        q, k, v: ``[B, h, N, d]``.
        eps: added to the denominator.

    Returns:
        ``[B, h, N, d]``.
    """
    q_f, k_f = elu_feature_map(q), elu_feature_map(k)
    kv = k_f.transpose(-2, -1) @ v  # φ(K)ᵀ V [B, h, d, d]
    num = q_f @ kv  # [B, h, N, d]
    den = q_f @ k_f.sum(dim=-2).unsqueeze(-1)  # [B, h, N, 1]
    return num / (den + eps)


def linear_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, **hparams) -> int:
    """MACs of one forward: projections + φ(K)ᵀV BhNd² + φ(Q)(·) BhNd² + denominator BhNd = 4BND² + 2BNDd + BND."""
    check_hparams("linear_macs", hparams, ("eps",))
    d = dim // num_heads
    return projection_macs(B, N, dim) + 2 * B * N * dim * d + B * N * dim


class LinearAttention(FeatureMapAttention):
    """Multi-head elu+1 linear attention (non-causal).

    Args:
        dim, num_heads, qkv_bias, proj_drop, device, dtype: as timm's ``Attention``.
        attn_drop: must be 0 (there is no attention matrix to drop).
        eps: added to the denominator (fast-transformers' 1e-6).
    """

    # Read by attnbench's registry (this package never imports it).
    variants = {"linear": dict(complexity="O(N d^2)", description="linear attention, elu+1 features "
                                                                  "(Katharopoulos et al.)")}

    macs = staticmethod(linear_macs)  # the closed-form MACs of one forward

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return linear_attention(q, k, v, eps=self.eps)
