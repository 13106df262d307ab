"""Shared fixtures for the measurement tests: one warm cell server for the whole session, short calibrations."""
from __future__ import annotations

import functools

import pytest

from attnbench.runner import CellRunner


@pytest.fixture(scope="session")
def cell_runner():
    """A fork-server CellRunner shared by every test (its start-up, importing torch/timm/fvcore, is paid once)."""
    with CellRunner("fork") as r:
        yield r


@pytest.fixture(scope="session", autouse=True)
def short_calibration():
    """Sweeps run in tests calibrate the machine with 0.02 s timers instead of 0.3 s (about 0.5 s instead of 3 s per
    thread count): the tests check that the figures are recorded and used, not how precise they are."""
    import attnbench.measure.calibrate as cal

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cal, "calibrate", functools.partial(cal.calibrate, seconds=0.02))
        yield
