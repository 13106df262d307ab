"""Plots of a sweep: every plotted column of the results schema against N, log-log, one line per model.

One PNG per quantity and mode (``memory_infer.png``, ``latency_train.png``, ``flops.png``), written into the run
directory. Every model keeps one colour and marker in every figure of a run (:func:`method_styles`: the registry's
core methods first, then the others by name, on Paul Tol's colour-blind-safe "muted" palette). A quantity whose
spread is measured (``latency_ms_median`` with ``latency_ms_iqr``) gets a band up to median + IQR/2 and as far
down on the log axis (a skewed spread cannot push it to zero).
A line that would hide under another (within :data:`OVERLAP` at every N) is drawn dashed with its markers shifted
and says which line it overlaps in the legend, which sits outside the data. A cell that did not finish is an ``x``
at its N, drawn at the height of the model's last finished point and labelled with its status (``oom``,
``timeout``, ...), so a line that stops says why it stopped. A timed point that the verdict does not judge is drawn
hollow (untrusted, the tables' §) or half-filled (noisy, †), the line into and out of it dotted, and the legend
says so: a clean-looking line would claim a ratio the report refuses to give.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.registry import CORE_MODELS
from attnbench.reporting.format import NOISE_MARK, NOISY, UNTRUSTED_MARK
from attnbench.reporting.load import train_mask
from attnbench.results import COLUMN_SPECS
from attnbench.schema import Column

__all__ = ["plot_all", "plot_quantity", "draw_quantity", "method_styles", "Style", "QUANTITIES", "PALETTE",
           "OVERLAP"]

# file stem -> the column drawn: every column of the results schema that declares a plot
QUANTITIES: dict[str, Column] = {c.plot.stem: c for c in COLUMN_SPECS.values() if c.plot is not None}
# Paul Tol's "muted" qualitative palette (colour-blind safe), then black
PALETTE = ("#332288", "#CC6677", "#117733", "#DDCC77", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499",
           "#000000")
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h", "<", ">")
DASHES: tuple[Any, ...] = ("-", (0, (6, 2)), (0, (2, 2)), (0, (6, 2, 2, 2)))  # k-th line over the same points
OVERLAP = 0.03  # two lines within 3 % of each other at every shared N would look like one
# how a point whose latency the verdict does not judge is drawn (the tables' § and †)
TRUST_MARKERS: dict[str, dict[str, Any]] = {"untrusted": {"markerfacecolor": "white"},
                                            "noisy": {"fillstyle": "left", "markerfacecoloralt": "white"}}


@dataclass(frozen=True)
class Style:
    """How one model is drawn in every figure of a run."""

    color: str
    marker: str


def method_styles(models: Iterable[str], bases: dict[str, str] | None = None) -> dict[str, Style]:
    """A colour and marker per model label: slots in the registry's order (the core methods first, each in its
    fixed slot whether present or not, then the others by name); a second hparams variant of a model (``bases``
    maps a label to its model) takes the next free slot. The same labels always get the same styles."""
    labels = sorted(set(models))
    bases = bases or {}
    base_of = {m: bases.get(m, m) for m in labels}
    order = list(CORE_MODELS) + sorted({b for b in base_of.values() if b not in CORE_MODELS})
    slots: dict[str, int] = {}
    extra = len(order)
    for m in sorted(labels, key=lambda m: (order.index(base_of[m]), m)):
        slot = order.index(base_of[m])
        if slot in slots.values():  # a further variant of the same model
            slot, extra = extra, extra + 1
        slots[m] = slot
    n = len(PALETTE)
    return {m: Style(PALETTE[i % n], MARKERS[(i + i // n) % len(MARKERS)])
            for m, i in sorted(slots.items(), key=lambda kv: kv[1])}


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _spread_column(c: Column) -> str | None:
    """The IQR column of a median column (``latency_ms_median`` -> ``latency_ms_iqr``), if the schema has one."""
    if not c.name.endswith("_median"):
        return None
    name = c.name[: -len("_median")] + "_iqr"
    return name if name in COLUMN_SPECS else None


def _overlaps(series: dict[float, float], drawn: list[tuple[str, dict[float, float]]]) -> list[str]:
    """The labels of drawn lines that ``series`` would hide under (within OVERLAP at every shared N)."""
    out = []
    for label, other in drawn:
        shared = set(series) & set(other)
        if shared and all(abs(series[n] / other[n] - 1) <= OVERLAP for n in shared):
            out.append(label)
    return out


def _stacked(n: float, y: float, drawn: list[tuple[str, dict[float, float]]]) -> int:
    """How many drawn lines have a point within OVERLAP of (n, y)."""
    return sum(1 for _, other in drawn if n in other and abs(y / other[n] - 1) <= OVERLAP)


def _draw_line(ax: Any, model: str, good: pd.DataFrame, st: Style, drawn: list[tuple[str, dict[float, float]]],
               band: bool) -> Any:
    """One model's finished points: band, line (dashed over a line it would hide under; dotted into and out of a
    noisy or untrusted point), markers (hollow where untrusted, half-filled where noisy); its legend handle."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    series = dict(zip(good["seq_len"].astype(float), good["_y"].astype(float)))
    under = _overlaps(series, drawn)
    x, y = good["seq_len"], good["_y"]
    if band and (good["_half"] > 0).any():  # up to median + IQR/2, as far down on the log axis
        ax.fill_between(x, y * y / (y + good["_half"]), y + good["_half"], color=st.color, alpha=0.15, linewidth=0)
    dash = DASHES[len(under) % len(DASHES)]
    clean = good["_flag"] == ""
    if not clean.all():  # dotted underneath: it shows only where the solid line below breaks at a flagged point
        ax.plot(x, y, linestyle=":", color=st.color, linewidth=1.6, zorder=2 + len(under))
    ax.plot(x, y.where(clean), linestyle=dash, color=st.color, linewidth=1.6, zorder=2 + len(under))
    # a marker on top of earlier ones (at this N) is shifted right, so both stay visible
    below = pd.Series([_stacked(n, v, drawn) for n, v in series.items()], index=good.index)
    for (j, flag), pts in good.groupby([below, good["_flag"]]):
        shifted = offset_copy(ax.transData, fig=ax.figure, x=3.5 * j, y=0, units="points")
        ax.plot(pts["seq_len"], pts["_y"], linestyle="none", marker=st.marker, color=st.color, markersize=5,
                transform=shifted, zorder=3 + j, **TRUST_MARKERS.get(flag, {}))
    drawn.append((model, series))
    return Line2D([], [], color=st.color, linestyle=dash, marker=st.marker, markersize=5,
                  label=model + (f" (overlaps {', '.join(under)})" if under else ""))


