"""The built-in generators: deterministic for a seed, balanced labels, the picture the task describes."""
from __future__ import annotations

import numpy as np
import pytest

from attnbench.train.pathfinder import DIFFICULTY, render_pathfinder
from attnbench.train.shapes import SHAPES, render_shapes


@pytest.mark.parametrize("level", list(DIFFICULTY), ids=lambda v: f"level-{v}")
def test_pathfinder_is_deterministic_and_balanced(level):
    n = 8 if level == "hard" else 24  # hard curves crowd a 32 px canvas: many restarts per image
    x1, y1 = render_pathfinder(n, size=32, difficulty=level, seed=3)
    x2, y2 = render_pathfinder(n, size=32, difficulty=level, seed=3)
    assert x1.shape == (n, 1, 32, 32) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.bincount(y1).tolist() == [n // 2, n // 2]
    assert set(np.unique(x1)) <= {0, 255}
    # every image has curves and markers: a 3x3 marker square is fully lit somewhere
    lit = x1[:, 0] > 0
    squares = lit[:, :-2, :-2] & lit[:, 1:-1, :-2] & lit[:, 2:, :-2] & lit[:, :-2, 1:-1] & lit[:, 1:-1, 1:-1] \
        & lit[:, 2:, 1:-1] & lit[:, :-2, 2:] & lit[:, 1:-1, 2:] & lit[:, 2:, 2:]
    assert squares.any(axis=(1, 2)).all()


def test_pathfinder_seed_split_and_prefix():
    a, _ = render_pathfinder(10, seed=0)
    b, _ = render_pathfinder(10, seed=1)
    v, _ = render_pathfinder(10, seed=0, split="val")
    assert not np.array_equal(a, b) and not np.array_equal(a, v)


@pytest.mark.parametrize("size", [32, 64, 128], ids=lambda s: f"S{s}")
def test_pathfinder_resolution_sets_the_image(size):
    x, y = render_pathfinder(4, size=size)
    assert x.shape == (4, 1, size, size) and np.bincount(y, minlength=2).tolist() == [2, 2]


def test_pathfinder_difficulty_makes_longer_curves():
    easy, _ = render_pathfinder(20, difficulty="easy", distractors=0)
    hard, _ = render_pathfinder(20, difficulty="hard", distractors=0)
    assert (hard > 0).sum() > 1.5 * (easy > 0).sum()
    more, _ = render_pathfinder(20, difficulty="easy", distractors=3)
    assert (more > 0).sum() > (easy > 0).sum()


def test_pathfinder_bad_arguments():
    with pytest.raises(ValueError, match="difficulty"):
        render_pathfinder(2, difficulty="extreme")
    with pytest.raises(ValueError, match="at least 16"):
        render_pathfinder(2, size=8)


@pytest.mark.heavy  # gives up only after its 200 restarts: ~15 s
def test_pathfinder_curves_that_do_not_fit_are_refused():
    from attnbench.train.pathfinder import PathfinderError

    with pytest.raises(PathfinderError, match="do not fit"):
        render_pathfinder(2, size=16, difficulty="hard", distractors=6)


def test_shapes_is_deterministic_and_balanced():
    x1, y1 = render_shapes(60, size=16, seed=5)
    x2, y2 = render_shapes(60, size=16, seed=5)
    assert x1.shape == (60, 3, 16, 16) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.bincount(y1).tolist() == [10] * len(SHAPES)
    x3, _ = render_shapes(60, size=16, seed=6)
    assert not np.array_equal(x1, x3)
