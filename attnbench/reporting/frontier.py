"""Trained accuracy across sequence lengths, and the accuracy-versus-cost frontier.

:func:`accuracy_across_n` reduces the training rows (``attnbench train --models ... --seq ... --seeds K``) to one
row per (skeleton, N, model): top-1 mean ± std over the seeds (min and max too), the change relative to softmax at
the same N with its spread, and a verdict against softmax that never calls one method better than another where
their seed ranges (min..max) overlap: it says *indistinguishable* there, and *one seed* where a range is unknown.
The cost comes from the efficiency rows of the same (model, skeleton, N) (``attnbench run --skeleton <the trained
skeleton> --seq ...``; the row is picked as :func:`~attnbench.reporting.paper.pick_efficiency_row` does): median
latency, peak memory; MACs are the trained model's own count (one forward pass of one sample).

A method is *Pareto-optimal* at an N when no other method is at most as costly and at least as accurate (mean
top-1), and strictly better in one of the two; :func:`plot_frontier` draws top-1 against latency and against peak
memory, one panel per N, each method a labelled point with its seed range as error bar, the Pareto-optimal ones
connected.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.reporting.format import DASH, fmt_latency, fmt_sig
from attnbench.reporting.load import efficiency, ensure_schema, train_mask, variant_labels
from attnbench.reporting.paper import pick_efficiency_row
from attnbench.reporting.plots import _mpl, method_styles

__all__ = ["accuracy_across_n", "accuracy_display", "pareto", "plot_frontier", "verdict", "REFERENCE",
           "FRONTIER_NOTE", "FRONTIER_PNG", "COSTS"]

FRONTIER_PNG = "frontier.png"  # the plot's file name in the report's folder

REFERENCE = "softmax"  # what every method's change in accuracy is measured against
COSTS = {"latency_ms_median": "latency (ms)", "peak_mem_mib": "peak memory (MiB)"}  # the frontier's x axes
COLUMNS = ["skeleton", "seq_len", "model", "seeds", "top1_mean", "top1_std", "top1_min", "top1_max", "drop",
           "drop_spread", "verdict", "gmacs", "latency_ms_median", "latency_ms_iqr", "peak_mem_mib", "train_hours",
           "pareto_latency_ms_median", "pareto_peak_mem_mib"]
FRONTIER_NOTE = (
    "top-1 is mean ± std over the training seeds (n = seeds). Δ vs softmax is the difference of the means at the "
    "same N, ± the root of the sum of both variances. A method is called higher or lower than softmax only where "
    "their seed ranges (min..max) do not overlap; overlapping ranges are *indistinguishable*, and a single seed "
    "has no range (*one seed*). Latency and peak memory come from the efficiency rows of the same model, skeleton "
    "and N (`attnbench run --skeleton <skeleton> --seq ...`), GMACs from the trained model (one forward pass of "
    "one sample). ★ marks the Pareto-optimal methods at that N (no other is both cheaper and more accurate), for "
    "latency / memory.")


def verdict(a: pd.Series, b: pd.Series) -> str:
    """``a`` against ``b`` (rows with seeds, top1_min, top1_max): higher, lower, indistinguishable or one seed."""
    if a["seeds"] < 2 or b["seeds"] < 2:
        return "one seed"
    if a["top1_min"] > b["top1_max"]:
        return "higher"
    if a["top1_max"] < b["top1_min"]:
        return "lower"
    return "indistinguishable"


def pareto(cost: pd.Series, acc: pd.Series) -> pd.Series:
    """True where no other point is at most as costly and at least as accurate, strictly better in one (NaN: False).
    """
    ok = cost.notna() & acc.notna()
    out = pd.Series(False, index=cost.index)
    for i in cost.index[ok]:
        dominated = ((cost[ok] <= cost[i]) & (acc[ok] >= acc[i]) & ((cost[ok] < cost[i]) | (acc[ok] > acc[i]))).any()
        out[i] = not dominated
    return out


def _cost(train: pd.DataFrame, eff: pd.DataFrame) -> dict[str, Any]:
    """The efficiency row's latency and memory for these training rows (one model, skeleton and N)."""
    t = train.iloc[0]
    cand = eff[(eff["model"] == t["model"]) & (eff["skeleton"] == t["skeleton"]) & (eff["seq_len"] == t["seq_len"])]
    e = pick_efficiency_row(cand, t["hparams"])
    if e is None:
        return {}
    return {"latency_ms_median": e["latency_ms_median"], "latency_ms_iqr": e["latency_ms_iqr"],
            "peak_mem_mib": e["peak_mem_bytes"] / 2**20}


