"""Plots of a sweep: peak memory, latency and FLOPs against N, log-log, one line per model.

One PNG per quantity and mode (``memory_infer.png``, ``latency_train.png``, ``flops.png``), written into the run
directory. A cell that did not finish is an ``x`` at its N, drawn at the height of the model's last finished point
and labelled with its status (``oom``, ``timeout``, ...), so a line that stops says why it stopped.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.reporting.load import train_mask
from attnbench.results import COLUMN_SPECS
from attnbench.schema import Column

__all__ = ["plot_all", "plot_quantity", "QUANTITIES"]

# file stem -> the column drawn: every column of the results schema that declares a plot
QUANTITIES: dict[str, Column] = {c.plot.stem: c for c in COLUMN_SPECS.values() if c.plot is not None}
_MARKERS = "osD^v<>ph*"


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_quantity(df: pd.DataFrame, quantity: str, path: str | Path, *, title: str | None = None) -> Path | None:
    """Draw one quantity of ``df`` (rows of one skeleton/batch/dtype/device, one mode) against N into ``path``.

    Returns the path, or None when there is nothing to draw.
    """
    c = QUANTITIES[quantity]
    col, scale, ylabel = c.name, c.plot.scale, c.plot.ylabel
    df = df.copy()
    df["seq_len"] = pd.to_numeric(df["seq_len"], errors="coerce")
    df["_y"] = pd.to_numeric(df[col], errors="coerce") * scale
    ok_flops = quantity == "flops"  # MACs are counted even where timing failed, but only trust ok rows
    ok = (df["status"] == "ok") & (df["_y"] > 0)
    if not ok.any() and not ok_flops:
        return None
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=110)
    models = list(dict.fromkeys(df["model"].astype(str)))
    for i, model in enumerate(models):
        g = df[df["model"] == model].sort_values("seq_len")
        good = g[ok.loc[g.index]]
        color = f"C{i % 10}"
        line_style = "--" if model.startswith("softmax") else "-"
        if not good.empty:
            ax.plot(good["seq_len"], good["_y"], line_style, marker=_MARKERS[i % len(_MARKERS)], color=color,
                    label=model, markersize=4, linewidth=1.6)
        failed = g[g["status"] != "ok"]
        for n, status in zip(failed["seq_len"], failed["status"]):
            before = good[good["seq_len"] < n]
            ref = before if not before.empty else good
            if ref.empty:
                continue
            x0, y = float(ref["seq_len"].iloc[-1]), float(ref["_y"].iloc[-1])
            if x0 < n:
                ax.plot([x0, n], [y, y], ":", color=color, linewidth=1)
            ax.plot([n], [y], "x", color=color, markersize=9, markeredgewidth=2)
            ax.annotate(str(status), (n, y), textcoords="offset points", xytext=(-6, -12), ha="right", fontsize=7,
                        color=color)
        if good.empty and not failed.empty:
            ax.plot([], [], "x", color=color, label=f"{model} (all {', '.join(sorted(set(failed['status'])))})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ns = sorted(df["seq_len"].dropna().unique())
    if ns:
        ax.set_xticks(ns)
        ax.set_xticklabels([f"{int(n):,}" for n in ns], rotation=45 if len(ns) > 6 else 0, fontsize=8)
        ax.minorticks_off()
        if len(ns) == 1:
            ax.set_xlim(ns[0] / math.sqrt(2), ns[0] * math.sqrt(2))
    ax.set_xlabel("sequence length N (tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title or quantity, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _title(key: dict[str, Any], quantity: str) -> str:
    bits = [str(key.get(k)) for k in ("skeleton", "mode", "dtype", "device") if key.get(k) is not None
            and not (isinstance(key.get(k), float) and math.isnan(key.get(k)))]
    if key.get("batch") is not None and not pd.isna(key.get("batch")):
        bits.insert(1, f"batch {int(key['batch'])}")
    return f"{quantity} vs N — " + ", ".join(bits)


def plot_all(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write every plot of ``df`` (efficiency rows) into ``out_dir``; returns the files written.

    File names: ``<stem>_<mode>.png`` (memory, latency) and ``flops.png``; a ``_<skeleton>-b<batch>-<dtype>-<device>``
    suffix is added when the rows span several of those combinations.
    """
    out_dir = Path(out_dir)
    if df.empty:
        return []
    df = df[~train_mask(df)]  # training rows are not efficiency cells
    combo_cols = [c for c in ("skeleton", "batch", "dtype", "device") if c in df.columns]
    combos = list(df.groupby(combo_cols, dropna=False, sort=True))
    files: list[Path] = []
    for key, g in combos:
        key = dict(zip(combo_cols, key if isinstance(key, tuple) else (key,)))
        suffix = "" if len(combos) == 1 else "_" + "-".join(
            [str(key.get("skeleton")), f"b{key.get('batch')}", str(key.get("dtype")), str(key.get("device"))])
        suffix = suffix.replace("/", "_").replace(":", "")
        for quantity, c in QUANTITIES.items():
            stem = c.plot.stem
            if c.plot.per_mode:
                for mode, gm in g.groupby("mode", sort=True):
                    p = plot_quantity(gm, quantity, out_dir / f"{stem}_{mode}{suffix}.png",
                                      title=_title({**key, "mode": mode}, quantity))
                    files += [p] if p else []
            else:
                # FLOPs are the forward count: the same for every mode; prefer infer rows
                gf = g.sort_values("mode", key=lambda s: s != "infer").drop_duplicates(["model", "seq_len"])
                p = plot_quantity(gf, quantity, out_dir / f"{stem}{suffix}.png", title=_title(key, "forward FLOPs"))
                files += [p] if p else []
    return files
