"""Shared fixtures for the measurement tests: one warm cell server for the whole session."""
from __future__ import annotations

import pytest

from attnbench.runner import CellRunner


@pytest.fixture(scope="session")
def cell_runner():
    """A fork-server CellRunner shared by every test (its start-up, importing torch/timm/fvcore, is paid once)."""
    with CellRunner("fork") as r:
        yield r
