"""A seeded generator of Long Range Arena's Pathfinder task, written from the task's description.

Pathfinder (Linsley et al., NeurIPS 2018; LRA, Tay et al., ICLR 2021): a grey-scale image holds several
dashed curves ("snakes") and two square markers. The label is 1 when both markers sit on the two ends of the
same curve and 0 when they sit on ends of two different curves. Seen at patch 1, a 32 px image is 1024 tokens,
64 px is 4096 and 128 px (Path-X) is 16,384: the evidence (the curve between the markers) spans the image.

Construction here (not the original code, whose RNGs are unseeded): every image holds two *main* curves and
``distractors`` more, all with the same number of dashes, so that counts and lengths carry no label. A positive
marks both ends of main curve A; a negative marks one end of A and one end of B. Curves never touch each other
(one pixel of clearance, rejection-sampled), so the label is unambiguous. Each curve is a chain of dashes of
``dash`` px separated by ``gap`` px, turning by at most 60 degrees between dashes; lengths scale with the
image so that the picture is the same at every resolution and only the token count grows.

Difficulty is the curve length, as in the LRA splits (contour lengths 6 "baseline", 9 and 14; LRA's Pathfinder
is the 14 one); the number of distractors is a second knob (at 32 px, more than one 14-dash distractor rarely
fits with a pixel of clearance):

==========  ======  ============
level       dashes  distractors
==========  ======  ============
easy        6       1
medium      9       1
hard        14      1
==========  ======  ============

Each image has its own generator ``numpy.random.default_rng([seed, split, index])``, so the set is deterministic
for a seed. Labels are exactly balanced (alternating, then shuffled by the seed).
"""
from __future__ import annotations

import math

import numpy as np

from attnbench.train.shapes import split_stream

__all__ = ["DIFFICULTY", "render_pathfinder", "PathfinderError"]

DIFFICULTY: dict[str, tuple[int, int]] = {"easy": (6, 1), "medium": (9, 1), "hard": (14, 1)}
# 3x3 neighbourhood: a pixel within one pixel (Chebyshev) of a curve is occupied
_NEIGHBOURS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])


class PathfinderError(RuntimeError):
    """The requested curves do not fit the canvas (too many distractors or dashes for the image size)."""


def _dash_pixels(y: float, x: float, dy: float, dx: float, dash: float, width: int, size: int) -> np.ndarray:
    t = np.linspace(0.0, dash, max(2, int(dash * 4)))
    p = np.floor(np.stack([y + t * dy, x + t * dx], 1)).astype(np.int64)
    if width > 1:
        offs = np.array([(a, b) for a in range(width) for b in range(width)]) - (width - 1) // 2
        p = (p[:, None, :] + offs[None]).reshape(-1, 2)
    return np.clip(p, 0, size - 1)


def _curve(rng: np.random.Generator, occ: np.ndarray, dashes: int, dash: float, gap: float, width: int,
           max_turn: float, margin: float) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]] | None:
    """One dashed curve that keeps clear of ``occ``: its pixels ``[P, 2]`` (y, x) and its two end points, or None
    when it ran into the border or another curve. Each dash tries up to 12 turns before giving up."""
    size = occ.shape[0]
    y, x = rng.uniform(margin, size - margin, 2).tolist()
    theta = rng.uniform(0, 2 * math.pi)
    lo, hi = margin, size - margin
    start, parts = (y, x), []
    turns = rng.uniform(-max_turn, max_turn, (dashes, 12)).tolist()
    for i in range(dashes):
        for t in turns[i]:  # turn until the dash stays inside and clear of other curves
            dy, dx = math.sin(theta + t), math.cos(theta + t)
            ey, ex = y + dy * dash, x + dx * dash
            if lo <= ey <= hi and lo <= ex <= hi:
                p = _dash_pixels(y, x, dy, dx, dash, width, size)
                if not occ[p[:, 0], p[:, 1]].any():
                    break
        else:
            return None
        theta += t
        parts.append(p)
        y, x = ey + dy * gap, ex + dx * gap
    return np.unique(np.concatenate(parts), axis=0), start, (ey, ex)


def _dilate(p: np.ndarray, size: int) -> np.ndarray:
    q = (p[:, None, :] + _NEIGHBOURS[None]).reshape(-1, 2)
    return np.clip(q, 0, size - 1)


def _marker(centre: tuple[float, float], side: int, size: int) -> np.ndarray:
    y0, x0 = int(centre[0]) - side // 2, int(centre[1]) - side // 2
    ys, xs = np.mgrid[y0:y0 + side, x0:x0 + side]
    return np.clip(np.stack([ys.ravel(), xs.ravel()], 1), 0, size - 1)


