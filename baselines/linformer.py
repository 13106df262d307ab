"""Linformer (Wang et al., arXiv 2006.04768): project keys and values along the sequence to length k, so that
attention costs O(N k d).

head_i = softmax(Q_i (E K_i)ᵀ / √d) · F V_i  (paper eq. 7), with E, F acting as k x N matrices, learned, and
therefore tied to the N the module was built for. Checked against lucidrains ``linformer`` (uniform ±1/√k init,
projection after W_K, shared across heads) and fairseq (slicing). Sharing (paper §4):

- ``"headwise"``: one E and one F per layer, shared by all heads;
- ``"kv"``: one E = F per layer, for K, V and all heads;
- ``"layerwise"``: one E for K, V, all heads *and all layers*. Within one module it is the same computation as
  ``"kv"``; pass the same ``nn.Parameter`` as ``shared_proj`` to every layer to share it across layers
  (without one, the module creates its own and ``model.parameters()`` holds one per layer).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from baselines._common import (QKVAttention, check_choice, check_hparams, diagnostic_samples, entropy_ratio,
                               projection_macs, softmax_chain)

__all__ = ["LinformerAttention", "linformer_attention", "linformer_macs", "SHARINGS"]

SHARINGS = ("headwise", "kv", "layerwise")


def linformer_attention(q: Tensor, k: Tensor, v: Tensor, E: Tensor, F: Tensor, *, scale: float,
                        dropout: nn.Module | None = None) -> Tensor:
    """softmax(q (E k)ᵀ · scale) (F v), one E and F for every (batch, head).

    Args:
        q, k, v: ``[B, h, N, d]``.
        E, F: ``[k, N]`` sequence projections of keys and values (may be the same tensor).
        scale: temperature, d^-½.
        dropout: applied to the ``[N, k]`` probabilities (None: no dropout).

    Returns:
        ``[B, h, N, d]``.
    """
    B, h, N, d = (int(s) for s in k.shape)  # N: the keys' length (the queries' may differ)
    # E and F act on all heads at once, on keys and values with their heads merged ([B, N, h·d], a view of the qkv
    # output): one matmul each, no transposed copy. Written as (Kᵀ Eᵀ) so the batched operand comes first: same
    # MACs, and counters that assume the first operand carries the batch (fvcore's matmul handle) count all B.
    k_proj_t = (k.transpose(1, 2).reshape(B, N, h * d).transpose(1, 2) @ E.t()).view(B, h, d, -1)  # (E K)ᵀ
    v_proj = (v.transpose(1, 2).reshape(B, N, h * d).transpose(1, 2) @ F.t()).view(B, h, d, -1).transpose(-2, -1)
    keys = k_proj_t.transpose(-2, -1) * scale  # E K · d^-½, [B, h, k, d]
    if dropout is not None and dropout.training and dropout.p > 0:  # dropped probabilities: the explicit form
        return dropout(torch.softmax(q @ keys.transpose(-2, -1), dim=-1)) @ v_proj
    return softmax_chain(q, keys, v_proj)  # softmax(Q (EK)ᵀ/√d) (F V), by row chunks


def linformer_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, *,
                   k: int = 256, **hparams) -> int:
    """MACs of one forward: projections + E K and F V 2BhNkd + Q(EK)ᵀ and P(FV) 2BhNkd = 4BND² + 4BNkD.

    The sequence projection acts on the per-head keys after W_K, as the code does (docs/methods.md; fairseq#2923).
    """
    check_hparams("linformer_macs", hparams, ("seq_len", "sharing", "shared_proj"))
    return projection_macs(B, N, dim) + 4 * B * N * k * dim


class LinformerAttention(QKVAttention):
    """Multi-head Linformer attention for inputs of exactly ``seq_len`` tokens.

    Args:
        dim, num_heads, qkv_bias, attn_drop, proj_drop, device, dtype: as timm's ``Attention``
            (``attn_drop`` drops the N x k probabilities).
        seq_len: N, the sequence length the projections are built for (required). Another N at forward raises
            ``ValueError``.
        k: projected length; must be < ``seq_len`` (k >= N saves nothing and is refused).
        sharing: "headwise", "kv" or "layerwise" (module docstring).
        shared_proj: with ``sharing="layerwise"``, a ``[k, seq_len]`` ``nn.Parameter`` shared by every layer;
            None creates one.

    Attributes:
        E: ``[k, seq_len]`` key projection (also the value projection unless ``sharing="headwise"``).
        F: ``[k, seq_len]`` value projection with ``sharing="headwise"``, else None.

    Tests replace ``E``/``F`` by assigning new ``nn.Parameter``s (e.g. the N x N identity, the k = N limit);
    ``forward`` reads k from their shape.
    """

    # Read by attnbench's registry (this package never imports it).
    variants = {"linformer": dict(defaults=dict(k=256), complexity="O(N k d)",
                                  description="Linformer: learned k x N projections of K and V (fixed N)",
                                  test_hparams=dict(k=16))}
    needs_seq_len = True  # E and F are k x N: the module is built for one N

    macs = staticmethod(linformer_macs)  # the closed-form MACs of one forward

    @classmethod
    def not_supported_reason(cls, *, device: str, dtype: str, seq_len: int, hparams: dict,
                             hw: tuple[int, int] | None = None) -> str | None:
        """k >= N: projecting N tokens to k >= N saves nothing (the constructor refuses it); None otherwise."""
        k = hparams.get("k")
        if isinstance(k, int) and k >= seq_len >= 1:
            return f"k={k} >= N={seq_len}: projecting {seq_len} tokens to {k} saves nothing (accepted: k < N)"
        return None

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., seq_len: int, k: int = 256, sharing: str = "headwise",
                 shared_proj: nn.Parameter | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                         device=device, dtype=dtype)
        check_choice("sharing", sharing, SHARINGS)
        if k < 1 or k >= seq_len:
            raise ValueError(f"k={k} must satisfy 1 <= k < seq_len={seq_len}: projecting {seq_len} tokens to "
                             f"{k} >= {seq_len} saves nothing; use softmax attention or a smaller k")
        if shared_proj is not None:
            if sharing != "layerwise":
                raise ValueError(f"shared_proj is only used with sharing='layerwise', got sharing={sharing!r}")
            if tuple(shared_proj.shape) != (k, seq_len):
                raise ValueError(f"shared_proj must have shape (k, seq_len) = ({k}, {seq_len}), "
                                 f"got {tuple(shared_proj.shape)}")
        self.seq_len, self.k, self.sharing = seq_len, k, sharing
        self.E = shared_proj if shared_proj is not None else self._init_proj(k, seq_len, device, dtype)
        self.F = self._init_proj(k, seq_len, device, dtype) if sharing == "headwise" else None

    @staticmethod
    def _init_proj(k: int, n: int, device, dtype) -> nn.Parameter:
        # lucidrains' init: uniform in ±1/√k (fan-in k), so E K keeps roughly the scale of K.
        bound = 1 / math.sqrt(k)
        return nn.Parameter(torch.empty(k, n, device=device, dtype=dtype).uniform_(-bound, bound))

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        N = q.shape[-2]
        if N != self.seq_len:
            raise ValueError(f"LinformerAttention was built for seq_len={self.seq_len} tokens, got N={N}; its k x N "
                             f"projections are tied to N={self.seq_len} (build another module for N={N})")
        F = self.E if self.F is None else self.F
        return linformer_attention(q, k, v, self.E, F, scale=self.scale, dropout=self.attn_drop)

    def diagnose(self, q: Tensor, k: Tensor, v: Tensor) -> dict[str, float]:
        """``entropy``: of softmax(Q (E K)ᵀ / √d) over its k projected keys, over log k."""
        B = diagnostic_samples(int(k.shape[0]), int(k.shape[1]), int(k.shape[2]), self.k)
        q, k = q[:B], k[:B]
        _, h, N, d = (int(s) for s in k.shape)
        keys = (k.transpose(1, 2).reshape(B, N, h * d).transpose(1, 2) @ self.E.t()).view(B, h, d, -1)
        return {"entropy": entropy_ratio(torch.softmax(q @ keys * self.scale, dim=-1))}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, seq_len={self.seq_len}, k={self.k}, sharing={self.sharing!r}"
