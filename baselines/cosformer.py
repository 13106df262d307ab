"""cosFormer (Qin et al., ICLR 2022, arXiv 2202.08791): ReLU features with a cos re-weighting, linear in N.

s(q_i, k_j) = ReLU(q_i)ᵀ ReLU(k_j) · cos(π/2 · (i − j) / M) (paper eq. 9), which the identity
cos(a − b) = cos a cos b + sin a sin b splits into 2d-wide features
[ReLU(x_i) sin(π i / 2M), ReLU(x_i) cos(π i / 2M)] (eq. 10), so the output is a linear attention over them.
Checked against OpenNLPLab/cosFormer ``cosformer.py``: indices i = 1..M, M = N (self-attention), no 1/√d, the
denominator clamped below at eps = 1e-6. For images i is the raster index, so the locality bias follows rows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines._common import FeatureMapAttention, check_hparams, projection_macs

__all__ = ["CosformerAttention", "position_angles", "cos_reweighted_features", "cosformer_attention", "cosformer_macs"]


def position_angles(N: int, *, device=None, dtype=None) -> Tensor:
    """π i / (2M) for i = 1..M, M = N (official code), shaped ``[N, 1]`` to broadcast over d."""
    i = torch.arange(1, N + 1, device=device, dtype=dtype)
    return (math.pi / 2 * i / N).unsqueeze(-1)


def cos_reweighted_features(x: Tensor) -> Tensor:
    """[ReLU(x) sin(π i/2M), ReLU(x) cos(π i/2M)]: ``[B, h, N, d] -> [B, h, N, 2d]``."""
    x = F.relu(x)
    # Angles in float32 at least: bf16 cannot even represent the integers i above 256.
    theta = position_angles(int(x.shape[-2]), device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
    return torch.cat([x * torch.sin(theta), x * torch.cos(theta)], dim=-1)


def cosformer_attention(q: Tensor, k: Tensor, v: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Right-product form Q′(K′ᵀ V) / max(Q′ Σ_j K′_j, eps) on the 2d-wide cos-reweighted features.

    Args:
        q, k, v: ``[B, h, N, d]``.
        eps: lower clamp of the denominator (official code).

    Returns:
        ``[B, h, N, d]``.
    """
    q_f, k_f = cos_reweighted_features(q), cos_reweighted_features(k)  # [B, h, N, 2d]
    kv = k_f.transpose(-2, -1) @ v  # [B, h, 2d, d]
    num = q_f @ kv  # [B, h, N, d]
    den = q_f @ k_f.sum(dim=-2).unsqueeze(-1)  # [B, h, N, 1]
    return num / den.clamp_min(eps)


def cosformer_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None,
                   **hparams) -> int:
    """MACs of one forward: projections + K′ᵀV 2BhNd² + Q′(·) 2BhNd² + denominator 2BhNd = 4BND² + 4BNDd + 2BND."""
    check_hparams("cosformer_macs", hparams, ("eps",))
    d = dim // num_heads
    return projection_macs(B, N, dim) + 4 * B * N * dim * d + 2 * B * N * dim


class CosformerAttention(FeatureMapAttention):
    """Multi-head cosFormer attention (non-causal, M = N).

    Args:
        dim, num_heads, qkv_bias, proj_drop, device, dtype: as timm's ``Attention``.
        attn_drop: must be 0 (there is no attention matrix to drop).
        eps: lower clamp of the denominator (official 1e-6).
    """

    # Read by attnbench's registry (this package never imports it).
    variants = {"cosformer": dict(complexity="O(N d^2)", description="cosFormer: ReLU features with cos re-weighting")}

    macs = staticmethod(cosformer_macs)  # the closed-form MACs of one forward

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return cosformer_attention(q, k, v, eps=self.eps)
