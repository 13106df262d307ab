"""Token-grid helpers shared by the SOFT layer, its samplers and its MAC formula."""
from __future__ import annotations

import math

__all__ = ["resolve_hw", "square_grid", "landmark_grid", "strided_grid", "auto_stride"]


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


def square_grid(n: int) -> tuple[int, int]:
    """The most nearly square H×W grid with H·W == n and H <= W (1024 -> 32×32, 2048 -> 32×64, a prime -> 1×n).

    The layout a ViT gives N patches of a near-square image, and the one the conv sampler's automatic stride
    assumes for a layer built for ``seq_len`` tokens.
    """
    if n < 1:
        raise ValueError(f"the token count must be a positive integer, got {n}")
    h = math.isqrt(n)
    while n % h:
        h -= 1
    return h, n // h


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
            tiling = [t for t in range(1, math.gcd(h, w) + 1) if h % t == 0 and w % t == 0]
            raise ValueError(f"token grid {h}x{w} is not divisible by sr_ratio={s}; accepted: sr_ratio in "
                             f"{{{', '.join(map(str, tiling))}}} (tiles {h}x{w}), sr_ratio=None (chosen for the "
                             f"grid), or grid_policy='pad' (replicate-pad bottom/right up to a multiple of {s})")
        return h // s, w // s
    return -(-h // s), -(-w // s)


def auto_stride(hw: tuple[int, int], target: int, policy: str = "pad") -> int:
    """The conv sampler's stride s for an H×W grid when none is given: m(s) nearest to ``target``.

    m(s) = ceil(H/s)·ceil(W/s) with ``policy == "pad"``; with ``"error"`` only strides that tile the grid
    (s divides H and W) are candidates, so s = 1 always qualifies. Ties go to the stride that pads fewer tokens,
    then to the smaller s. At 224² this is the paper's layer (56² -> s = 8, 28² -> 4, 14² -> 2, all m = 49);
    on the harness's grids it gives m = 49 or 50 (32² -> s = 5 with 3 padded rows/columns, 32×64 -> s = 7).
    It plays the role of the first official release's s = √(N/49), which needed N = 49 s² exactly.

    Args:
        hw: token grid (H, W).
        target: the wanted number of landmarks m (>= 1).
        policy: ``"pad"`` or ``"error"`` (see :func:`strided_grid`).

    Returns:
        s >= 1.
    """
    if target < 1:
        raise ValueError(f"landmarks must be a positive integer, got {target}")
    h, w = hw
    best_key, best = None, 1
    for s in range(1, max(h, w) + 1):
        if policy == "error" and (h % s or w % s):
            continue
        gh, gw = -(-h // s), -(-w // s)
        key = (abs(gh * gw - target), gh * s * gw * s - h * w, s)
        if best_key is None or key < best_key:
            best_key, best = key, s
    return best
