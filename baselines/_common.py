"""The module shell every baseline shares: timm's ``Attention`` minus the attention itself.

A mechanism subclasses :class:`QKVAttention` and implements ``attend(q, k, v) -> o`` on per-head tensors
``[B, h, N, d]``; the shell owns the fused qkv projection, the head split and merge and the output projection, so
that every peer pays exactly the same ``4·B·N·D²`` projection MACs and differs only in ``attend``.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["QKVAttention", "FeatureMapAttention", "projection_macs", "check_choice", "check_hparams", "tiles",
           "softmax_chain", "qkv_heads", "custom_backward_applies",
           "keeps", "TILE_ELEMS", "KEEP_ELEMS", "entropy_ratio", "DIAGNOSTICS_MAX_N", "diagnostic_samples"]

# the implied N x N map a diagnostic forms: up to this N, on as many samples as keep it under DIAGNOSTICS_ELEMS
DIAGNOSTICS_MAX_N = 4096
DIAGNOSTICS_ELEMS = 1 << 26


def diagnostic_samples(B: int, h: int, N: int, L: int | None = None) -> int:
    """How many of B samples a diagnostic forms its [h, N, L] map for (L = N by default; at least one)."""
    return max(1, min(B, DIAGNOSTICS_ELEMS // (h * N * (N if L is None else L))))

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

# Work on [B, h, N, L] products (scores, features) is done in tiles of about TILE_ELEMS elements: a tile's scores
# stay in cache between the ops that use them (matmul, softmax, matmul), where whole [B, h, N, L] temporaries cost
# more in page faults than in arithmetic at large N on a CPU (a fresh 48 MB buffer takes ~30 ms to fault in), and a
# generic backward keeps several of them alive. Large per-head matrices are tiled one (batch, head) at a time: a
# [3, rows, 64] x [3, 64, 256] bmm ran at 40-50 GFLOP/s on this 2-core VM, the same work as three 2-D GEMMs at about
# 100 (the batch of 3 splits unevenly over 2 threads). Every op is a parallel region whose barrier stalls when another
# process holds a core, so tiles are not made smaller than needed: 2^18 to 2^22 elements ran alike when quiet.
TILE_ELEMS = 1 << 20
# Up to this many elements in all (small N) are kept for the backward instead of being recomputed.
KEEP_ELEMS = 1 << 20

_ALL = slice(None)


def tiles(B: int, h: int, n: int, per_row: int) -> list[tuple[slice, slice, slice]]:
    """Index tuples ``(batch, head, rows)`` whose tiles of a ``[B, h, n, ·]`` tensor cover it, each tile's
    ``[·, ·, rows, per_row]`` product at most about ``TILE_ELEMS`` elements; ``t[:2]`` indexes ``[B, h, ...]`` tensors.

    - Per (batch, head), in row chunks, when one head's product has at least ``TILE_ELEMS / 4`` elements: 2-D GEMMs
      that use every thread (a batch of 3 heads splits unevenly over 2 threads).
    - Otherwise one tile when all of it fits in ``TILE_ELEMS``, else row chunks over all batches and heads at once
      (many small heads: batched GEMMs with a large batch).

    The tiles of one (batch, head) come in row order, the first starting at row 0.
    """
    if 4 * n * per_row >= TILE_ELEMS:
        rows = max(1, TILE_ELEMS // max(per_row, 1))
        return [(slice(b, b + 1), slice(i, i + 1), slice(a, min(a + rows, n)))
                for b in range(B) for i in range(h) for a in range(0, n, rows)]
    rows = max(1, TILE_ELEMS // max(B * h * per_row, 1))
    return [(_ALL, _ALL, slice(a, min(a + rows, n))) for a in range(0, n, rows)]


def keeps(*shape: int) -> bool:
    """Whether a backward keeps the forward's ``[B, h, N, L]`` temporaries (small N) instead of recomputing them."""
    return math.prod(shape) <= KEEP_ELEMS