def _trust_flags(df: pd.DataFrame, spread: str | None) -> pd.Series:
    """Per row, why its timed figure is not to be read as a clean measurement: ``untrusted`` (it failed a trust
    rule), ``noisy`` (IQR above NOISY of the median), or ``""``. Only a timed quantity (one with a spread) has
    either: memory and FLOPs are measured once, in a fresh process."""
    if spread is None:
        return pd.Series("", index=df.index)
    untrusted = pd.to_numeric(df["trusted"], errors="coerce").eq(0) if "trusted" in df.columns else False
    noisy = (2 * df["_half"] / df["_y"]) > NOISY
    return pd.Series("", index=df.index).mask(noisy, "noisy").mask(untrusted, "untrusted")


def _trust_handles(flags: set[str]) -> list[Any]:
    """The legend's entries for the trust marks drawn in this figure."""
    from matplotlib.lines import Line2D

    text = {"untrusted": f"untrusted {UNTRUSTED_MARK}: hollow, dotted; not judged",
            "noisy": f"noisy {NOISE_MARK}: half-filled, dotted; IQR > {NOISY:.0%} of median"}
    return [Line2D([], [], color="#555555", linestyle=":", marker="o", markersize=5, label=text[f],
                   **TRUST_MARKERS[f]) for f in ("untrusted", "noisy") if f in flags]


def _draw_failed(ax: Any, g: pd.DataFrame, good: pd.DataFrame, st: Style) -> None:
    """An ``x`` per unfinished cell, at the height of the model's last finished point, labelled with its status."""
    for n, status in zip(g.loc[g["status"] != "ok", "seq_len"], g.loc[g["status"] != "ok", "status"]):
        before = good[good["seq_len"] < n]
        ref = before if not before.empty else good
        if ref.empty:
            continue
        x0, y0 = float(ref["seq_len"].iloc[-1]), float(ref["_y"].iloc[-1])
        if x0 < n:
            ax.plot([x0, n], [y0, y0], ":", color=st.color, linewidth=1)
        ax.plot([n], [y0], "x", color=st.color, markersize=9, markeredgewidth=2)
        ax.annotate(str(status), (n, y0), textcoords="offset points", xytext=(-6, -12), ha="right", fontsize=7,
                    color=st.color)


