"""What each method learned, over its seeds, at each N; its change against softmax; the accuracy-versus-cost frontier.

:func:`accuracy_across_n` reduces the training rows (``attnbench train --models ... --seq ... --seeds K``) to one
row per (skeleton, task, N, model): how many seeds *learned* (best top-1 above chance by the binomial test of
:mod:`attnbench.learning`), the final and the best top-1 as a mean with its 95 % Student-t interval over the seeds,
the epochs to reach chance + half of softmax's gain (median over seeds, from the per-pair logs), and the wall time.
A method no seed of which learned has no top-1: its numbers are chance, not a measurement of the method
(:func:`top1_cell` says *did not learn within E epochs*). The verdict against softmax never calls one method better
than another where their intervals overlap. The cost comes from the efficiency rows of the same (model, skeleton,
N) (``attnbench run --skeleton <the trained skeleton> --seq ...``; the row is picked as
:func:`~attnbench.reporting.paper.pick_efficiency_row` does): median latency, peak memory; MACs are the trained
model's own count (one forward pass of one sample).

A method is *Pareto-optimal* at an N when no other method is at most as costly and at least as accurate (mean final
top-1), and strictly better in one of the two; only methods that learned (some seeds at least) and are not ablations
compete. :func:`plot_frontier` draws top-1 against latency and against peak memory, one panel per (skeleton, task,
N), each method a labelled point with its interval as error bar, the Pareto-optimal ones connected.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.learning import ALPHA, chance_pct, epochs_to_target, learn_threshold_pct, target_pct
from attnbench.reporting.format import DASH, fmt_latency, fmt_sig
from attnbench.reporting.load import efficiency, ensure_schema, is_ablation, labelled, select, task_of, \
    train_mask
from attnbench.reporting.logs import KEYS, pair_logs
from attnbench.reporting.paper import pick_efficiency_row
from attnbench.reporting.plots import _mpl, method_styles
from attnbench.reporting.seeds import mean_interval, seed_learned

__all__ = ["accuracy_across_n", "accuracy_display", "training_rows", "pareto", "frontier_rows", "draw_frontier",
           "plot_frontier",
           "verdict", "top1_cell", "learned_cell", "group_heading", "REFERENCE", "ACCURACY_NOTE", "FRONTIER_PNG",
           "COSTS", "CELL"]

FRONTIER_PNG = "frontier.png"  # the plot's file name in the report's folder

REFERENCE = "softmax"  # what every method's change in accuracy, and the epochs-to-target line, are measured against
COSTS = {"latency_ms_median": "latency (ms)", "peak_mem_mib": "peak memory (MiB)"}  # the frontier's x axes
CELL = ["skeleton", "task", "seq_len"]  # one comparison: the methods trained on one task at one N
# learned_status: every seed learned, some, none, or none known to (rows written before the learned test)
STATUS_ORDER = {"all": 0, "mixed": 1, "unknown": 2, "none": 3}
COLUMNS = CELL + ["model", "model_base", "ablation", "seeds", "learned_k", "learned_known", "learned_status",
                  "epochs_budget", "classes", "val_images", "top1_mean", "top1_ci", "best_mean", "best_ci",
                  "target_pct", "epochs_to_target", "drop", "verdict", "gmacs", "latency_ms_median", "latency_ms_iqr",
                  "peak_mem_mib", "train_hours_sum", "train_hours_mean", "pareto_latency_ms_median",
                  "pareto_peak_mem_mib"]
ACCURACY_NOTE = (
    "A seed learned when its best validation top-1 beats chance by a one-sided binomial test at the validation size "
    f"(p < {ALPHA:g}, `attnbench.learning`); **learned** counts the seeds that did (?: not known, a row written "
    "before the test). A method no seed of which learned shows 'did not learn' and no top-1: its figures are chance, "
    "not a measurement of the method. **final** is the top-1 after the last epoch (the EMA weights' where kept), "
    "**best** that of the best epoch; both are the mean over seeds ± the half-width of the 95 % Student-t interval "
    "(t₀.₉₇₅,ₙ₋₁ · s / √n; no interval for one seed). **epochs to target**: the first epoch at or above the "
    f"target (chance + half of {REFERENCE}'s gain in mean best top-1), median over seeds; — where the median seed "
    f"never reached it, or without per-epoch logs. **vs {REFERENCE}** is 'higher' or 'lower' only where the two "
    "intervals of final top-1 do not overlap; overlapping intervals are 'indistinguishable', and a single seed has no "
    "interval ('one seed'). Latency and peak memory come from the efficiency rows of the same model, skeleton and N "
    "(`attnbench run --skeleton <skeleton> --seq ...`), GMACs from the trained model (one forward pass of one "
    "sample). ★ marks the Pareto-optimal methods at that N (no other is both cheaper and more accurate), for "
    "latency / memory; a method that did not learn is not on the frontier, nor is an ablation. **train h**: wall "
    "hours of training, all seeds together / per seed.")


def training_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The finished training rows, labelled (``model`` as :func:`~attnbench.reporting.load.variant_labels` shows
    it, the name in ``model_base``), with their ``task`` and ``seed_learned`` (1, 0, NaN: unknown). A seed trained
    twice (two run dirs) counts once: its last row."""
    df = ensure_schema(df)
    train = df[train_mask(df) & (df["status"] == "ok") & df["top1"].notna()]
    train = labelled(train).assign(task=train["dataset"].map(task_of))
    train["seed_learned"] = train.apply(seed_learned, axis=1) if not train.empty else pd.Series(dtype=float)
    return train.drop_duplicates(KEYS, keep="last")


