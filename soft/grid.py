"""Token-grid helpers shared by the SOFT layer, its samplers and its MAC formula."""
from __future__ import annotations

import math

__all__ = ["resolve_hw", "landmark_grid", "strided_grid"]


def resolve_hw(n: int, hw: tuple[int, int] | None) -> tuple[int, int]:
    """Return the token grid (H, W) for ``n`` tokens.

    Args:
        n: number of tokens N.
        hw: the grid (H, W) with H * W == N, or None to infer a square grid.

    Returns:
        (H, W).

    Raises:
        ValueError: ``hw`` does not multiply to ``n``, or ``hw`` is None and ``n`` is not a perfect square.
    """
    if hw is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"cannot infer a square token grid from N={n} tokens (not a perfect square); "
                             f"pass hw=(H, W) with H * W == N")
        return side, side
    h, w = int(hw[0]), int(hw[1])
    if h <= 0 or w <= 0 or h * w != n:
        raise ValueError(f"hw={tuple(hw)} does not match N={n} tokens; expected H * W == N with H, W > 0")
    return h, w


def landmark_grid(m: int, hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (rows, cols) grid that pooled landmarks are laid out on, with rows * cols == m exactly.

    A square m gives a square grid (49 -> 7x7). Otherwise m is split into its most nearly square factor pair
    (48 -> 6x8, 50 -> 5x10; a prime m gives 1 x m), with the longer side along the token grid's longer side, so
    that m is always the number asked for.

    Args:
        m: number of landmarks (>= 1).
        hw: the token grid, only used to orient a non-square landmark grid.
    """
    if m < 1:
        raise ValueError(f"landmarks must be a positive integer, got {m}")
    a = math.isqrt(m)
    while m % a:
        a -= 1
    b = m // a  # a <= b, the most nearly square factor pair
    if hw is not None and hw[0] > hw[1]:
        return b, a
    return a, b


def strided_grid(hw: tuple[int, int], s: int, policy: str) -> tuple[int, int]:
    """Landmark grid of the stride-s conv sampler: (H/s, W/s), or ceil of it when ``policy == "pad"``.

    Raises:
        ValueError: the grid is not divisible by s and ``policy == "error"``.
    """
    h, w = hw
    if policy == "error":
        if h % s or w % s:
            raise ValueError(f"token grid {h}x{w} is not divisible by sr_ratio={s}; use a grid whose sides are "
                             f"multiples of {s} (image side a multiple of 32 in the SOFT pyramid) or "
                             f"grid_policy='pad' (replicate-pad bottom/right up to a multiple of {s})")
        return h // s, w // s
    return -(-h // s), -(-w // s)
