"""A built-in, seeded image task that a small ViT learns on a laptop CPU in minutes: which shape is drawn?

Six classes (disk, square, triangle, plus, ring, diamond) drawn at a random position and size, bright on a
dark ground (random tints), with pixel noise. Images are ``uint8 [n, 3, S, S]``; the labels are exactly
balanced (``n`` a multiple of 6) or as close as ``n`` allows. Everything is drawn with numpy from one
``numpy.random.Generator`` per split, seeded by ``(seed, split)``: the same arguments give the same bytes.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SHAPES", "render_shapes", "balanced_labels"]

SHAPES = ("disk", "square", "triangle", "plus", "ring", "diamond")
_SPLITS = {"train": 0, "val": 1}


def split_stream(split: str, epoch: int | None = None) -> int:
    """The stream index a split draws from: 0 the fixed training set, 1 validation, ``2 + e`` the fresh training
    images of epoch ``e`` (``epoch`` given: a new set each epoch, never the validation stream)."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    if epoch is None:
        return _SPLITS[split]
    if split != "train" or isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"fresh images are drawn for the train split at an epoch >= 0, got {split!r}, {epoch!r}")
    return 2 + epoch


def balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, each class ``n // num_classes`` or one more times, in a seeded random order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _masks(xx: np.ndarray, yy: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean masks of every shape for every sample: ``[len(SHAPES), n, S, S]``."""
    dx, dy = xx - cx, yy - cy  # [n, S, S]
    dist = np.sqrt(dx**2 + dy**2)
    top, base = cy - r, cy + 0.8 * r
    return np.stack([
        dist <= r,  # disk
        np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * r,  # square
        (yy >= top) & (yy <= base) & (np.abs(dx) <= (yy - top) / 1.8),  # triangle, apex up
        ((np.abs(dx) <= r / 3) & (np.abs(dy) <= r)) | ((np.abs(dy) <= r / 3) & (np.abs(dx) <= r)),  # plus
        (dist <= r) & (dist >= 0.55 * r),  # ring
        np.abs(dx) + np.abs(dy) <= r,  # diamond
    ])


def render_shapes(n: int, *, size: int = 32, seed: int = 0, split: str = "train",
                  noise: float = 12.0, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` shape images.

    Args:
        n: number of images.
        size: image side S in pixels (>= 8).
        seed: the data seed; train and val draw from independent streams of it.
        split: ``"train"`` or ``"val"``.
        noise: standard deviation of the additive Gaussian pixel noise (0..255 scale).
        epoch: draw epoch ``epoch``'s fresh training set (its own stream, see :func:`split_stream`).

    Returns:
        ``(images, labels)``: ``uint8 [n, 3, S, S]`` and ``int64 [n]`` with values in ``0..5``.
    """
    if size < 8:
        raise ValueError(f"shapes: image size must be at least 8 px, got {size}")
    rng = np.random.default_rng([seed, split_stream(split, epoch), 0x5A])
    labels = balanced_labels(n, len(SHAPES), rng)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for lo in range(0, n, 512):  # chunks keep the [6, chunk, S, S] masks small
        hi = min(n, lo + 512)
        k = hi - lo
        r = rng.uniform(0.2, 0.38, k).astype(np.float32) * size
        cx = rng.uniform(r, size - r).astype(np.float32)
        cy = rng.uniform(r, size - r).astype(np.float32)
        # a bright shape on a dark ground, each in a random tint
        fg = rng.uniform(150, 255, (k, 3)).astype(np.float32)
        bg = rng.uniform(0, 90, (k, 3)).astype(np.float32)
        m = _masks(xx, yy, cx[:, None, None], cy[:, None, None], r[:, None, None])
        mask = m[labels[lo:hi], np.arange(k)][:, None]  # [k, 1, S, S]
        img = np.where(mask, fg[:, :, None, None], bg[:, :, None, None])
        img += rng.normal(0, noise, img.shape).astype(np.float32)
        images[lo:hi] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels
