"""Two runs compared cell by cell: the latency ratio B / A with its interval and a verdict (``attnbench compare``).

Cells match on the results key (``results.KEY_COLUMNS``: model, skeleton, N, batch, dtype, device, mode, hparams).
Rounds of two runs are not paired, so the interval is a percentile bootstrap of median(B) / median(A) over the
rounds that counted in each (``stats.bootstrap_ratio``, fixed seed); a run without rounds (older results) falls
back to its median ± IQR/2. The verdict is ``slower`` (interval above 1), ``faster`` (below 1) or ``within noise``;
``untrusted`` when either cell failed the trust rules, and the status when either did not finish.
A regression (``--fail-above PCT``) is a cell judged ``slower`` whose ratio exceeds 1 + PCT/100.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.results import KEY_COLUMNS, load_results, read_meta
from attnbench.stats import CONFIDENCE, Interval, bootstrap_ratio, change_verdict, finite, used_rounds

__all__ = ["ENV_KEYS", "Comparison", "env_differences", "compare_runs", "regressions", "check_fail_above",
           "compare_markdown", "fmt_num"]

# environment fields that make timings incomparable (with machine.IDENTITY_KEYS, the hardware beyond its name)
ENV_KEYS = ("cpu", "cpu_count", "gpu", "torch", "cuda")
COLUMNS = ["model", "skeleton", "seq_len", "batch", "dtype", "device", "mode", "a_ms", "b_ms", "ratio", "lo", "hi",
           "verdict", "note"]


@dataclass
class Comparison:
    """``table``: one row per matching cell (:data:`COLUMNS`); ``warnings``: what makes the runs incomparable."""

    a: str
    b: str
    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def _load(run: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    d = Path(run)
    if not d.exists():
        raise ValueError(f"no such run directory: {d}")
    if not d.is_dir() or not (d / "results.csv").exists():
        raise ValueError(f"not an attnbench run directory: {d} (no results.csv)")
    df = load_results(d)
    if "scope" in df.columns:
        df = df[df["scope"] != "train"]
    if df.empty:
        raise ValueError(f"run {d} has no efficiency rows to compare")
    df = df.assign(_key=[tuple(str(r.get(k)) for k in KEY_COLUMNS) for r in _keyed(df)])
    return df.drop_duplicates("_key", keep="last"), read_meta(d)


def _keyed(df: pd.DataFrame) -> list[dict[str, Any]]:
    from attnbench.cell import key_of

    return [dict(zip(KEY_COLUMNS, key_of(r))) for r in df.to_dict("records")]


def _rounds(row: dict[str, Any]) -> list[float]:
    """The latencies of the rounds that counted (none for a row without rounds)."""
    return [v for v in used_rounds(row.get("latency_ms_rounds"), row.get("rounds_excluded")) if v is not None]


def _fallback(a: dict[str, Any], b: dict[str, Any]) -> Interval:
    """Median ± IQR/2 on each side (a run without rounds)."""
    ma, mb = float(a["latency_ms_median"]), float(b["latency_ms_median"])
    ia, ib = (float(r["latency_ms_iqr"]) if finite(r.get("latency_ms_iqr")) else 0.0 for r in (a, b))
    hi_den = ma - ia / 2
    return Interval(mb / ma, (mb - ib / 2) / (ma + ia / 2), (mb + ib / 2) / hi_den if hi_den > 0 else math.inf,
                    1, 0.5, "quartiles")


def env_differences(ea: dict[str, Any], eb: dict[str, Any]) -> list[str]:
    """What makes two runs' timings incomparable, one phrase each, from their ``environment()`` (meta.json's, or a
    report's flattened meta): the model, cores and software (:data:`ENV_KEYS`; missing counts as a value: a GPU on
    one side only), then the hardware's identity (``machine.IDENTITY_KEYS``: family, model, stepping, kernel ISA,
    GPU capability and driver; a key an older meta.json lacks is unknown, not a difference)."""
    from attnbench.machine import differences

    return [f"{k} {ea.get(k)!r} vs {eb.get(k)!r}" for k in ENV_KEYS if ea.get(k) != eb.get(k)] + differences(ea, eb)


def _compare_cell(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {k: a.get(k) for k in ("model", "skeleton", "seq_len", "batch", "dtype", "device", "mode")}
    if a.get("status") != "ok" or b.get("status") != "ok":
        return {**out, "verdict": f"A {a.get('status')}, B {b.get('status')}", "note": "not both finished"}
    ra, rb = _rounds(a), _rounds(b)
    iv = bootstrap_ratio(ra, rb) if len(ra) >= 2 and len(rb) >= 2 else _fallback(a, b)
    out.update(a_ms=float(a["latency_ms_median"]), b_ms=float(b["latency_ms_median"]), ratio=iv.mid, lo=iv.lo,
               hi=iv.hi, verdict=change_verdict(iv),
               note=f"{iv.method}, {len(ra)} vs {len(rb)} rounds" if iv.method == "bootstrap" else
               "no rounds: median ± IQR/2")
    untrusted = [side for side, r in (("A", a), ("B", b)) if finite(r.get("trusted")) and not r["trusted"]]
    if untrusted:
        out.update(verdict="untrusted", note=f"untrusted in {' and '.join(untrusted)}: " + "; ".join(
            str(r.get("untrusted_reason")) for side, r in (("A", a), ("B", b)) if side in untrusted))
    return out


def compare_runs(run_a: str | Path, run_b: str | Path) -> Comparison:
    """Compare run ``run_b`` against ``run_a``; one-line ValueError for a missing, empty or non-run directory, or
    when the runs have no cell in common."""
    (da, ma), (db, mb) = _load(run_a), _load(run_b)
    common = [k for k in da["_key"] if k in set(db["_key"])]
    if not common:
        def cells(df: pd.DataFrame) -> str:
            return f"{', '.join(dict.fromkeys(df['model'].astype(str)))} at N={sorted(set(df['seq_len']))}"
        raise ValueError(f"runs {run_a} and {run_b} have no cell in common (A: {cells(da)}; B: {cells(db)}; "
                         "cells match on model, skeleton, N, batch, dtype, device, mode and hparams)")
    ra, rb = (df.set_index("_key").to_dict("index") for df in (da, db))
    table = pd.DataFrame([_compare_cell(ra[k], rb[k]) for k in common]).reindex(columns=COLUMNS)
    warnings = []
    diff = env_differences(ma.get("environment") or {}, mb.get("environment") or {})
    if diff:
        warnings.append("the runs come from different machines or software: " + "; ".join(diff) +
                        "; their ratios mix the change with the difference")
    return Comparison(str(run_a), str(run_b), table, warnings)


def check_fail_above(pct: Any) -> None:
    """A regression threshold must be a finite percentage in 0 .. ``MAX_FAIL_ABOVE``: ``nan`` compares false with
    every ratio and ``inf`` exceeds them all, either of which would switch a CI gate off without a word."""
    from attnbench.config import MAX_FAIL_ABOVE, check_at_most, check_nonnegative

    check_nonnegative("fail_above", pct, "a finite percentage >= 0, e.g. 10")
    check_at_most("fail_above", pct, MAX_FAIL_ABOVE, "B 101 times slower than A; a larger threshold switches the "
                                                     "gate off")


def regressions(cmp: Comparison, fail_above_pct: float) -> pd.DataFrame:
    """Cells judged ``slower`` whose ratio B/A exceeds ``1 + fail_above_pct / 100`` (checked: ``check_fail_above``)."""
    check_fail_above(fail_above_pct)
    t = cmp.table
    return t[(t["verdict"] == "slower") & (t["ratio"] > 1 + fail_above_pct / 100)]


def fmt_num(v: Any) -> str:
    """3 significant figures as the report writes them (``reporting.format.fmt_sig``: ``1,020``, never ``1.02e+03``);
    ∞; a dash for a missing value."""
    from attnbench.reporting.format import fmt_sig

    return fmt_sig(v, 3) if finite(v) else ("∞" if isinstance(v, float) and v == math.inf else "—")


def compare_markdown(cmp: Comparison) -> str:
    """The comparison as markdown: a header naming both runs, the warnings, then the table."""
    lines = [f"# attnbench compare: B = `{cmp.b}` against A = `{cmp.a}`", ""]
    lines += [f"**Warning:** {w}." for w in cmp.warnings] + ([""] if cmp.warnings else [])
    lines += [f"Ratio = B latency / A latency (> 1: B is slower), with a {CONFIDENCE:.0%} percentile bootstrap "
              "interval over each run's rounds (seed 0; rounds of two runs are not paired).", "",
              "| model | skeleton | N | mode | A ms | B ms | B/A | interval | verdict | note |",
              "|---|---|---:|---|---:|---:|---:|---|---|---|"]
    for _, r in cmp.table.iterrows():
        note = r["note"] if isinstance(r["note"], str) else ""
        lines.append(f"| {r['model']} | {r['skeleton']} | {r['seq_len']} | {r['mode']} | {fmt_num(r['a_ms'])} | "
                     f"{fmt_num(r['b_ms'])} | {fmt_num(r['ratio'])} | {fmt_num(r['lo'])}–{fmt_num(r['hi'])} | "
                     f"{r['verdict']} | {note} |")
    return "\n".join(lines) + "\n"