def _chain_forward(q: Tensor, keys: Tensor, mats: tuple[Tensor, ...]) -> tuple[Tensor, list[Tensor] | None]:
    """(the ``[B, N, h, e]`` output buffer, each tile's probabilities when :func:`keeps` says so)."""
    B, h, N = (int(s) for s in q.shape[:3])
    L, d_out = int(keys.shape[-2]), int(mats[-1].shape[-1])
    buf = q.new_empty(B, N, h, d_out)  # [B, N, h, d_out]: merging the heads afterwards is free
    out = buf.transpose(1, 2)
    kept: list[Tensor] | None = [] if keeps(B, h, N, L) else None
    for t in tiles(B, h, N, L):
        bh = t[:2]
        p = x = torch.softmax(q[t] @ keys[bh].transpose(-2, -1), dim=-1)
        for mat in mats:
            x = x @ mat[bh]
        out[t] = x
        if kept is not None:
            kept.append(p)
    return buf, kept


class _SoftmaxChain(torch.autograd.Function):
    """softmax(q keysᵀ) M₁ … M_r by tiles, with a backward that recomputes each tile's probabilities.

    The generic backward stores the ``[B, h, N, L]`` probabilities (and each product with an M); this one stores
    nothing of size N·L and recomputes per tile (N·L·d more MACs, no big buffers), except at small N (:func:`keeps`).
    """

    @staticmethod
    def forward(ctx, q: Tensor, keys: Tensor, *mats: Tensor) -> Tensor:
        ctx.save_for_backward(q, keys, *mats)
        buf, ctx.kept = _chain_forward(q, keys, mats)  # probabilities kept at small N: nothing to recompute
        return buf  # [B, N, h, e]: a view made here could not be added to in place

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, ...]:
        q, keys, *mats = ctx.saved_tensors
        g = g.transpose(1, 2)  # the [B, N, h, e] buffer's gradient, as [B, h, N, e]
        B, h, N, d = (int(s) for s in q.shape)
        dq = q.new_empty(B, N, h, d).transpose(1, 2)
        dkeys = torch.zeros_like(keys)
        dmats = [torch.zeros_like(m) for m in mats]
        kept, ctx.kept = ctx.kept, None
        for j, t in enumerate(tiles(B, h, N, int(keys.shape[-2]))):
            bh = t[:2]
            p = kept[j] if kept is not None else torch.softmax(q[t] @ keys[bh].transpose(-2, -1), dim=-1)
            xs = [p]  # the chain's partial products for this tile
            for mat in mats[:-1]:
                xs.append(xs[-1] @ mat[bh])
            gx = g[t]
            for i in range(len(mats) - 1, -1, -1):
                dmats[i][bh].add_(xs[i].transpose(-2, -1) @ gx)
                gx = gx @ mats[i][bh].transpose(-2, -1)
            ds = torch._softmax_backward_data(gx, p, -1, p.dtype)  # ∂/∂scores
            dq[t] = ds @ keys[bh]
            dkeys[bh].add_(ds.transpose(-2, -1) @ q[t])
        return (dq, dkeys, *dmats)


def softmax_chain(q: Tensor, keys: Tensor, *mats: Tensor) -> Tensor:
    """``softmax(q keysᵀ, dim=-1) @ mats[0] @ mats[1] …`` (left to right) over short keys, in tiles (:func:`tiles`).

    Attention of N queries to L << N keys (Linformer's projected keys, Nyström's landmarks): the ``[N, L]``
    probabilities are formed one tile at a time, and with gradients the backward recomputes them per tile instead
    of storing them. Same products, same MACs as the untiled form.

    Args:
        q: ``[B, h, N, d]`` (any strides; the scale folded into ``keys``).
        keys: ``[B, h, L, d]``.
        mats: ``[B, h, L, e₁]``, ``[B, h, e₁, e₂]``, …

    Returns:
        ``[B, h, N, e_r]``, a view of a ``[B, N, h, e_r]`` buffer (so that merging the heads is free).
    """
    if custom_backward_applies(q, keys, *mats):
        return _SoftmaxChain.apply(q, keys, *mats).transpose(1, 2)
    return _chain_forward(q, keys, mats)[0].transpose(1, 2)


