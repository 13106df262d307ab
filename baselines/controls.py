"""Controls for trained comparisons, registered so that they run through the same harness: never defaults.

* ``no-mixing``: no token mixing at all: each token's output is ``proj(v_i)``. On a task that needs two distant
  tokens brought together it must stay at chance: the floor every mixing method is read against.
* ``softmax-tied``: exact softmax attention with the keys tied to the queries (K = Q, one projection), the tie
  SOFT's symmetric Gaussian kernel imposes. Beside softmax and SOFT it says whether the tie alone costs accuracy.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from baselines.softmax import SoftmaxAttention, softmax_macs

__all__ = ["NoMixing", "TiedSoftmaxAttention", "tied_softmax_macs"]


class NoMixing(nn.Module):
    """The control without token mixing: ``proj(W_v x)`` token by token (timm's value and output projections with
    the attention matrix replaced by the identity)."""

    variants = {"no-mixing": dict(complexity="O(N d^2)",
                                  description="control: no token mixing (each token's output is proj(v_i)); "
                                              "a long-range task stays at chance")}

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        if dim <= 0 or num_heads <= 0 or dim % num_heads:  # heads are unused; the interface's contract still holds
            raise ValueError(f"dim={dim} must be a positive multiple of num_heads={num_heads}")
        self.dim = dim
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x of shape [B, N, {self.dim}], got {tuple(x.shape)}")
        return self.proj_drop(self.proj(self.v(x)))

    @staticmethod
    def macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, **_: object) -> int:
        """The two Linears: 2 B N D^2."""
        return 2 * B * N * dim * dim


def tied_softmax_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, **hparams) -> int:
    """softmax's MACs less the key projection (B N D²): W_q, W_v, proj 3BND² + Q Qᵀ and P V 2BN²D."""
    return softmax_macs(B, N, dim, num_heads, hw, **hparams) - B * N * dim * dim


class TiedSoftmaxAttention(SoftmaxAttention):
    """Softmax attention with K = Q: ``softmax(Q Qᵀ / √d) V``. It keeps the shell's fused qkv weight (timm's
    parameter names) and never computes its key block, which stays unused (no gradient, no MACs)."""

    variants = {"softmax-tied": dict(defaults=dict(impl="sdpa", backend="auto"), complexity="O(N^2 d)",
                                     description="ablation: exact softmax with keys tied to queries (K = Q), the tie "
                                                 "SOFT's symmetric kernel needs")}
    macs = staticmethod(tied_softmax_macs)

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x of shape [B, N, {self.dim}], got {tuple(x.shape)}")
        B, N, C = x.shape
        (w_q, _, w_v), (b_q, _, b_v) = self.qkv.weight.chunk(3), (
            self.qkv.bias.chunk(3) if self.qkv.bias is not None else (None,) * 3)
        q, v = (F.linear(x, w, b).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
                for w, b in ((w_q, b_q), (w_v, b_v)))
        o = self.attend(q, q, v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(o))

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return super().attend(q, q, v)  # the keys are the queries, whatever the caller passes

