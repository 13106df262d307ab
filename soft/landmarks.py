"""Landmark (bottleneck token) samplers of SOFT: q̄ [B, h, N, d] on an H×W grid -> Q̃ = K̃ [B, h, m, d].

* ``"conv"``: the paper's sampler (every official release): per head, a Conv2d(d, d, kernel = stride = s, no bias)
  whose weights are shared by all heads, then LayerNorm(d) and exact GELU; m = (H/s)(W/s). s is either given
  (``sr_ratio``: the pyramid's 8/4/2, so m grows with resolution as in the current official code) or chosen for the
  token count the layer is built for so that m is nearest a target (``seq_len``; :func:`soft.grid.auto_stride`),
  which keeps the layer linear in N as the first official release did with m = 49.
* ``"pool"``: parameter-free adaptive average pooling to a *fixed* grid of m cells (49 -> 7×7), then the same
  LayerNorm + GELU; not in any official release.
* ``"identity"``: every token is a landmark (m = N), no LayerNorm/GELU; the Nyström form is then exact, which
  the tests use.

See docs/methods.md for the equations and the grid policies.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .grid import auto_stride, landmark_grid, square_grid, strided_grid

__all__ = ["PoolLandmarks", "ConvLandmarks", "IdentityLandmarks", "build_sampler", "resolve_conv_stride", "SAMPLERS",
           "GRID_POLICIES"]

SAMPLERS = ("pool", "conv", "identity")
GRID_POLICIES = ("error", "pad")


def _to_image(q_bar: Tensor, H: int, W: int) -> Tensor:
    """[B, h, H·W, d] -> [B·h, d, H, W]: heads folded into the batch so that the sampler is shared by heads."""
    B, h, N, d = q_bar.shape
    return q_bar.reshape(B * h, H, W, d).permute(0, 3, 1, 2)


def _to_tokens(x: Tensor, bh: tuple[int, int]) -> Tensor:
    """[B·h, d, gh, gw] -> [B, h, gh·gw, d]."""
    return x.flatten(2).transpose(1, 2).reshape(*bh, -1, x.shape[1])


class PoolLandmarks(nn.Module):
    """Adaptive average pooling of the token grid to a fixed (rows, cols) grid with rows·cols = m, then LN + GELU.

    A non-square m uses its most nearly square factor pair (see :func:`soft.grid.landmark_grid`). The token grid
    must be at least as large as the landmark grid on each side (pooling would otherwise duplicate tokens).
    """

    def __init__(self, head_dim: int, landmarks: int) -> None:
        super().__init__()
        landmark_grid(landmarks)  # validates m >= 1
        self.landmarks = landmarks
        self.norm = nn.LayerNorm(head_dim)
        self.act = nn.GELU()

    def num_landmarks(self, hw: tuple[int, int]) -> int:
        return self.landmarks

    def forward(self, q_bar: Tensor, hw: tuple[int, int]) -> Tensor:
        (H, W), (gh, gw) = hw, landmark_grid(self.landmarks, hw)
        if H < gh or W < gw:
            raise ValueError(f"landmarks={self.landmarks} needs a token grid of at least {gh}x{gw}, got {H}x{W}; "
                             f"use fewer landmarks or more tokens")
        x = _to_image(q_bar, H, W)  # [B·h, d, H, W]
        x = F.adaptive_avg_pool2d(x, (gh, gw))  # [B·h, d, gh, gw]
        x = _to_tokens(x, q_bar.shape[:2])  # [B, h, m, d]
        return self.act(self.norm(x))


class ConvLandmarks(nn.Module):
    """The paper's sampler: Conv2d(d, d, kernel = stride = s, bias=False) shared across heads, then LN + GELU.

    Args:
        head_dim: d.
        sr_ratio: s, the kernel size and stride (fixed at construction: it sizes the conv weight).
        grid_policy: what to do with a grid whose sides are not multiples of s. ``"error"`` (default) raises a
            ValueError; ``"pad"`` replicate-pads the bottom/right edge up to the next multiple of s so that every
            token is seen (m = ceil(H/s)·ceil(W/s)). The official code silently drops the remainder; we never do.
    """

    def __init__(self, head_dim: int, sr_ratio: int, grid_policy: str = "error") -> None:
        super().__init__()
        self.sr_ratio, self.grid_policy = sr_ratio, grid_policy
        self.conv = nn.Conv2d(head_dim, head_dim, kernel_size=sr_ratio, stride=sr_ratio, bias=False)
        self.norm = nn.LayerNorm(head_dim)
        self.act = nn.GELU()

    def num_landmarks(self, hw: tuple[int, int]) -> int:
        gh, gw = strided_grid(hw, self.sr_ratio, self.grid_policy)
        return gh * gw

    def forward(self, q_bar: Tensor, hw: tuple[int, int]) -> Tensor:
        (H, W), s = hw, self.sr_ratio
        gh, gw = strided_grid(hw, s, self.grid_policy)
        x = _to_image(q_bar, H, W)  # [B·h, d, H, W]
        if gh * s != H or gw * s != W:
            x = F.pad(x, (0, gw * s - W, 0, gh * s - H), mode="replicate")  # [B·h, d, gh·s, gw·s]
        x = self.conv(x)  # [B·h, d, gh, gw]
        x = _to_tokens(x, q_bar.shape[:2])  # [B, h, m, d]
        return self.act(self.norm(x))

    def extra_repr(self) -> str:
        return f"sr_ratio={self.sr_ratio}, grid_policy={self.grid_policy!r}"


class IdentityLandmarks(nn.Module):
    """Every token is its own landmark (m = N), no LayerNorm/GELU: the Nyström form becomes exact."""

    def num_landmarks(self, hw: tuple[int, int]) -> int:
        return hw[0] * hw[1]

    def forward(self, q_bar: Tensor, hw: tuple[int, int]) -> Tensor:
        return q_bar


def resolve_conv_stride(sr_ratio: int | None, grid_policy: str | None, landmarks: int,
                        seq_len: int | None) -> tuple[int, str]:
    """The conv sampler's (s, grid policy) from the layer options.

    A given ``sr_ratio`` is used as is, with ``grid_policy`` defaulting to ``"error"``. Without one the stride
    is chosen from the grid the layer is built for (``seq_len`` tokens laid out on their most nearly square
    H×W, H <= W: :func:`soft.grid.square_grid`) so that m is nearest ``landmarks``
    (:func:`soft.grid.auto_stride`), with ``grid_policy`` defaulting to ``"pad"``.

    Raises:
        ValueError: a bad ``sr_ratio``/``seq_len``/``landmarks``, or neither ``sr_ratio`` nor ``seq_len``.
    """
    if sr_ratio is not None:
        if isinstance(sr_ratio, bool) or not isinstance(sr_ratio, int) or sr_ratio < 1:
            raise ValueError(f"sr_ratio must be a positive int (the paper uses 8/4/2) or None, got {sr_ratio!r}")
        return sr_ratio, grid_policy or "error"
    policy = grid_policy or "pad"
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"sampler='conv' needs sr_ratio (a positive int, the paper's 8/4/2) or seq_len (the token "
                         f"count the layer is built for; the stride then follows it), got sr_ratio=None, "
                         f"seq_len={seq_len!r}")
    if isinstance(landmarks, bool) or not isinstance(landmarks, int) or landmarks < 1:
        raise ValueError(f"landmarks must be a positive int, got {landmarks!r}")
    return auto_stride(square_grid(seq_len), landmarks, policy), policy


def build_sampler(sampler: str, head_dim: int, landmarks: int, sr_ratio: int | None,
                  grid_policy: str | None = None, seq_len: int | None = None) -> nn.Module:
    """Validate the sampler options and build the sampler module.

    Args:
        sampler: one of :data:`SAMPLERS`.
        head_dim: d.
        landmarks: m for ``"pool"``; the target m for ``"conv"`` when ``sr_ratio`` is None.
        sr_ratio: the conv stride s (``"conv"`` only); None chooses it from ``seq_len``.
        grid_policy: ``"error"``, ``"pad"`` or None (see :func:`resolve_conv_stride`); ``"conv"`` only.
        seq_len: the token count the layer is built for (``"conv"`` without ``sr_ratio`` only).

    Raises:
        ValueError: unknown sampler or grid policy, ``sampler="conv"`` with neither ``sr_ratio`` nor
            ``seq_len``, a given ``sr_ratio`` that does not tile the grid of ``seq_len`` under ``grid_policy``
            ``"error"``, or an ``sr_ratio`` given to a sampler that does not use it.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; accepted: {', '.join(SAMPLERS)}")
    if grid_policy is not None and grid_policy not in GRID_POLICIES:
        raise ValueError(f"unknown grid_policy {grid_policy!r}; accepted: {', '.join(GRID_POLICIES)}")
    if sampler == "conv":
        s, policy = resolve_conv_stride(sr_ratio, grid_policy, landmarks, seq_len)
        if sr_ratio is not None and seq_len is not None:
            strided_grid(square_grid(seq_len), s, policy)  # a given stride must fit the grid it is built for
        return ConvLandmarks(head_dim, s, policy)
    if sr_ratio is not None:
        raise ValueError(f"sr_ratio={sr_ratio} is only used by sampler='conv', not sampler={sampler!r}; "
                         f"leave it None (set landmarks for 'pool')")
    if sampler == "pool":
        if isinstance(landmarks, bool) or not isinstance(landmarks, int) or landmarks < 1:
            raise ValueError(f"landmarks must be a positive int, got {landmarks!r}")
        return PoolLandmarks(head_dim, landmarks)
    return IdentityLandmarks()
