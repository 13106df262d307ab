"""--seq parsing: every accepted form, and one-line errors naming the forms for everything else."""
from __future__ import annotations

import pytest

from attnbench.seqspec import MAX_VALUES, format_seq, parse_seq


@pytest.mark.parametrize("text, expected", [
    ("1024", [1024]),
    ("1024..16384", [1024, 2048, 4096, 8192, 16384]),
    ("1000..5000", [1000, 2000, 4000]),  # the end is an upper bound, not forced in
    ("256..1024:+256", [256, 512, 768, 1024]),
    ("196..3136:*4", [196, 784, 3136]),
    ("64..1000:x3", [64, 192, 576]),
    ("196,256..1024", [196, 256, 512, 1024]),
    ("4096, 1024,1024 ,2048", [1024, 2048, 4096]),  # a comma list is sorted and de-duplicated
    ("1k..4k", [1024, 2048, 4096]),
    ("16_384", [16384]),
    ("512..512", [512]),
], ids=lambda v: str(v))
def test_good_forms(text, expected):
    assert parse_seq(text) == expected


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("   ", "empty"),
    ("abc", "cannot read"),
    ("1024..", "cannot read"),
    ("..1024", "cannot read"),
    ("1024...2048", "cannot read"),
    ("16384..1024", "descending"),
    ("0", "positive"),
    ("0..64", "positive"),
    ("-5", "cannot read"),
    ("1024,,2048", "empty item"),
    ("64..1024:+0", "does not advance"),
    ("64..1024:*1", "does not advance"),
    ("64..1024:/2", "cannot read"),
    ("1.5k", "cannot read"),
    ("1..100000:+1", f"more than {MAX_VALUES}"),
], ids=lambda v: repr(v))
def test_bad_forms_are_one_line_value_errors(text, why):
    with pytest.raises(ValueError) as e:
        parse_seq(text)
    msg = str(e.value)
    assert "\n" not in msg
    assert why in msg
    assert "accepted forms" in msg and "A..B:+S" in msg


def test_format_seq_round_trips():
    for text in ("1024..16384", "196,256,1024", "256"):
        assert parse_seq(format_seq(parse_seq(text))) == parse_seq(text)
    assert format_seq([1024, 2048, 4096]) == "1024..4096"
    assert format_seq([196, 256]) == "196,256"
