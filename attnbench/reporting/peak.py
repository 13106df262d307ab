"""The "% of peak" column: a cell's achieved GFLOP/s over the sustained matmul peak, which it can never exceed.

The calibration (``measure.calibrate``) is itself a measurement. A cell faster than it means the calibration
missed this machine's ceiling, not that the cell beat the hardware: the report says so once (:func:`peak_notes`)
and re-bases the shares of that calibration (one run, device, dtype and thread count) on the best rate observed
there, so that no share above 100 % is ever printed as if it were true (:func:`peak_shares`).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["peak_shares", "peak_notes"]

KEY = ["run", "device", "dtype", "num_threads"]  # the cells measured against one calibration


def _ceilings(df: pd.DataFrame) -> pd.DataFrame:
    """Per row: ``achieved``, ``peak`` (calibrated), ``best`` (the highest achieved of its calibration's cells) and
    ``ceiling``, the larger of the two, which the share is taken against."""
    ok = df["status"] == "ok" if "status" in df.columns else pd.Series(True, index=df.index)
    num = {c: pd.to_numeric(df[c], errors="coerce") if c in df.columns else pd.Series(float("nan"), index=df.index)
           for c in ("achieved_gflops", "peak_gflops")}
    out = pd.DataFrame({"achieved": num["achieved_gflops"].where(ok), "peak": num["peak_gflops"]}, index=df.index)
    keys = [df[k].astype(str) for k in KEY if k in df.columns]
    best = out["achieved"].groupby(keys, dropna=False).transform("max") if keys else \
        pd.Series(out["achieved"].max(), index=df.index)
    out["best"] = best
    out["ceiling"] = out[["peak", "best"]].max(axis=1).where(out["peak"] > 0)
    return out


def peak_shares(df: pd.DataFrame) -> pd.Series:
    """Each row's achieved GFLOP/s over its ceiling: the calibrated peak, or the best rate its calibration's cells
    reached where one of them exceeded it; NaN where either is unknown or the cell did not finish. At most 1."""
    c = _ceilings(df)
    return (c["achieved"] / c["ceiling"]).where(c["achieved"].notna() & c["ceiling"].notna())


def _calibration_line(meta: dict[str, Any]) -> str | None:
    """``Calibrated matmul peak (cpu, 2 thread(s), best of >= 5 blocks): fp32 142 GFLOP/s sustained, 91% of the
    theoretical 157 GFLOP/s (...)``; None for a run without a calibration."""
    cal = meta.get("calibration")
    if not isinstance(cal, dict) or not cal.get("matmul_gflops"):
        return None
    theory = cal.get("theoretical_gflops") or {}
    parts = []
    for dtype, gflops in cal["matmul_gflops"].items():
        text = f"{dtype} {gflops:.3g} GFLOP/s sustained"
        if isinstance(theory.get(dtype), dict) and theory[dtype].get("gflops"):
            t = theory[dtype]
            text += f", {gflops / t['gflops']:.0%} of the theoretical {t['gflops']:.3g} GFLOP/s ({t.get('basis', '')})"
        parts.append(text)
    where = f"{cal.get('device', '?')}, {cal.get('threads', '?')} thread(s)"
    busy = "; taken while other processes held the cores, so it may read low" if cal.get("disturbed") else ""
    return f"Calibrated matmul peak ({where}, {cal.get('method', 'median of blocks')}): {'; '.join(parts)}{busy}."


def _rebased_line(df: pd.DataFrame) -> str | None:
    c = _ceilings(df)
    over = c["achieved"] > c["peak"]
    if not over.any():
        return None
    worst = (c["achieved"] / c["peak"])[over].max()
    top = df.loc[c.loc[over, "achieved"].idxmax()]
    return (f"**% of peak re-based:** {int(over.sum())} cell(s) ran faster than the calibrated matmul peak (up to "
            f"{worst:.0%} of it), so the calibration failed to measure this machine's ceiling. Their calibration's "
            f"shares are taken against the best rate observed in the run instead ({c.loc[over, 'best'].max():.3g} "
            f"GFLOP/s, `{top.get('model')}` N={int(top.get('seq_len')):,} {top.get('mode')} = 100%).")


def peak_notes(df: pd.DataFrame, metas: list[dict[str, Any]]) -> list[str]:
    """What the share column is measured against: each run's calibrated peak beside the theoretical one, and, once,
    that the column was re-based where cells exceeded the calibration; [] for a report without shares."""
    if "peak_gflops" not in df.columns or pd.to_numeric(df["peak_gflops"], errors="coerce").isna().all():
        return []
    lines = list(dict.fromkeys(line for m in metas if (line := _calibration_line(m))))
    rebased = _rebased_line(df)
    return lines + ([rebased] if rebased else [])