def _status(k: int, known: int, n: int) -> str:
    return "all" if k == n else "mixed" if k else "none" if known == n else "unknown"


def _cost(train: pd.DataFrame, eff: pd.DataFrame) -> dict[str, Any]:
    """The efficiency row's latency and memory for these training rows (one model, skeleton and N)."""
    t = train.iloc[0]
    cand = eff[(eff["model"] == t["model_base"]) & (eff["skeleton"] == t["skeleton"])
               & (eff["seq_len"] == t["seq_len"])]
    e = pick_efficiency_row(cand, t["hparams"])
    if e is None:
        return {}
    return {"latency_ms_median": e["latency_ms_median"], "latency_ms_iqr": e["latency_ms_iqr"],
            "peak_mem_mib": e["peak_mem_bytes"] / 2**20}


def _reduce(g: pd.DataFrame, eff: pd.DataFrame) -> dict[str, Any]:
    """One method at one (skeleton, task, N) over its seeds; no top-1 when no seed learned."""
    k, known = int((g["seed_learned"] == 1).sum()), int(g["seed_learned"].notna().sum())
    status = _status(k, known, len(g))
    top1, best = mean_interval(g["top1"]), mean_interval(g["best_top1"])
    if status == "none":
        top1 = best = (math.nan, math.nan)
    hours = g["train_hours"].astype(float)
    base = str(g["model_base"].iloc[0])
    return {"model_base": base, "ablation": is_ablation(base), "seeds": len(g), "learned_k": k,
            "learned_known": known, "learned_status": status,
            "epochs_budget": g["epochs_budget"].fillna(g["epochs"]).max(), "classes": g["classes"].max(),
            "val_images": g["val_images"].min(), "top1_mean": top1[0], "top1_ci": top1[1], "best_mean": best[0],
            "best_ci": best[1], "gmacs": g["macs"].astype(float).mean() / 1e9,
            "train_hours_sum": hours.sum(min_count=1), "train_hours_mean": hours.mean(), **_cost(g, eff)}


def _epochs_to(curves: pd.DataFrame, target: float) -> float:
    """The median over seeds of the first epoch at or above ``target`` (a seed that never reached it counts as
    beyond every epoch); NaN when the median seed never reached it, or without curves."""
    firsts = [epochs_to_target(list(c.sort_values("epoch")["top1"]), target) for _, c in curves.groupby("seed")]
    med = statistics.median([math.inf if f is None else f for f in firsts]) if firsts else math.nan
    return med if math.isfinite(med) else math.nan


