"""Sequence-length lists as users type them: ``1024..16384`` doubles, ``256..1024:+256`` adds, ``196..3136:*4``
multiplies, commas join any of these (``196,256..1024``). The result is sorted and unique.
"""
from __future__ import annotations

import re

__all__ = ["parse_seq", "format_seq", "SEQ_FORMS", "MAX_VALUES"]

SEQ_FORMS = ("N", "A,B,C", "A..B (doubles)", "A..B:+S (adds S)", "A..B:*F (multiplies by F)")
MAX_VALUES = 1000  # a typo like 1..100000:+1 must not start a sweep of 100,000 cells

_INT = r"\d+(?:_\d+)*[kK]?"
_RANGE = re.compile(rf"^(?P<a>{_INT})\.\.(?P<b>{_INT})(?::(?P<op>[+*x])(?P<step>{_INT}))?$")
_SINGLE = re.compile(rf"^{_INT}$")


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"bad --seq {text!r}: {why}; accepted forms: {', '.join(SEQ_FORMS)} "
                      "(e.g. 1024..16384 or 196,256..1024:+256)")


def _int(token: str) -> int:
    token = token.replace("_", "")
    return int(token[:-1]) * 1024 if token[-1] in "kK" else int(token)


def parse_seq(text: str) -> list[int]:
    """Parse a sequence-length spec into a sorted list of unique positive ints.

    Args:
        text: comma-separated items, each ``N``, ``A..B`` (A, 2A, 4A, ... <= B), ``A..B:+S`` (A, A+S, ... <= B)
            or ``A..B:*F`` (A, A*F, ... <= B). ``1k`` means 1024.

    Returns:
        The lengths, ascending, duplicates dropped.

    Raises:
        ValueError: one line naming the accepted forms, for malformed items, descending ranges, zero or negative
            values, steps that do not advance, or more than ``MAX_VALUES`` lengths.
    """
    if not isinstance(text, str) or not text.strip():
        raise _bad(str(text), "empty")
    out: set[int] = set()
    for item in (p.strip() for p in text.split(",")):
        if not item:
            raise _bad(text, "empty item between commas")
        if _SINGLE.match(item):
            n = _int(item)
            if n <= 0:
                raise _bad(text, f"sequence lengths must be positive, got {n}")
            out.add(n)
            continue
        m = _RANGE.match(item)
        if not m:
            raise _bad(text, f"cannot read {item!r}")
        a, b = _int(m["a"]), _int(m["b"])
        op = m["op"] or "*"
        step = _int(m["step"]) if m["step"] else 2
        if a <= 0:
            raise _bad(text, f"sequence lengths must be positive, got {a}")
        if b < a:
            raise _bad(text, f"range {item!r} is descending; write the smaller end first ({b}..{a})")
        if (op == "+" and step <= 0) or (op in "*x" and step <= 1):
            raise _bad(text, f"step in {item!r} does not advance")
        n = a
        while n <= b:
            out.add(n)
            if len(out) > MAX_VALUES:
                raise _bad(text, f"more than {MAX_VALUES} lengths")
            n = n + step if op == "+" else n * step
    if len(out) > MAX_VALUES:
        raise _bad(text, f"more than {MAX_VALUES} lengths")
    return sorted(out)


def format_seq(seqs: list[int]) -> str:
    """The shortest honest spelling of a list: ``1024..8192`` for a doubling run, else a comma list."""
    s = sorted(set(seqs))
    if len(s) > 2 and all(b == 2 * a for a, b in zip(s, s[1:])):
        return f"{s[0]}..{s[-1]}"
    return ",".join(map(str, s))
