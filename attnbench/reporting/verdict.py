"""The verdict: at each N, the fastest and the leanest method, with its ratio to the baseline, in one line.

Per (skeleton, batch, dtype, device, mode) and N, from the relative table:

- **fastest**: the highest speed-up among finished cells whose own latency is neither noisy nor untrusted (the
  row's ``trusted`` is 0); such a cell never feeds a verdict, and the line says which were left out. Methods whose
  speed-up intervals overlap the fastest's are named as tied. When the baseline's own cell is noisy or did not
  finish, the methods are ranked by latency and no ratio is given.
- **leanest**: the lowest peak memory among finished cells; methods within :data:`MEM_TIE` of it are tied (memory
  is measured once, so there is no interval to compare).

When the baseline itself wins, the runner-up is named with how much slower (or hungrier) it is; a fastest
method whose runner-up is the baseline names none (its speed-up already says it). Without a baseline in the run
(:func:`~attnbench.reporting.tables.ranking_table`), the same ranking stands, the runner-up measured against the
fastest. Ratios within ``format.SAME`` of 1 read "about as fast" / "about the same memory"; when no cell can be
judged the line says why, in the words of the cells' statuses (all untrusted: the machine was busy, ...).
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from attnbench.reporting.format import NOISY, fmt_times
from attnbench.reporting.load import GROUP, groups

__all__ = ["MEM_TIE", "verdict_table", "verdict_lines"]

MEM_TIE = 0.05  # peak memories within 5 % of the leanest are tied

COLUMNS = GROUP + ["seq_len", "baseline", "fastest", "speedup", "speedup_lo", "speedup_hi", "fastest_tied",
                   "fastest_next", "leanest", "mem_ratio", "leanest_tied", "leanest_next", "left_out", "no_ratio",
                   "untrusted_rules"]


def _speed_scores(at_n: pd.DataFrame, base_usable: bool) -> pd.DataFrame:
    """(score, lo, hi) per candidate, higher is faster: the speed-up and its interval, or 1/latency without a
    usable baseline."""
    if base_usable:
        return at_n.assign(score=at_n["speedup"], lo=at_n["speedup_lo"], hi=at_n["speedup_hi"])
    med, half = at_n["latency_ms_median"], at_n["latency_ms_iqr"].fillna(0) / 2
    return at_n.assign(score=1 / med, lo=1 / (med + half),
                       hi=(1 / (med - half).where(med - half > 0)).fillna(math.inf))


def _flag(row: pd.Series) -> str:
    """Why a finished cell cannot feed a verdict (``noisy``, ``untrusted``), or ``""``."""
    return "untrusted" if bool(row["model_untrusted"]) else "noisy" if bool(row["model_noisy"]) else ""


def _rules(untrusted: pd.DataFrame) -> list[str]:
    """The trust rules these cells failed (``load``, ``spread``, ...: an untrusted_reason starts with its rule)."""
    reasons = untrusted.get("untrusted_reason", pd.Series(dtype=object))
    return sorted({str(r).split(":")[0] for r in reasons if isinstance(r, str) and r})


def _fastest(at_n: pd.DataFrame, base: str | None) -> dict[str, Any]:
    ok = at_n[(at_n["status"] == "ok") & at_n["latency_ms_median"].gt(0)]
    flags = ok.apply(_flag, axis=1) if not ok.empty else pd.Series(dtype=str)
    cand = ok[flags == ""]
    brow = at_n[at_n["model"] == base]
    why_base = "missing" if brow.empty else str(brow["status"].iloc[0]) if brow["status"].iloc[0] != "ok" \
        else _flag(brow.iloc[0])
    base_usable = not why_base
    out: dict[str, Any] = {"left_out": sorted(zip(ok.loc[flags != "", "model"], flags[flags != ""])),
                           "untrusted_rules": _rules(ok[flags == "untrusted"])}
    if not base_usable:
        out["no_ratio"] = why_base
    if cand.empty:
        return out
    scored = _speed_scores(cand, base_usable).sort_values("score", ascending=False, kind="mergesort")
    best = scored.iloc[0]
    rest = scored.iloc[1:]
    tied = rest[(rest["hi"] >= best["lo"]) & (best["hi"] >= rest["lo"])]
    out.update(fastest=best["model"], fastest_tied=list(zip(tied["model"], tied["score"], tied["lo"], tied["hi"])))
    if base_usable:
        out.update(speedup=best["score"], speedup_lo=best["lo"], speedup_hi=best["hi"])
    if not rest.empty and tied.empty:  # the runner-up against the fastest: a ratio below 1, read "x slower"
        nxt = rest.iloc[0]
        out["fastest_next"] = (nxt["model"], nxt["score"] / best["score"], nxt["lo"] / best["hi"],
                               nxt["hi"] / best["lo"])
    return out


def _leanest(at_n: pd.DataFrame, base: str | None) -> dict[str, Any]:
    cand = at_n[(at_n["status"] == "ok") & at_n["peak_mem_bytes"].gt(0)].sort_values(
        "peak_mem_bytes", kind="mergesort")
    if cand.empty:
        return {}
    best = cand.iloc[0]
    rest = cand.iloc[1:]
    rel = rest["peak_mem_bytes"] / best["peak_mem_bytes"]
    out: dict[str, Any] = {"leanest": best["model"], "leanest_tied": list(rest.loc[rel <= 1 + MEM_TIE, "model"])}
    brow = cand[cand["model"] == base]
    if not brow.empty and best["model"] != base:
        out["mem_ratio"] = best["peak_mem_bytes"] / brow["peak_mem_bytes"].iloc[0]
    if not out["leanest_tied"] and not rest.empty:
        out["leanest_next"] = (rest.iloc[0]["model"], float(rel.iloc[0]))
    return out


def verdict_table(rel: pd.DataFrame) -> pd.DataFrame:
    """One row per group and N: who is fastest and leanest, by how much, who is tied, what was left out.

    ``rel`` is :func:`~attnbench.reporting.tables.relative_table`'s frame (its ``baseline`` attr names the baseline).
    """
    base = rel.attrs.get("baseline")
    rows = []
    for key, g in groups(rel):
        for n, at_n in g.groupby("seq_len", sort=True):
            rows.append({**key, "seq_len": n, "baseline": base, **_fastest(at_n, base), **_leanest(at_n, base)})
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _code(name: str) -> str:
    return f"`{name}`"


def _list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _nothing_judged(r: pd.Series) -> str:
    """Why no method is fastest, in the words of the cells' statuses."""
    left = _list(r["left_out"])
    flags = {why for _, why in left}
    if not left:
        return "Fastest: none (no cell finished)"
    if flags == {"untrusted"}:
        rules = _list(r["untrusted_rules"])
        why = "the machine was busy — re-run on a quiet machine, or with --threads 1" if rules == ["load"] else \
            f"they failed the {', '.join(rules) or 'trust'} rule{'s' if len(rules) != 1 else ''} (see Trust)"
        return f"Fastest: not judged (all cells untrusted: {why})"
    if flags == {"noisy"}:
        return f"Fastest: not judged (every finished cell is noisy, its IQR above {NOISY:.0%} of its median: " \
               "raise --min-time or --repeats)"
    return "Fastest: not judged (every finished cell is noisy or untrusted)"