def verdict(a: pd.Series, b: pd.Series) -> str:
    """``a`` against the reference ``b`` (reduced rows): higher, lower, indistinguishable (their intervals of final
    top-1 overlap), one seed, or why there is no comparison."""
    if a["learned_status"] == "none":
        return "did not learn"
    if b["learned_status"] == "none":
        return f"{b['model']} did not learn"
    if a["seeds"] < 2 or b["seeds"] < 2:
        return "one seed"
    if a["top1_mean"] - a["top1_ci"] > b["top1_mean"] + b["top1_ci"]:
        return "higher"
    if a["top1_mean"] + a["top1_ci"] < b["top1_mean"] - b["top1_ci"]:
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


def _compare(out: pd.DataFrame, logs: pd.DataFrame, reference: str) -> None:
    """Per comparison (in place): the change against ``reference`` and the verdict, the target line and the epochs
    to reach it, the Pareto sets of the methods that learned and are not ablations."""
    for key, g in out.groupby(CELL, sort=False):
        ref = g[g["model"] == reference]
        if not ref.empty:
            r = ref.iloc[0]
            out.loc[g.index, "drop"] = g["top1_mean"] - r["top1_mean"]
            out.loc[g.index, "verdict"] = [DASH if row["model"] == reference else verdict(row, r)
                                           for _, row in g.iterrows()]
            if r["learned_status"] != "none" and pd.notna(r["classes"]) and pd.notna(r["best_mean"]):
                target = target_pct(int(r["classes"]), r["best_mean"])
                at = select(logs, dict(zip(CELL, key)))
                out.loc[g.index, "target_pct"] = target
                out.loc[g.index, "epochs_to_target"] = [
                    math.nan if row["learned_status"] == "none" else _epochs_to(at[at["model"] == row["model"]], target)
                    for _, row in g.iterrows()]
        front = g[~g["ablation"].astype(bool) & (g["learned_status"] != "none")]
        for cost in COSTS:
            out.loc[front.index, f"pareto_{cost}"] = pareto(front[cost].astype(float), front["top1_mean"])