def _axes(ax: Any, ns: list[float], ylabel: str, title: str, handles: list[Any]) -> None:
    """Log-log axes with every measured N as a tick, and the legend outside, right of the data."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ns)
    ax.set_xticklabels([f"{int(n):,}" for n in ns], rotation=45 if len(ns) > 6 else 0, fontsize=8)
    ax.minorticks_off()
    if len(ns) == 1:
        ax.set_xlim(ns[0] / math.sqrt(2), ns[0] * math.sqrt(2))
    ax.set_xlabel("sequence length N (tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0)


def draw_quantity(df: pd.DataFrame, quantity: str, *, styles: dict[str, Style] | None = None,
                  title: str | None = None) -> Any:
    """The matplotlib Figure of one quantity of ``df`` (rows of one skeleton/batch/dtype/device, one mode) against N,
    or None when there is nothing to draw. ``styles`` default to :func:`method_styles` of ``df``'s models."""
    c = QUANTITIES[quantity]
    df = df.copy()
    df["seq_len"] = pd.to_numeric(df["seq_len"], errors="coerce")
    df["_y"] = pd.to_numeric(df[c.name], errors="coerce") * c.plot.scale
    spread = _spread_column(c)
    df["_half"] = pd.to_numeric(df[spread], errors="coerce").fillna(0) * c.plot.scale / 2 if spread else 0.0
    df["_flag"] = _trust_flags(df, spread)
    ok = (df["status"] == "ok") & (df["_y"] > 0)
    if not ok.any():
        return None
    from matplotlib.lines import Line2D

    fig, ax = _mpl().subplots(figsize=(8.6, 4.6), dpi=110)
    bases = dict(zip(df["model"].astype(str), df["model_base"].astype(str))) if "model_base" in df.columns else {}
    styles = styles or method_styles(df["model"].astype(str), bases)
    rank = {m: i for i, m in enumerate(styles)}  # the legend in the styles' (registry) order
    drawn: list[tuple[str, dict[float, float]]] = []
    handles = []
    for model in sorted(set(df["model"].astype(str)), key=lambda m: (rank.get(m, len(rank)), m)):
        st = styles.get(model) or Style("#777777", "o")
        g = df[df["model"] == model].sort_values("seq_len")
        good = g[ok.loc[g.index]]
        if not good.empty:
            handles.append(_draw_line(ax, model, good, st, drawn, band=spread is not None))
        _draw_failed(ax, g, good, st)
        statuses = sorted(set(g.loc[g["status"] != "ok", "status"]))
        if good.empty and statuses:
            handles.append(Line2D([], [], linestyle="none", marker="x", color=st.color, markeredgewidth=2,
                                  label=f"{model} (all {', '.join(statuses)})"))
    handles += _trust_handles(set(df.loc[ok, "_flag"]))
    _axes(ax, sorted(df["seq_len"].dropna().unique()), c.plot.ylabel + ("; band: ± IQR/2" if spread else ""),
          title or quantity, handles)
    fig.tight_layout()
    return fig


def plot_quantity(df: pd.DataFrame, quantity: str, path: str | Path, *, styles: dict[str, Style] | None = None,
                  title: str | None = None) -> Path | None:
    """Draw one quantity of ``df`` (see :func:`draw_quantity`) into ``path``; returns it, or None when there is
    nothing to draw."""
    return save_figure(draw_quantity(df, quantity, styles=styles, title=title), path)


def save_figure(fig: Any, path: str | Path) -> Path | None:
    """Write ``fig`` to ``path`` and close it; None when there is no figure (nothing to draw)."""
    if fig is None:
        return None
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    _mpl().close(fig)
    return path


def _title(key: dict[str, Any], quantity: str, machine: str | None) -> str:
    bits = [str(key.get(k)) for k in ("skeleton", "mode", "dtype", "device") if key.get(k) is not None
            and not (isinstance(key.get(k), float) and math.isnan(key.get(k)))]
    if key.get("batch") is not None and not pd.isna(key.get("batch")):
        bits.insert(1, f"batch {int(key['batch'])}")
    return f"{quantity} vs N — " + ", ".join(bits) + (f"\n{machine}" if machine else "")


def plot_all(df: pd.DataFrame, out_dir: str | Path, *, machine: str | None = None) -> list[Path]:
    """Write every plot of ``df`` (efficiency rows) into ``out_dir``; returns the files written.

    File names: ``<stem>_<mode>.png`` (memory, latency) and ``flops.png``; a ``_<skeleton>-b<batch>-<dtype>-<device>``
    suffix is added when the rows span several of those combinations. ``machine`` goes under every title. The
    models' styles are fixed once for all the figures.
    """
    out_dir = Path(out_dir)
    if df.empty:
        return []
    df = df[~train_mask(df)]  # training rows are not efficiency cells
    bases = dict(zip(df["model"].astype(str), df["model_base"].astype(str))) if "model_base" in df.columns else {}
    styles = method_styles(df["model"].astype(str), bases)
    combo_cols = [c for c in ("skeleton", "batch", "dtype", "device") if c in df.columns]
    combos = list(df.groupby(combo_cols, dropna=False, sort=True))
    files: list[Path] = []
    for key, g in combos:
        key = dict(zip(combo_cols, key if isinstance(key, tuple) else (key,)))
        suffix = "" if len(combos) == 1 else "_" + "-".join(
            [str(key.get("skeleton")), f"b{key.get('batch')}", str(key.get("dtype")), str(key.get("device"))])
        suffix = suffix.replace("/", "_").replace(":", "")
        for quantity, c in QUANTITIES.items():
            if c.plot.per_mode:
                for mode, gm in g.groupby("mode", sort=True):
                    p = plot_quantity(gm, quantity, out_dir / f"{c.plot.stem}_{mode}{suffix}.png", styles=styles,
                                      title=_title({**key, "mode": mode}, quantity, machine))
                    files += [p] if p else []
            else:
                # FLOPs are the forward count: the same for every mode; prefer infer rows
                gf = g.sort_values("mode", key=lambda s: s != "infer").drop_duplicates(["model", "seq_len"])
                p = plot_quantity(gf, quantity, out_dir / f"{c.plot.stem}{suffix}.png", styles=styles,
                                  title=_title(key, "forward FLOPs", machine))
                files += [p] if p else []
    return files