def _draw_one(rng: np.random.Generator, label: int, size: int, dashes: int, distractors: int) -> np.ndarray:
    s = size / 32  # every length is defined at 32 px and scaled
    dash, gap, width, side = 1.5 * s, 1.25 * s, max(1, round(s)), max(3, round(3 * s))
    for _ in range(200):  # restart the image when the curves or the markers do not fit
        img = np.zeros((size, size), dtype=np.uint8)
        curves = _draw_curves(rng, img, 2 + distractors, dashes, dash, gap, width, margin=side / 2 + 1)
        if curves is not None and _draw_markers(rng, img, curves, label, side):
            return img
    raise PathfinderError(f"pathfinder: {2 + distractors} curves of {dashes} dashes do not fit a {size} px image; "
                          "use fewer distractors or dashes, or a larger image")


def _draw_curves(rng: np.random.Generator, img: np.ndarray, count: int, dashes: int, dash: float, gap: float,
                 width: int, margin: float) -> list | None:
    """Draw ``count`` curves into ``img``, each at least a pixel clear of the others; None when one does not fit."""
    size = img.shape[0]
    occ = np.zeros((size, size), dtype=bool)  # pixels within one pixel of an accepted curve
    curves = []
    for _ in range(count):
        tries = (_curve(rng, occ, dashes, dash, gap, width, math.pi / 3, margin) for _ in range(60))
        c = next((c for c in tries if c is not None), None)
        if c is None:
            return None
        curves.append(c)
        img[c[0][:, 0], c[0][:, 1]] = 255
        d = _dilate(c[0], size)
        occ[d[:, 0], d[:, 1]] = True
    return curves


def _draw_markers(rng: np.random.Generator, img: np.ndarray, curves: list, label: int, side: int) -> bool:
    """Mark both ends of curve 0 (label 1) or one end each of curves 0 and 1 (label 0); False when a marker
    touches a curve other than its own."""
    size = img.shape[0]
    (a, a0, a1), (b, b0, b1) = curves[0], curves[1]
    ends = (a0, a1) if label == 1 else (a0 if rng.random() < 0.5 else a1, b0 if rng.random() < 0.5 else b1)
    own = (a, a) if label == 1 else (a, b)
    ok = True
    for e, mine in zip(ends, own):
        m = _marker(e, side, size)
        others = np.zeros((size, size), dtype=bool)
        for c in curves:
            if c[0] is not mine:
                d = _dilate(c[0], size)
                others[d[:, 0], d[:, 1]] = True
        ok &= not others[m[:, 0], m[:, 1]].any()
        img[m[:, 0], m[:, 1]] = 255
    return ok


def render_pathfinder(n: int, *, size: int = 32, difficulty: str = "easy", seed: int = 0, split: str = "train",
                      dashes: int | None = None, distractors: int | None = None,
                      epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` Pathfinder images.

    Args:
        n: number of images.
        size: image side S in pixels (>= 16); at patch 1 the sequence length is S * S.
        difficulty: ``easy``, ``medium`` or ``hard`` (see the module docstring).
        seed: the data seed; train and val draw from independent streams of it.
        split: ``"train"`` or ``"val"``.
        dashes: override the difficulty's curve length (number of dashes).
        distractors: override the difficulty's number of unmarked distractor curves.
        epoch: draw epoch ``epoch``'s fresh training set (its own stream, see ``shapes.split_stream``).

    Returns:
        ``(images, labels)``: ``uint8 [n, 1, S, S]`` and ``int64 [n]`` (1 = connected), exactly balanced.
    """
    if difficulty not in DIFFICULTY:
        raise ValueError(f"pathfinder: unknown difficulty {difficulty!r}; accepted: {', '.join(DIFFICULTY)}")
    if size < 16:
        raise ValueError(f"pathfinder: image size must be at least 16 px, got {size}")
    stream = split_stream(split, epoch)
    d0, k0 = DIFFICULTY[difficulty]
    dashes = d0 if dashes is None else dashes
    distractors = k0 if distractors is None else distractors
    if dashes < 1 or distractors < 0:
        raise ValueError(f"pathfinder: need dashes >= 1 and distractors >= 0, got {dashes} and {distractors}")
    order = np.random.default_rng([seed, stream, 0xF1]).permutation(n)
    labels = (order % 2).astype(np.int64)  # exactly balanced, seeded order
    images = np.empty((n, 1, size, size), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, stream, i])
        images[i, 0] = _draw_one(rng, int(labels[i]), size, dashes, distractors)
    return images, labels