def _fastest_text(r: pd.Series) -> str:
    base = r["baseline"]
    if not isinstance(r["fastest"], str):
        return _nothing_judged(r)
    tied = _list(r["fastest_tied"])
    has_ratio = pd.notna(r["speedup"])
    if r["fastest"] == base:
        text = f"Fastest: {_code(base)} (the baseline)"
    elif has_ratio:
        text = f"Fastest: {_code(r['fastest'])}, " \
               f"{fmt_times(r['speedup'], r['speedup_lo'], r['speedup_hi'], than=_code(base))}"
    else:
        why = r["no_ratio"] if isinstance(r["no_ratio"], str) else "missing"
        text = f"Fastest: {_code(r['fastest'])} (no ratio: {_code(base) if base else 'baseline'} {why})" \
            if base else f"Fastest: {_code(r['fastest'])}"
    if tied:
        same = f"about as fast as {_code(base)}"
        within = ", ".join(_code(m) + (f" {fmt_times(s, lo, hi, same=same)}" if has_ratio and m != base else "")
                           for m, s, lo, hi in tied)
        text += f"; tied within noise: {within}"
    elif isinstance(r["fastest_next"], tuple) and not (has_ratio and r["fastest_next"][0] == base):
        m, ratio, lo, hi = r["fastest_next"]  # (a baseline runner-up would repeat the speed-up, inverted)
        text += f"; runner-up: {_code(m)}, {fmt_times(ratio, lo, hi, than=_code(r['fastest']))}"
    return text


MEMORY = {"more": "less memory", "less": "more memory", "same": "about the same memory"}  # a memory ratio in words


def _leanest_text(r: pd.Series) -> str:
    base = r["baseline"]
    if not isinstance(r["leanest"], str):
        return "Leanest: none (no finished cell)"
    if r["leanest"] == base:
        text = f"Leanest: {_code(base)} (the baseline)"
    elif pd.notna(r["mem_ratio"]):
        text = f"Leanest: {_code(r['leanest'])}, {fmt_times(1 / r['mem_ratio'], **MEMORY, than=_code(base))}"
    else:
        text = f"Leanest: {_code(r['leanest'])}"
    tied = _list(r["leanest_tied"])
    if tied:
        text += f"; tied within {MEM_TIE:.0%}: " + ", ".join(_code(m) for m in tied)
    elif isinstance(r["leanest_next"], tuple):
        m, ratio = r["leanest_next"]
        text += f"; runner-up: {_code(m)}, {fmt_times(1 / ratio, **MEMORY)}"
    return text


def verdict_lines(vt: pd.DataFrame) -> list[tuple[str, str]]:
    """``(N=4,096, "Fastest: ...; leanest: ...")`` per row of :func:`verdict_table` (markdown: names in backticks)."""
    out = []
    for _, r in vt.iterrows():
        text = f"{_fastest_text(r)}. {_leanest_text(r)}."
        left = _list(r["left_out"])
        if isinstance(r["fastest"], str) or len({w for _, w in left}) > 1:  # else the first sentence said it all
            for why in ("noisy", "untrusted"):
                names = [_code(m) for m, w in left if w == why]
                text += f" {why.capitalize()}, not judged: {', '.join(names)}." if names else ""
        out.append((f"N={int(r['seq_len']):,}", text))
    return out
