"""Controls for trained comparisons, registered so that they run through the same harness: never defaults.

* ``no-mixing``: no token mixing at all: each token's output is ``proj(v_i)``. On a task that needs two distant
  tokens brought together it must stay at chance: the floor every mixing method is read against.
* ``softmax-tied``: exact softmax attention with the keys tied to the queries (K = Q, one projection), the tie
  SOFT's symmetric Gaussian kernel imposes. Beside softmax and SOFT it says whether the tie alone costs accuracy.
"""
from __future__ import annotations

from torch import Tensor, nn

from baselines.softmax import SoftmaxAttention, softmax_macs

__all__ = ["NoMixing", "TiedSoftmaxAttention"]


class NoMixing(nn.Module):
    """The control without token mixing: ``proj(W_v x)`` token by token (timm's value and output projections with
    the attention matrix replaced by the identity)."""

    variants = {"no-mixing": dict(complexity="O(N d^2)",
                                  description="control: no token mixing (each token's output is proj(v_i)); "
                                              "a long-range task stays at chance")}

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.) -> None:
        super().__init__()
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        return self.proj_drop(self.proj(self.v(x)))

    @staticmethod
    def macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, **_: object) -> int:
        """The two Linears: 2 B N D^2."""
        return 2 * B * N * dim * dim


class TiedSoftmaxAttention(SoftmaxAttention):
    """Softmax attention with K = Q: ``softmax(Q Qᵀ / √d) V``. The fused qkv Linear is kept (so the projection
    MACs are softmax's); its key third is unused and gets no gradient."""

    variants = {"softmax-tied": dict(defaults=dict(impl="sdpa", backend="auto"), complexity="O(N^2 d)",
                                     description="ablation: exact softmax with keys tied to queries (K = Q), the tie "
                                                 "SOFT's symmetric kernel needs")}
    macs = staticmethod(softmax_macs)

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return super().attend(q, q, v)