def accuracy_across_n(df: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """One row per (skeleton, N, model label) over the finished training rows; columns ``COLUMNS``.

    ``drop`` is the mean top-1 minus ``reference``'s at the same skeleton and N (NaN without it), ``drop_spread``
    the root of the sum of both variances (NaN with fewer than two seeds on either side).
    """
    df = ensure_schema(df)
    train = df[train_mask(df) & (df["status"] == "ok") & df["top1"].notna()].copy()
    if train.empty:
        return pd.DataFrame(columns=COLUMNS)
    train["label"] = variant_labels(train)
    eff = efficiency(df)
    eff = eff[eff["status"] == "ok"]
    rows = []
    for (skeleton, n, label), g in train.groupby(["skeleton", "seq_len", "label"], sort=False):
        g = g.drop_duplicates("seed", keep="last")  # a seed trained twice (two run dirs) counts once
        top1 = g["top1"].astype(float)
        rows.append({"skeleton": skeleton, "seq_len": int(n), "model": label, "seeds": len(g),
                     "top1_mean": top1.mean(), "top1_std": top1.std(ddof=1) if len(g) > 1 else math.nan,
                     "top1_min": top1.min(), "top1_max": top1.max(), "gmacs": g["macs"].astype(float).mean() / 1e9,
                     "train_hours": g["train_hours"].astype(float).mean(), **_cost(g, eff)})
    out = pd.DataFrame(rows).reindex(columns=COLUMNS)
    out["verdict"] = pd.Series(DASH, index=out.index, dtype=object)
    for cost in COSTS:
        out[f"pareto_{cost}"] = False
    for (_, _), g in out.groupby(["skeleton", "seq_len"], sort=False):
        ref = g[g["model"] == reference]
        if not ref.empty:
            r = ref.iloc[0]
            out.loc[g.index, "drop"] = g["top1_mean"] - r["top1_mean"]
            out.loc[g.index, "drop_spread"] = (g["top1_std"] ** 2 + r["top1_std"] ** 2) ** 0.5
            out.loc[g.index, "verdict"] = [DASH if m == reference else verdict(row, r)
                                           for m, (_, row) in zip(g["model"], g.iterrows())]
        for cost in COSTS:
            out.loc[g.index, f"pareto_{cost}"] = pareto(g[cost].astype(float), g["top1_mean"])
    order = out["top1_mean"].rank(ascending=False, method="first")
    return (out.assign(_o=order).sort_values(["skeleton", "seq_len", "_o"]).drop(columns="_o")
            .reset_index(drop=True))


def _pm(mean: Any, spread: Any, signed: bool = False) -> str:
    if pd.isna(mean):
        return DASH
    text = (f"{mean:+.1f}" if signed else f"{mean:.1f}")
    return text if pd.isna(spread) else f"{text} ± {spread:.1f}"


def accuracy_display(table: pd.DataFrame) -> pd.DataFrame:
    """The accuracy-across-N table as display strings (one row per skeleton, N and model)."""
    star = [("★" if a else "·") + " / " + ("★" if b else "·")
            for a, b in zip(table["pareto_latency_ms_median"], table["pareto_peak_mem_mib"])]
    return pd.DataFrame({
        "skeleton": table["skeleton"], "N": table["seq_len"].map(lambda n: f"{int(n):,}"), "model": table["model"],
        "top-1 (%)": [_pm(m, s) for m, s in zip(table["top1_mean"], table["top1_std"])],
        "n": table["seeds"].map(str),
        "Δ vs softmax": [_pm(m, s, signed=True) for m, s in zip(table["drop"], table["drop_spread"])],
        "vs softmax": table["verdict"], "GMACs": table["gmacs"].map(fmt_sig),
        "latency (ms)": [fmt_latency(m, i) for m, i in zip(table["latency_ms_median"], table["latency_ms_iqr"])],
        "peak mem (MiB)": table["peak_mem_mib"].map(fmt_sig), "Pareto lat / mem": star,
        "train h": table["train_hours"].map(lambda h: fmt_sig(h, 2))})


def plot_frontier(table: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Path | None:
    """Top-1 against latency (top row) and peak memory (bottom row), one column per (skeleton, N); None when no
    row has a cost to draw against."""
    drawable = table[table[list(COSTS)].notna().any(axis=1)]
    if drawable.empty:
        return None
    plt = _mpl()
    cells = list(dict.fromkeys(zip(drawable["skeleton"], drawable["seq_len"])))
    fig, axes = plt.subplots(len(COSTS), len(cells), figsize=(4.2 * len(cells) + 1.5, 3.6 * len(COSTS)),
                             squeeze=False)
    styles = method_styles(table["model"])
    for col, (skeleton, n) in enumerate(cells):
        g = drawable[(drawable["skeleton"] == skeleton) & (drawable["seq_len"] == n)]
        for row, (cost, xlabel) in enumerate(COSTS.items()):
            ax = axes[row][col]
            pts = g[g[cost].notna()].sort_values(["top1_mean", cost])
            for k, (_, r) in enumerate(pts.iterrows()):
                st = styles[r["model"]]
                yerr = [[r["top1_mean"] - r["top1_min"]], [r["top1_max"] - r["top1_mean"]]]
                ax.errorbar(r[cost], r["top1_mean"], yerr=yerr, fmt=st.marker, color=st.color, capsize=3, ms=6)
                ax.annotate(r["model"], (r[cost], r["top1_mean"]), textcoords="offset points", fontsize=8,
                            xytext=(5, (4, 14, -12)[k % 3]), color=st.color)  # staggered: equal points stay legible
            front = pts[pts[f"pareto_{cost}"].astype(bool)].sort_values(cost)
            if len(front) > 1:
                ax.plot(front[cost], front["top1_mean"], "-", color="0.5", lw=1, zorder=0)
            ax.set_xscale("log")
            ticker = plt.matplotlib.ticker
            plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 4, 6, 10, not 4x10^0
            ax.xaxis.set_major_formatter(plain)
            if pts[cost].nunique() == 1:  # one cost: a narrow axis around it, not matplotlib's decade
                ax.set_xlim(pts[cost].iloc[0] / 1.6, pts[cost].iloc[0] * 1.6)
            lo, hi = ax.get_xlim()
            ax.xaxis.set_minor_formatter(plain if hi / lo < 5 else ticker.NullFormatter())  # minor labels: narrow axes
            ax.set_xlabel(xlabel)
            ax.set_ylabel("top-1 (%)")
            ax.set_title(f"{skeleton}, N={int(n):,}", fontsize=10)
            ax.grid(True, alpha=0.3)
    fig.suptitle((title or "Accuracy versus cost") + "\n(error bars: seed min..max; grey line: Pareto-optimal)",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
