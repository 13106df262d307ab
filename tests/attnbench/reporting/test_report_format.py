"""Numbers as shown: significant figures the IQR supports, markdown tables."""
from __future__ import annotations

import pandas as pd
import pytest

from attnbench import reporting as R


@pytest.mark.parametrize("median, iqr, expected", [
    (12.345, 0.3, "12.3 ± 0.3"),
    (12.345, 0.04, "12.35 ± 0.04"),
    (12.345, 2.0, "12 ± 2 †"),
    (0.01234, 0.0001, "0.0123 ± 0.0001"),
    (1234.5, 0.001, "1,234 ± 0"),  # never more than 4 significant figures
    (5.0, 20.0, "5 ± 20 †"),  # the IQR exceeds the value: one figure, marked noisy
    (356.04, 0.0, "356 ‡"),  # one timing block: spread unknown
])
def test_latency_shows_only_the_figures_the_iqr_supports(median, iqr, expected):
    assert R.fmt_latency(median, iqr) == expected


def test_fmt_sig():
    assert R.fmt_sig(123456) == "123,000"
    assert R.fmt_sig(0.0012345) == "0.00123"
    assert R.fmt_sig(float("nan")) == "—"
    assert R.fmt_sig(0) == "0"


def test_to_markdown_escapes_pipes_and_aligns_numbers():
    md = R.to_markdown(pd.DataFrame({"a": ["x|y", "z"], "n": ["1,024", "—"]}))
    lines = md.splitlines()
    assert lines[0].startswith("| a") and "x\\|y" in lines[2]
    assert lines[1].endswith(":|")  # numeric column right-aligned
