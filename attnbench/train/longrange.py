"""A built-in, seeded long-range image task: do the two framed squares far apart have the same colour?

Each image is a black canvas cut into cells of ``cell`` px (the ViT patch by default, so one cell is one token).
``2 + distractors`` cells, all different, hold a coloured square. Two of them, the *marked* pair, carry a white
one-pixel frame around their colour and lie at least half the image apart (Manhattan distance >= grid side, in
cells); the label is 1 when the marked pair has the same colour and 0 otherwise. The distractors are plain
squares of random colours from the same palette, so nothing but the two marked cells decides the label: a model
must bring together two tokens up to a grid side apart, which only token mixing can do. The image side sets N:
64 px at patch 4 is 256 tokens, 128 px is 1024, 256 px is 4096, with the same number of objects, so a larger N
only spreads them further apart.

Difficulty is the number of distractors and the palette (``DIFFICULTY``): *easy* 6 distractors in 6 colours,
*medium* 12 in 6, *hard* 24 in 8 (orange and purple added between the six well-separated hues). Every square's
colour is jittered per channel, so that colours are told apart by hue, not by exact values.

Labels are exactly balanced (alternating, then shuffled by the seed). Each split draws from its own generator,
``numpy.random.default_rng([seed, split, 0x1A])``: the same arguments give the same bytes, and train and val are
independent draws. :func:`read_label` reads the label back from the pixels alone (the reference the tests hold
the generator to).
"""
from __future__ import annotations

import numpy as np

from baselines.controls import NoMixing  # noqa: F401  (its old path, attnbench.train.longrange:NoMixing, still loads)
from attnbench.train.shapes import balanced_labels, split_stream

__all__ = ["DIFFICULTY", "PALETTE", "MAX_SIZE", "render_longrange", "read_label", "LongRangeError", "NoMixing"]

DIFFICULTY: dict[str, tuple[int, int]] = {"easy": (6, 6), "medium": (12, 6), "hard": (24, 8)}
# well separated hues first; the last two (orange, purple) sit between them and make "hard" harder
PALETTE = np.array([(230, 40, 40), (40, 200, 60), (50, 90, 240), (235, 220, 50), (40, 210, 220), (220, 60, 220),
                    (240, 140, 30), (140, 60, 200)], dtype=np.float32)
MAX_SIZE = 512  # 16,384 tokens at patch 4: beyond it a CPU run is hopeless and the canvas only gets emptier
FRAME = 255.0  # the marked cells' frame; no palette colour is white
JITTER = 12.0  # per-channel uniform jitter of every square's colour, +-JITTER (0..255 scale)


class LongRangeError(ValueError):
    """The requested image cannot hold the task (side not a multiple of the cell, too few cells)."""


def _check(size: int, cell: int, objects: int, colors: int) -> int:
    if cell < 3:
        raise LongRangeError(f"longrange: cell must be at least 3 px (a frame around a colour), got {cell}")
    if size % cell or size // cell < 4:
        raise LongRangeError(f"longrange: image size {size} must be a multiple of the {cell} px cell with at least "
                             f"4 cells a side")
    if size > MAX_SIZE:
        raise LongRangeError(f"longrange: image size {size} is above the maximum {MAX_SIZE}")
    grid = size // cell
    if objects > grid * grid // 2:
        raise LongRangeError(f"longrange: {objects} squares do not fit a {grid}x{grid} grid of cells (at most "
                             f"{grid * grid // 2})")
    if not 2 <= colors <= len(PALETTE):
        raise LongRangeError(f"longrange: colors must be in 2..{len(PALETTE)}, got {colors}")
    return grid