def accuracy_across_n(df: pd.DataFrame, reference: str = REFERENCE, logs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (skeleton, task, N, model label) over the finished training rows; columns ``COLUMNS``.

    ``logs`` are the pairs' :func:`~attnbench.reporting.logs.pair_logs` (read from each row's ``run_dir`` when not
    given): they give the epochs to target, and the best top-1 of rows written before it was a column. ``drop`` is
    the mean final top-1 minus ``reference``'s in the same comparison (NaN without it, or for a method that did not
    learn).
    """
    train = training_rows(df)
    if train.empty:
        return pd.DataFrame(columns=COLUMNS)
    logs = pair_logs(train) if logs is None else logs
    if not logs.empty:  # rows written before best_top1 was a column: the best epoch of their log
        train = train.join(logs.groupby(KEYS)["top1"].max().rename("_log_best"), on=KEYS)
        train["best_top1"] = train["best_top1"].fillna(train["_log_best"])
    train["best_top1"] = train["best_top1"].fillna(train["top1"])
    eff = efficiency(ensure_schema(df))
    eff = eff[eff["status"] == "ok"]
    rows = [{**dict(zip(CELL + ["model"], key)), **_reduce(g, eff)}
            for key, g in train.groupby(CELL + ["model"], sort=False)]
    out = pd.DataFrame(rows).reindex(columns=COLUMNS)
    out["seq_len"] = out["seq_len"].astype(int)
    out["verdict"] = pd.Series(DASH, index=out.index, dtype=object)
    for cost in COSTS:
        out[f"pareto_{cost}"] = False
    _compare(out, logs, reference)
    order = out["learned_status"].map(STATUS_ORDER) * 1e4 - out["top1_mean"].fillna(-1)
    return (out.assign(_o=order).sort_values(CELL + ["_o"]).drop(columns="_o").reset_index(drop=True))


# ------------------------------------------------------------------------------------------------ display

def _pm(mean: Any, half: Any) -> str:
    if pd.isna(mean):
        return DASH
    return f"{mean:.1f}" if pd.isna(half) else f"{mean:.1f} ± {half:.1f}"


def _budget(r: pd.Series) -> str:
    return f"{int(r['epochs_budget'])} epochs" if pd.notna(r["epochs_budget"]) else "its epochs"


def learned_cell(r: pd.Series) -> str:
    """``k/n`` seeds learned; ``?/n`` when none is known (rows written before the learned test), and how many are
    unknown when some are."""
    n, known = int(r["seeds"]), int(r["learned_known"])
    if not known:
        return f"?/{n}"
    return f"{int(r['learned_k'])}/{n}" + (f" ({n - known} unknown)" if known < n else "")


def top1_cell(r: pd.Series) -> str:
    """The mean final top-1 ± its interval; *did not learn* when no seed did, and the share of seeds that learned
    beside a mixed result."""
    if r["learned_status"] == "none":
        return f"did not learn within {_budget(r)} (0/{int(r['seeds'])} seeds)"
    text = _pm(r["top1_mean"], r["top1_ci"])
    return text + (f" ({int(r['learned_k'])}/{int(r['seeds'])} seeds learned)" if r["learned_status"] == "mixed"
                   else "")


def group_heading(g: pd.DataFrame, reference: str = REFERENCE) -> tuple[str, str]:
    """The bold title of one comparison and a line on what its figures are measured against."""
    r = g.iloc[0]
    title = f"**{r['skeleton']}, {r['task'] or 'task unknown'}, N={int(r['seq_len']):,}**"
    bits = []
    if pd.notna(r["classes"]):
        classes = int(r["classes"])
        bits.append(f"{classes} classes (chance {fmt_sig(chance_pct(classes), 3)} %)")
        if pd.notna(r["val_images"]):
            bits.append(f"a seed learned when its best top-1 ≥ "
                        f"{fmt_sig(learn_threshold_pct(int(r['val_images']), classes), 3)} % of "
                        f"{int(r['val_images']):,} validation images")
    if pd.notna(r["target_pct"]):
        bits.append(f"target {fmt_sig(r['target_pct'], 3)} % (chance + half of `{reference}`'s gain)")
    seeds = int(g["seeds"].max())
    bits.append(f"{seeds} seed{'s' if seeds > 1 else ''}" + (f", budget {_budget(r)}" if pd.notna(r["epochs_budget"])
                                                              else ""))
    return title, "; ".join(bits) + "."


def accuracy_display(table: pd.DataFrame, *, frontier: bool = True) -> pd.DataFrame:
    """The reduced rows as display strings, one row per method (the comparison is the table's heading); without
    the Pareto column for rows that never compete (ablations)."""
    out = pd.DataFrame({
        "model": table["model"], "learned": [learned_cell(r) for _, r in table.iterrows()],
        "final top-1 (%)": [top1_cell(r) for _, r in table.iterrows()],
        "best top-1 (%)": [_pm(m, h) for m, h in zip(table["best_mean"], table["best_ci"])],
        "epochs to target": table["epochs_to_target"].map(lambda e: DASH if pd.isna(e) else f"{e:g}"),
        f"Δ vs {REFERENCE}": table["drop"].map(lambda d: DASH if pd.isna(d) else f"{d:+.1f}"),
        f"vs {REFERENCE}": table["verdict"].fillna(DASH), "GMACs": table["gmacs"].map(fmt_sig),
        "latency (ms)": [fmt_latency(m, i) for m, i in zip(table["latency_ms_median"], table["latency_ms_iqr"])],
        "peak mem (MiB)": table["peak_mem_mib"].map(fmt_sig),
        "Pareto lat / mem": [DASH if s == "none" else ("★" if a else "·") + " / " + ("★" if b else "·")
                             for s, a, b in zip(table["learned_status"], table["pareto_latency_ms_median"],
                                                table["pareto_peak_mem_mib"])],
        "train h": [f"{fmt_sig(s, 2)} / {fmt_sig(m, 2)}" if pd.notna(s) else DASH
                    for s, m in zip(table["train_hours_sum"], table["train_hours_mean"])]})
    return out if frontier else out.drop(columns="Pareto lat / mem")


# ------------------------------------------------------------------------------------------------ plot

def _keep_inside(ax: Any, texts: list[Any]) -> None:
    """Shift each label (an annotation offset in points) back inside the axes where it sticks out."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    to_points = 72 / fig.dpi
    for t in texts:
        e = t.get_window_extent(renderer)
        dx = max(0.0, box.x0 - e.x0) - max(0.0, e.x1 - box.x1)
        dy = max(0.0, box.y0 - e.y0) - max(0.0, e.y1 - box.y1)
        if dx or dy:
            x, y = t.xyann
            t.xyann = (x + dx * to_points, y + dy * to_points)


def _panel(ax: Any, g: pd.DataFrame, cost: str, styles: dict[str, Any]) -> list[Any]:
    """One (comparison, cost) panel: points with their intervals, the Pareto line; returns the labels."""
    plt = _mpl()
    pts = g[g[cost].notna()].sort_values(["top1_mean", cost])
    for _, r in pts.iterrows():
        half = 0.0 if pd.isna(r["top1_ci"]) else r["top1_ci"]
        ax.errorbar(r[cost], r["top1_mean"], yerr=half, fmt=styles[r["model"]].marker, color=styles[r["model"]].color,
                    capsize=3, ms=6)
    front = pts[pts[f"pareto_{cost}"].astype(bool)].sort_values(cost)
    if len(front) > 1:
        ax.plot(front[cost], front["top1_mean"], "-", color="0.5", lw=1, zorder=0)
    ax.set_xscale("log")
    ticker = plt.matplotlib.ticker
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 4, 6, 10, not 4x10^0
    ax.xaxis.set_major_formatter(plain)
    if pts[cost].nunique() == 1:  # one cost: a narrow axis around it, not matplotlib's decade
        ax.set_xlim(pts[cost].iloc[0] / 1.6, pts[cost].iloc[0] * 1.6)
    ax.margins(x=0.12, y=0.12)
    lo, hi = ax.get_xlim()
    ax.xaxis.set_minor_formatter(plain if hi / lo < 5 else ticker.NullFormatter())  # minor labels: narrow axes
    labels = []
    for k, (_, r) in enumerate(pts.iterrows()):
        fx = ax.transAxes.inverted().transform(ax.transData.transform((r[cost], r["top1_mean"])))[0]
        right = fx > 0.5  # a label runs towards the middle; staggered, so that equal points stay legible
        labels.append(ax.annotate(r["model"], (r[cost], r["top1_mean"]), textcoords="offset points", fontsize=8,
                                  xytext=(-5 if right else 5, (4, 14, -12)[k % 3]), ha="right" if right else "left",
                                  color=styles[r["model"]].color))
    return labels


def frontier_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows the frontier is drawn from: methods that learned, not ablations, with a cost to draw against."""
    if table.empty:
        return table
    return table[~table["ablation"].astype(bool) & (table["learned_status"] != "none")
                 & table[list(COSTS)].notna().any(axis=1)]


def draw_frontier(table: pd.DataFrame, *, title: str | None = None) -> Any:
    """The Figure of top-1 against latency (top row) and peak memory (bottom row), one column per comparison, of
    :func:`frontier_rows`; None when there are none."""
    drawable = frontier_rows(table)
    if drawable.empty:
        return None
    plt = _mpl()
    cells = list(dict.fromkeys(zip(*(drawable[c] for c in CELL))))
    fig, axes = plt.subplots(len(COSTS), len(cells), figsize=(4.2 * len(cells) + 1.5, 3.6 * len(COSTS)),
                             squeeze=False, dpi=120)
    styles = method_styles(table["model"])
    labels = {}
    for col, (skeleton, task, n) in enumerate(cells):
        g = drawable[(drawable["skeleton"] == skeleton) & (drawable["task"] == task) & (drawable["seq_len"] == n)]
        for row, (cost, xlabel) in enumerate(COSTS.items()):
            ax = axes[row][col]
            labels[ax] = _panel(ax, g, cost, styles)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("final top-1 (%)")
            ax.set_title(f"{skeleton}, {task}, N={int(n):,}", fontsize=10)
            ax.grid(True, alpha=0.3)
    fig.suptitle((title or "Accuracy versus cost") + "\n(error bars: 95 % interval over seeds; grey line: "
                 "Pareto-optimal; methods that did not learn and ablations are not drawn)", fontsize=10)
    fig.tight_layout()
    for ax, texts in labels.items():
        _keep_inside(ax, texts)
    return fig


def plot_frontier(table: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Path | None:
    """Draw :func:`draw_frontier` into ``path``; returns it, or None when there is nothing to draw."""
    fig = draw_frontier(table, title=title)
    if fig is None:
        return None
    path = Path(path)
    fig.savefig(path)
    _mpl().close(fig)
    return path
