"""The module shell every baseline shares: timm's ``Attention`` minus the attention itself.

A mechanism subclasses :class:`QKVAttention` and implements ``attend(q, k, v) -> o`` on per-head tensors
``[B, h, N, d]``; the shell owns the fused qkv projection, the head split and merge and the output projection, so
that every peer pays exactly the same ``4·B·N·D²`` projection MACs and differs only in ``attend``.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn

__all__ = ["QKVAttention", "FeatureMapAttention", "projection_macs", "check_choice", "check_hparams"]

# Constructor arguments of the shell, and the seq_len a harness may pass to every formula: a MAC formula accepts
# them and ignores them (they cost no matmul; N is the formula's own argument).
SHELL_HPARAMS = frozenset({"qkv_bias", "attn_drop", "proj_drop", "device", "dtype", "seq_len"})


def check_choice(name: str, value: Any, accepted: Iterable[Any]) -> None:
    """Raise ``ValueError`` naming the accepted values when ``value`` is not one of them."""
    accepted = tuple(accepted)
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not supported; accepted: {', '.join(repr(a) for a in accepted)}")


def check_hparams(fn_name: str, hparams: dict[str, Any], own: Iterable[str]) -> None:
    """MAC formulas take the constructor's keyword arguments; refuse names no constructor has."""
    unknown = set(hparams) - SHELL_HPARAMS - set(own)
    if unknown:
        raise ValueError(f"{fn_name}: unknown hyper-parameter(s) {sorted(unknown)}; accepted: "
                         f"{sorted(set(own) | SHELL_HPARAMS)}")


def projection_macs(B: int, N: int, dim: int) -> int:
    """MACs of the fused qkv Linear (3·B·N·D²) plus the output Linear (B·N·D²); bias adds are not counted."""
    return 4 * B * N * dim * dim


class QKVAttention(nn.Module):
    """Fused qkv Linear -> heads -> ``attend`` -> merge heads -> output Linear, as timm's ``Attention``.

    Args:
        dim: model width D; must be divisible by ``num_heads``.
        num_heads: number of heads h; head width d = D / h.
        qkv_bias: bias in the fused qkv Linear (the output Linear always has one, as in timm).
        attn_drop: dropout probability on the attention weights, for mechanisms that form them.
        proj_drop: dropout probability after the output Linear.
        device: factory keyword passed to the Linears.
        dtype: factory keyword passed to the Linears.
        has_attn_weights: the subclass forms attention probabilities that ``attn_drop`` can drop; when False a
            nonzero ``attn_drop`` is refused (a flag the mechanism cannot honour raises at construction).
    """

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 has_attn_weights: bool = True) -> None:
        super().__init__()
        if dim <= 0 or num_heads <= 0 or dim % num_heads:
            raise ValueError(f"dim={dim} must be a positive multiple of num_heads={num_heads}")
        for name, p in (("attn_drop", attn_drop), ("proj_drop", proj_drop)):
            if not 0. <= p < 1.:
                raise ValueError(f"{name}={p} must lie in [0, 1)")
        if attn_drop and not has_attn_weights:
            raise ValueError(f"{type(self).__name__} forms no attention matrix, so attn_drop={attn_drop} cannot be "
                             "honoured; accepted: attn_drop=0")
        factory = {"device": device, "dtype": dtype}
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **factory)
        self.attn_drop_p = float(attn_drop)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **factory)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """The mechanism: ``q, k, v [B, h, N, d] -> o [B, h, N, d]``."""
        raise NotImplementedError

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        """Attend over the N tokens of ``x``.

        Args:
            x: tokens ``[B, N, C]`` with C == dim.
            hw: token grid (H, W); accepted for the shared interface and ignored (these methods are 1-D).

        Returns:
            ``[B, N, C]``.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x of shape [B, N, {self.dim}], got {tuple(x.shape)}")
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)  # [B, N, 3, h, d]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, h, N, d]
        o = self.attend(q, k, v)  # [B, h, N, d]
        o = o.transpose(1, 2).reshape(B, N, C)  # merge heads: [B, N, h*d]
        return self.proj_drop(self.proj(o))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}"


class FeatureMapAttention(QKVAttention):
    """Base of the positive-feature-map attentions (linear, cosFormer): no attention matrix, so ``attn_drop`` must
    be 0, and an ``eps`` that keeps the normaliser away from zero (``attend`` uses ``self.eps``)."""

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., eps: float = 1e-6, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                         device=device, dtype=dtype, has_attn_weights=False)
        if eps < 0:
            raise ValueError(f"eps={eps} must be >= 0")
        self.eps = eps