def _marked_pair(rng: np.random.Generator, grid: int) -> tuple[int, int]:
    """Two cells (flat indices) at Manhattan distance >= ``grid``: rejection-sampled (about 1 in 3 pairs passes)."""
    while True:
        a, b = rng.integers(0, grid * grid, 2)
        if abs(a // grid - b // grid) + abs(a % grid - b % grid) >= grid:
            return int(a), int(b)


def render_longrange(n: int, *, size: int = 64, seed: int = 0, split: str = "train", difficulty: str = "medium",
                     distractors: int | None = None, colors: int | None = None,
                     cell: int = 4, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` images of the task.

    Args:
        n: number of images.
        size: image side in pixels, a multiple of ``cell`` (at most ``MAX_SIZE``).
        seed: the data seed; train and val draw from independent streams of it.
        split: ``"train"`` or ``"val"``.
        difficulty: ``easy``, ``medium`` or ``hard`` (see ``DIFFICULTY``): the defaults of the next two.
        distractors: unframed squares besides the marked pair.
        colors: palette size, 2..8 (the first ``colors`` of ``PALETTE``).
        cell: cell side in pixels (a square fills its cell; a marked one has a 1 px white frame inside it).
        epoch: draw epoch ``epoch``'s fresh training set (its own stream, see ``shapes.split_stream``).

    Returns:
        ``(images, labels)``: ``uint8 [n, 3, size, size]`` and ``int64 [n]`` (1: same colour).

    Raises:
        LongRangeError: a size, cell or count the canvas cannot hold; ValueError: an unknown split or difficulty.
    """
    preset = DIFFICULTY.get(difficulty)
    if preset is None or split not in ("train", "val"):
        raise ValueError(f"longrange: difficulty must be one of {', '.join(DIFFICULTY)} and split one of "
                         f"train, val; got {difficulty!r}, {split!r}")
    distractors, colors = (preset[0] if distractors is None else distractors, preset[1] if colors is None else colors)
    if distractors < 0:
        raise LongRangeError(f"longrange: distractors must be non-negative, got {distractors}")
    grid = _check(size, cell, 2 + distractors, colors)
    rng = np.random.default_rng([seed, split_stream(split, epoch), 0x1A])
    labels = balanced_labels(n, 2, rng)
    images = np.zeros((n, 3, size, size), dtype=np.uint8)
    cells = np.zeros((grid * grid, 3, cell, cell), dtype=np.float32)
    for i in range(n):
        a, b = _marked_pair(rng, grid)
        others = rng.permutation(np.setdiff1d(np.arange(grid * grid), (a, b)))[:distractors]
        ca = rng.integers(colors)
        cb = ca if labels[i] else (ca + rng.integers(1, colors)) % colors  # a different colour, uniformly
        picks = np.concatenate([[ca, cb], rng.integers(0, colors, distractors)])
        where = np.concatenate([[a, b], others])
        rgb = PALETTE[picks] + rng.uniform(-JITTER, JITTER, (len(picks), 3)).astype(np.float32)
        cells[:] = 0.0
        cells[where] = rgb[:, :, None, None]
        cells[[a, b], :, 0, :] = cells[[a, b], :, -1, :] = FRAME  # the frame: top, bottom,
        cells[[a, b], :, :, 0] = cells[[a, b], :, :, -1] = FRAME  # left, right
        # [grid*grid, 3, c, c] -> [3, grid*c, grid*c]
        img = cells.reshape(grid, grid, 3, cell, cell).transpose(2, 0, 3, 1, 4).reshape(3, size, size)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels


def read_label(image: np.ndarray, cell: int = 4) -> int:
    """The label of one ``uint8 [3, S, S]`` image from its pixels alone: 1 if the two framed cells' colours are
    the nearest palette entry to each other's (same colour), else 0. Raises ValueError unless exactly two cells are
    framed."""
    c, s, _ = image.shape
    grid = s // cell
    cells = image.astype(np.float32).reshape(c, grid, cell, grid, cell).transpose(1, 3, 0, 2, 4)
    border = np.concatenate([cells[..., 0, :], cells[..., -1, :], cells[..., :, 0], cells[..., :, -1]], axis=-1)
    framed = np.argwhere((border == FRAME).all(axis=(-2, -1)))
    if len(framed) != 2:
        raise ValueError(f"expected 2 framed cells, found {len(framed)}")
    inner = [cells[y, x, :, 1:-1, 1:-1].reshape(c, -1).mean(-1) for y, x in framed]
    nearest = [int(np.argmin(((PALETTE - v) ** 2).sum(-1))) for v in inner]
    return int(nearest[0] == nearest[1])