def custom_backward_applies(*tensors: Tensor) -> bool:
    """Whether a custom autograd Function should run: gradients are wanted, the call is not being traced (a trace
    must see the aten ops, so that counters such as fvcore count them) and autocast is off (the Functions compute
    in their inputs' dtype; under autocast the generic ops keep autocast's per-op dtypes)."""
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors) and not torch.jit.is_tracing()
            and not torch.is_autocast_enabled(tensors[0].device.type))


def qkv_heads(x: Tensor, weight: Tensor, bias: Tensor | None, num_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v ``[B, h, N, d]`` from the fused qkv Linear's ``[3C, C]`` weight, applied as three ``[C, C]`` blocks.

    Same weights, values and MACs as one ``[B, N, 3C]`` Linear followed by a permute and unbind, without its two
    big buffers: each of q, k, v is a view of its own ``[B, N, C]`` output, and in the backward each gradient goes
    straight to its Linear (the fused form stacks the three into a ``[3, B, h, N, d]`` buffer and copies that once
    more into a contiguous ``[B, N, 3C]`` one; at large N such fresh buffers cost page faults as much as copying).
    """
    B, N, _ = (int(s) for s in x.shape)
    C = int(weight.shape[0]) // 3
    biases = bias.chunk(3) if bias is not None else (None, None, None)
    return tuple(F.linear(x, w, b).view(B, N, num_heads, C // num_heads).transpose(1, 2)
                 for w, b in zip(weight.chunk(3), biases))


def entropy_ratio(P: Tensor) -> float:
    """Mean row entropy of the row-stochastic map ``P [..., n, L]`` over log L: 1 is uniform attention, 0 a single
    key per query."""
    L = P.shape[-1]
    if L < 2:
        return 0.0
    P = P.double()
    H = -(P * P.clamp_min(1e-300).log()).sum(-1)
    return float(H.mean() / math.log(L))


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
        q, k, v = qkv_heads(x, self.qkv.weight, self.qkv.bias, self.num_heads)  # 3 x [B, h, N, d]
        o = self.attend(q, k, v)  # [B, h, N, d]
        o = o.transpose(1, 2).reshape(B, N, C)  # merge heads: [B, N, h*d]
        return self.proj_drop(self.proj(o))

    @torch.no_grad()
    def diagnostics(self, x: Tensor, hw: tuple[int, int] | None = None) -> dict[str, float]:
        """Figures that explain how this attention behaves on the tokens ``x [B, N, C]`` it sees (the training
        harness logs them per epoch). By default ``entropy``: the mean row entropy of the attention map over log N,
        where ``attend`` is a row-stochastic map applied to V (softmax, Performer, linear attention), read off by
        attending to V = I; mechanisms override :meth:`diagnose`."""
        q, k, v = qkv_heads(x, self.qkv.weight, self.qkv.bias, self.num_heads)
        return self.diagnose(q, k, v)

    def diagnose(self, q: Tensor, k: Tensor, v: Tensor) -> dict[str, float]:
        B, h, N, d = q.shape
        if N > DIAGNOSTICS_MAX_N:
            return {}
        b = diagnostic_samples(B, h, N)
        eye = torch.eye(N, dtype=v.dtype, device=v.device).expand(b, h, N, N)
        P = self.attend(q[:b], k[:b], eye)  # the implied map: attend is linear in V
        if P.shape[-1] != N or P.min() < -1e-5 or not torch.allclose(P.sum(-1), torch.ones((), dtype=P.dtype),
                                                                      atol=1e-3):
            return {}  # not a row-stochastic map: entropy says nothing
        return {"entropy": entropy_ratio(P.clamp_min(0))}

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


