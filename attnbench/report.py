"""Reports over the results schema: pure functions of DataFrames, usable in a notebook.

    import attnbench
    rep = attnbench.report("results/my-run")          # or several run dirs / shards, or a DataFrame
    rep.absolute, rep.relative, rep.break_even, rep.paper   # DataFrames
    print(rep.markdown)                                      # what report.md holds

Tables:

- **absolute**: per model x N, params, GMACs, peak memory, latency median +- IQR, throughput, status.
- **relative**: at each N, speed-up over the softmax baseline (baseline latency / model latency; > 1 is faster)
  and memory ratio (model memory / baseline memory; < 1 is leaner), as in Long Range Arena's Table 2.
- **break_even**: the N where a method becomes cheaper than the baseline, interpolated log-log between the two
  measured lengths that bracket it, or a note saying it was not bracketed.
- **paper**: training rows (top1, top5, their own params and MACs) joined with efficiency rows on (model, skeleton,
  seq_len) for peak memory, latency and throughput (:mod:`attnbench.report_paper`).

A model present with several distinct ``hparams`` values is shown as one model per value, labelled with the keys that
differ (``soft[landmarks=64]``, see :func:`variant_labels`).

The module keeps tables, formatting and rendering together (the paper table apart, in ``report_paper``). Numbers
are shown only to the significant figures their IQR supports; a cell whose IQR exceeds 10 % of its median is marked
noisy (as ``torch.utils.benchmark`` does).
"""
from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from attnbench.results import ALL_COLUMNS, KEY_COLUMNS, load_results, read_meta

__all__ = ["Report", "report", "load_runs", "absolute_table", "relative_table", "break_even", "paper_table",
           "choose_baseline", "render_markdown", "to_markdown", "machine_line", "fmt_sig", "fmt_latency",
           "BASELINES", "NOISY", "REPORT_NAME", "variant_labels", "MEASURES_NOTE"]

BASELINES = ("softmax", "softmax-math", "softmax-xformers")  # the first one present is the reference
NOISY = 0.10  # IQR / median above this marks a cell noisy
REPORT_NAME = "report.md"
GROUP = ["skeleton", "batch", "dtype", "device", "mode"]  # one table per combination
NOISE_MARK = "†"
NO_SPREAD_MARK = "‡"
DASH = "—"
# what the numbers are, worded as attnbench.measure.{memory,flops,step} and attnbench.cell measure them
MEASURES_NOTE = (
    "What is measured: **peak mem** = growth of peak memory during one step over what was live before it: the "
    "built model and inputs, after a warm-up step (train mode: parameters and the AdamW state the warm-up step "
    "allocated are in the baseline; gradients are allocated and freed inside each step, so they count in the "
    "peak). CUDA: tensor memory from the caching allocator (`max_memory_allocated` minus what was allocated "
    "before); CPU: the process's resident high-water mark (`VmHWM`) above its resident size before the step. "
    "**GMACs** = multiply-accumulates of matmul-class ops in one forward pass at the cell's batch (fvcore, "
    "`no_grad`), the same count in both modes: a training step costs about 3×.")


# ------------------------------------------------------------------------------------------------ loading

def load_runs(run_dirs: str | Path | Iterable[str | Path]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read and join one or several run directories (e.g. the shards of one sweep).

    Returns the rows (with a ``run`` column naming the directory; a cell measured twice keeps its last row)
    and each run's meta.json. Raises a one-line ValueError for a missing directory or a corrupt file.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("no run directories given")
    frames, metas = [], []
    for d in dirs:
        if not d.is_dir():
            raise ValueError(f"not a run directory: {d} (expected a folder holding results.csv)")
        if not (d / "results.csv").exists():
            raise ValueError(f"no results.csv in {d}; is it an attnbench run directory?")
        df = load_results(d)
        # a joined run (attnbench report A B --out J) keeps each row's source run and the sources' metas
        df["run"] = df["run"].fillna(d.name) if "run" in df.columns else d.name
        frames.append(df)
        meta = read_meta(d)
        if isinstance(meta.get("runs"), list) and meta["runs"]:
            metas += [m for m in meta["runs"] if isinstance(m, dict)]
        elif meta:
            metas.append({**_flat_meta(meta), "run": d.name})
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return _dedupe(df), metas


def _flat_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """meta.json as the sweep writes it (``{"environment": {...}, "config": {...}}``) flattened to one level."""
    env = meta.get("environment") if isinstance(meta.get("environment"), dict) else {}
    return {**{k: v for k, v in meta.items() if k != "environment"}, **env}


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    is_train = _train_mask(df)
    keys = [k for k in KEY_COLUMNS if k in df.columns]
    eff = df[~is_train].drop_duplicates(keys, keep="last")
    return pd.concat([eff, df[is_train]], ignore_index=True) if is_train.any() else eff.reset_index(drop=True)


def _train_mask(df: pd.DataFrame) -> pd.Series:
    """Rows written by ``attnbench train`` (scope ``train``, or carrying accuracy/dataset columns)."""
    mask = pd.Series(False, index=df.index)
    if "scope" in df.columns:
        mask |= df["scope"] == "train"
    for c in ("top1", "dataset"):
        if c in df.columns:
            mask |= df[c].notna()
    return mask


def _ensure_schema(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in ALL_COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    for c in ("seq_len", "batch", "params", "macs", "attn_macs", "peak_mem_bytes", "latency_ms_median",
              "latency_ms_iqr", "throughput_per_s", "top1", "top5"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def _efficiency(df: pd.DataFrame) -> pd.DataFrame:
    return df[~_train_mask(df)]


def _model_order(df: pd.DataFrame, baseline: str | None = None) -> list[str]:
    seen = list(dict.fromkeys(df["model"].astype(str)))
    return ([baseline] if baseline in seen else []) + [m for m in seen if m != baseline]


def _canon_hparams(v: Any) -> str:
    """One spelling per hparams value (sorted JSON; missing -> ``{}``), so equal settings compare equal."""
    return json.dumps(_parse_hparams(v), sort_keys=True, default=str)


def _hp_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def variant_labels(df: pd.DataFrame) -> pd.Series:
    """Each row's model label: the model's name, or, when the frame holds that model with more than one distinct
    ``hparams`` value, the name plus the keys whose values differ between its variants (``soft[landmarks=64]``;
    a key a variant does not set shows ``default``). Variants are thereby separate models in every table."""
    model = df["model"].astype(str)
    if df.empty or "hparams" not in df.columns:
        return model
    canon = df["hparams"].map(_canon_hparams)
    labels = model.copy()
    for m in dict.fromkeys(model):
        sel = model == m
        variants = list(dict.fromkeys(canon[sel]))
        if len(variants) < 2:
            continue
        dicts = [json.loads(v) for v in variants]
        keys = sorted({k for d in dicts for k in d
                       if len({json.dumps(x.get(k), sort_keys=True, default=str) if k in x else None
                               for x in dicts}) > 1})
        names = {v: f"{m}[" + ",".join(f"{k}={_hp_text(d[k]) if k in d else 'default'}" for k in keys) + "]"
                 for v, d in zip(variants, dicts)}
        labels[sel] = canon[sel].map(names)
    return labels


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``model`` replaced by :func:`variant_labels` and the name kept in ``model_base`` (idempotent)."""
    labels = variant_labels(df)
    if "model_base" in df.columns and labels.equals(df["model"].astype(str)):
        return df
    out = df.copy()
    if "model_base" not in out.columns:
        out["model_base"] = out["model"]
    out["model"] = labels
    return out


def _groups(df: pd.DataFrame):
    """Yield (key dict, frame) per (skeleton, batch, dtype, device, mode), in a stable order."""
    cols = [c for c in GROUP if c in df.columns]
    if df.empty:
        return
    for key, g in df.groupby(cols, dropna=False, sort=True):
        yield dict(zip(cols, key if isinstance(key, tuple) else (key,))), g


# ------------------------------------------------------------------------------------------------ tables

def choose_baseline(df: pd.DataFrame, baseline: str | None = None) -> str | None:
    """``baseline`` if given (must be present), else the first of BASELINES present, else None.

    Models are matched as :func:`variant_labels` shows them; a name held in several hparams variants resolves to
    its first variant in the frame's order (``softmax`` -> ``softmax[impl=sdpa]``).
    """
    df = _labelled(df) if not df.empty else df
    models = list(dict.fromkeys(df["model"].astype(str))) if not df.empty else []
    bases = list(df["model_base"].astype(str)) if "model_base" in df.columns else list(df["model"].astype(str))

    def first_variant(name: str) -> str | None:
        if name in models:
            return name
        return next((lab for lab, b in zip(df["model"].astype(str), bases) if b == name), None)

    if baseline is not None:
        found = first_variant(baseline)
        if found is None:
            raise ValueError(f"baseline {baseline!r} has no rows; models present: {', '.join(sorted(models))}")
        return found
    return next((v for v in map(first_variant, BASELINES) if v is not None), None)


def _baseline_note(df: pd.DataFrame, base: str) -> str:
    """`` (`softmax` has 2 hparams variants here; the first in the frame's order is the baseline)`` or ``""``."""
    df = _labelled(df)
    name = next(iter(df.loc[df["model"] == base, "model_base"].astype(str)), base)
    n = df.loc[df["model_base"].astype(str) == name, "model"].nunique()
    return "" if name == base or n < 2 else \
        f" (`{name}` has {n} hparams variants here; the first in the frame's order is the baseline)"


def absolute_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell with units in the column names: params_m, gmacs, attn_gmacs, peak_mem_mib, latency, status."""
    df = _labelled(_ensure_schema(_efficiency(df)))
    out = df[GROUP + ["model", "seq_len"]].copy()
    out["params_m"] = df["params"] / 1e6
    out["gmacs"] = df["macs"] / 1e9
    out["attn_gmacs"] = df["attn_macs"] / 1e9
    out["peak_mem_mib"] = df["peak_mem_bytes"] / 2**20
    for c in ("latency_ms_median", "latency_ms_iqr", "throughput_per_s", "status", "reason"):
        out[c] = df[c]
    order = {m: i for i, m in enumerate(_model_order(df, choose_baseline(df)))}
    out["_o"] = out["model"].map(order)
    return out.sort_values(GROUP + ["_o", "seq_len"]).drop(columns="_o").reset_index(drop=True)


def relative_table(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """At each N (within each group), speed-up and memory ratio against ``baseline``.

    Columns: the group columns, model, seq_len, speedup (baseline latency / model latency), mem_ratio (model peak
    memory / baseline peak memory), macs_ratio, noisy, status, baseline_status. Ratios are NaN when either cell
    is not ``ok``. Empty when no baseline is present.
    """
    df = _labelled(_ensure_schema(_efficiency(df)))
    base = choose_baseline(df, baseline)
    cols = GROUP + ["model", "seq_len", "speedup", "mem_ratio", "macs_ratio", "noisy", "status", "baseline_status"]
    if base is None:
        return pd.DataFrame(columns=cols)
    b = df[df["model"] == base][GROUP + ["seq_len", "status", "latency_ms_median", "latency_ms_iqr",
                                         "peak_mem_bytes", "macs"]]
    m = df.merge(b, on=GROUP + ["seq_len"], how="left", suffixes=("", "_b"))
    ok = (m["status"] == "ok") & (m["status_b"] == "ok")
    m["speedup"] = (m["latency_ms_median_b"] / m["latency_ms_median"]).where(ok)
    m["mem_ratio"] = (m["peak_mem_bytes"] / m["peak_mem_bytes_b"]).where(ok & (m["peak_mem_bytes_b"] > 0))
    m["macs_ratio"] = (m["macs"] / m["macs_b"]).where(m["macs_b"] > 0)
    m["noisy"] = (m["latency_ms_iqr"] / m["latency_ms_median"] > NOISY) | \
                 (m["latency_ms_iqr_b"] / m["latency_ms_median_b"] > NOISY)
    m["baseline_status"] = m["status_b"]
    order = {x: i for i, x in enumerate(_model_order(df, base))}
    m["_o"] = m["model"].map(order)
    m = m.sort_values(GROUP + ["_o", "seq_len"])
    out = m[cols].reset_index(drop=True)
    out.attrs["baseline"] = base
    return out


def _crossing(ns: list[float], ratios: list[float]) -> tuple[float | None, str]:
    """The N from which ratio (model cost / baseline cost) stays below 1, interpolated log-log between the last
    measured N where it is >= 1 and the next one."""
    if not ns:
        return None, "no N where both finished"
    last_dear = max((i for i, r in enumerate(ratios) if r >= 1), default=None)
    if last_dear is None:
        return None, f"cheaper at every N measured (from {ns[0]:,.0f})"
    if last_dear == len(ns) - 1:
        return None, f"not bracketed: not cheaper at the largest N measured ({ns[-1]:,.0f})"
    (n0, r0), (n1, r1) = (ns[last_dear], ratios[last_dear]), (ns[last_dear + 1], ratios[last_dear + 1])
    if r0 == 1:
        return n0, f"at {n0:,.0f}"
    t = -math.log(r0) / (math.log(r1) - math.log(r0))
    n = math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
    return n, f"between {n0:,.0f} and {n1:,.0f}"


def break_even(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Per group and model, the N where the model becomes cheaper than the baseline in latency and in memory.

    Only N where both cells are ``ok`` count. ``n`` is interpolated linearly in log N between the two measured
    lengths whose cost ratio brackets 1 (None when the sweep does not bracket it; ``note`` says why).
    """
    rel = relative_table(df, baseline)
    cols = GROUP + ["model", "metric", "n", "note"]
    base = rel.attrs.get("baseline")
    rows = []
    for key, g in _groups(rel):
        for model, gm in g.groupby("model", sort=False):
            if model == base:
                continue
            for metric, col, inv in (("latency", "speedup", True), ("memory", "mem_ratio", False)):
                pts = gm[gm[col].notna() & (gm[col] > 0)].sort_values("seq_len")
                ratios = [1 / v if inv else v for v in pts[col]]
                n, note = _crossing([float(x) for x in pts["seq_len"]], ratios)
                # the baseline failing where this model finished is the strongest "cheaper" there is
                beyond = gm[(gm["status"] == "ok") & gm["baseline_status"].notna() & (gm["baseline_status"] != "ok")]
                if n is None and not beyond.empty:
                    first = beyond.sort_values("seq_len").iloc[0]
                    note += f"; {base} {first['baseline_status']} at {int(first['seq_len']):,} where {model} finished"
                rows.append({**key, "model": model, "metric": metric, "n": n, "note": note})
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["baseline"] = base
    return out


def paper_table(df: pd.DataFrame) -> pd.DataFrame:
    """Training rows (top1/top5, their own params and MACs) joined with one ``ok`` efficiency row each on
    (model, skeleton, seq_len) for memory, latency and throughput; see :mod:`attnbench.report_paper`."""
    from attnbench.report_paper import paper_table as table  # imported here: report_paper builds on this module

    return table(df)


# ------------------------------------------------------------------------------------------------ formatting

def fmt_sig(x: Any, sig: int = 3) -> str:
    """``x`` to ``sig`` significant figures, never in scientific notation; NaN/None -> a dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return DASH
    x = float(x)
    if x == 0:
        return "0"
    dec = sig - 1 - math.floor(math.log10(abs(x)))
    return f"{round(x, dec):,.0f}" if dec <= 0 else f"{x:,.{dec}f}"


def _decimals(median: float, iqr: float, max_sig: int = 4) -> int:
    """Decimal places the IQR supports: down to the IQR's leading digit, at most ``max_sig`` significant figures."""
    top = math.floor(math.log10(abs(median)))
    dec = -math.floor(math.log10(iqr)) if iqr > 0 else max_sig - 1 - top
    if top + dec + 1 > max_sig:
        dec = max_sig - 1 - top
    if top + dec + 1 < 1:  # the IQR exceeds the value: keep one figure
        dec = -top
    return dec


def fmt_latency(median: Any, iqr: Any) -> str:
    """``12.3 ± 0.4`` with the figures the IQR supports; ``†`` marks IQR > 10 % of the median."""
    if median is None or pd.isna(median) or median <= 0:
        return DASH
    iqr = 0.0 if iqr is None or pd.isna(iqr) else float(iqr)
    if iqr == 0:  # one timing block: the spread is unknown, so no ± and three figures
        return f"{fmt_sig(median, 3)} {NO_SPREAD_MARK}"
    dec = _decimals(float(median), iqr)

    def f(v: float) -> str:
        return f"{round(v, dec):,.0f}" if dec <= 0 else f"{v:,.{dec}f}"

    mark = f" {NOISE_MARK}" if iqr / median > NOISY else ""
    return f"{f(float(median))} ± {f(iqr)}{mark}"


def _fmt_ratio(v: Any, noisy: bool = False) -> str:
    if v is None or pd.isna(v):
        return DASH
    return f"{fmt_sig(v, 2)}×" + (f" {NOISE_MARK}" if noisy else "")


def _status_cell(status: Any, reason: Any = None) -> str:
    s = "" if status is None or pd.isna(status) else str(status)
    if s in ("", "ok"):
        return s
    r = "" if reason is None or pd.isna(reason) else str(reason).splitlines()[0]
    return f"{s}: {r[:60]}" if r else s


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``df``'s cells as strings (no tabulate needed)."""
    head = [str(c) for c in df.columns]
    rows = [["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in r]
            for r in df.itertuples(index=False)]
    esc = [[c.replace("|", "\\|") for c in r] for r in [head] + rows]
    widths = [max(len(r[i]) for r in esc) for i in range(len(head))]
    numeric = [all(_looks_numeric(r[i]) for r in esc[1:]) and len(esc) > 1 for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(esc[0]), sep] + [line(r) for r in esc[1:]])


def _looks_numeric(s: str) -> bool:
    t = s.replace(",", "").replace("×", "").replace(NOISE_MARK, "").replace("±", " ").split()
    if not t or s == DASH:
        return s == DASH
    try:
        float(t[0])
        return True
    except ValueError:
        return False


def absolute_display(absolute: pd.DataFrame) -> pd.DataFrame:
    """The absolute table's cells as display strings (what report.md and the terminal show)."""
    a = absolute
    ok = a["status"] == "ok"
    sig = a.apply(lambda r: _latency_sig(r["latency_ms_median"], r["latency_ms_iqr"]), axis=1)
    return pd.DataFrame({
        "model": a["model"], "N": a["seq_len"].map(lambda n: f"{int(n):,}"),
        "params (M)": a["params_m"].map(lambda v: fmt_sig(v, 3)),
        "GMACs": a["gmacs"].map(lambda v: fmt_sig(v, 3)),
        "peak mem (MiB)": [fmt_sig(v, 3) if o else DASH for v, o in zip(a["peak_mem_mib"], ok)],
        "latency (ms)": [fmt_latency(m, i) if o else DASH
                         for m, i, o in zip(a["latency_ms_median"], a["latency_ms_iqr"], ok)],
        "throughput (/s)": [fmt_sig(v, s) if o else DASH for v, s, o in zip(a["throughput_per_s"], sig, ok)],
        "status": [_status_cell(s, r) for s, r in zip(a["status"], a["reason"])],
    })


def _latency_sig(median: Any, iqr: Any) -> int:
    if median is None or pd.isna(median) or median <= 0 or iqr is None or pd.isna(iqr) or iqr == 0:
        return 3
    dec = _decimals(float(median), 0.0 if iqr is None or pd.isna(iqr) else float(iqr))
    return max(1, math.floor(math.log10(float(median))) + dec + 1)


def relative_display(rel: pd.DataFrame, column: str) -> pd.DataFrame:
    """Wide model x N table of ``column`` (speedup or mem_ratio), failed cells showing their status."""
    def cell(r: pd.Series) -> str:
        if r["status"] != "ok":
            return str(r["status"])
        if r["baseline_status"] != "ok":
            b = r["baseline_status"] if pd.notna(r["baseline_status"]) else "missing"
            return f"{rel.attrs.get('baseline', 'baseline')} {b}"
        return _fmt_ratio(r[column], bool(r["noisy"]) and column == "speedup")

    cells = rel.assign(cell=rel.apply(cell, axis=1))
    wide = cells.pivot_table(index="model", columns="seq_len", values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=sorted(wide.columns))
    wide.columns = [f"N={int(c):,}" for c in wide.columns]
    return wide.fillna(DASH).reset_index()


def break_even_display(be: pd.DataFrame) -> pd.DataFrame:
    def cell(r: pd.Series) -> str:
        return f"≈ {fmt_sig(r['n'], 3)} ({r['note']})" if r["n"] is not None and pd.notna(r["n"]) else r["note"]

    rows = []
    for model, g in be.groupby("model", sort=False):
        d = {r["metric"]: cell(r) for _, r in g.iterrows()}
        rows.append({"model": model, "latency": d.get("latency", DASH), "memory": d.get("memory", DASH)})
    return pd.DataFrame(rows, columns=["model", "latency", "memory"])


def paper_display(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper-style table's cells as display strings."""
    from attnbench.report_paper import paper_display as display

    return display(paper)


def machine_line(meta: dict[str, Any]) -> str:
    """``Machine: <cpu> (<n> cores, <t> torch threads) | GPU ... | torch x | timm y | python z | attnbench v (sha)``."""
    if not meta:
        return "Machine: unknown (no meta.json)"
    hw = f"{meta.get('cpu', '?')} ({meta.get('cpu_count', '?')} cores, {meta.get('torch_threads', '?')} torch threads)"
    parts = [f"Machine: {hw}"]
    if meta.get("gpu"):
        parts.append(f"GPU {meta['gpu']} (CUDA {meta.get('cuda', '?')})")
    for k in ("torch", "timm", "python"):
        if meta.get(k):
            parts.append(f"{k} {meta[k]}")
    v = meta.get("attnbench")
    if v:
        parts.append(f"attnbench {v}" + (f" ({meta['git_commit']})" if meta.get("git_commit") else ""))
    return " | ".join(parts)


def _hparams_lines(df: pd.DataFrame) -> list[str]:
    df = _labelled(df)
    lines = []
    for model in _model_order(df):
        vals = sorted({str(h) for h in df.loc[df["model"] == model, "hparams"] if h is not None and not pd.isna(h)})
        if not vals:
            continue
        lines.append(f"- `{model}`: " + "; ".join(f"`{v}`" for v in vals))
        if str(df.loc[df["model"] == model, "model_base"].iloc[0]) in ("soft", "soft++"):
            for v in vals:
                hp = _parse_hparams(v)
                if "landmarks" in hp:
                    lines[-1] += f" (m = {hp['landmarks']} landmarks, sampler {hp.get('sampler', '?')})"
    return lines


def _parse_hparams(v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    try:
        out = json.loads(v)
        return out if isinstance(out, dict) else {}
    except (TypeError, ValueError):
        return {}


def _as_list(v: Any) -> list[str]:
    try:
        x = json.loads(v) if isinstance(v, str) else v
    except ValueError:
        return [str(v)]
    return [str(o) for o in x] if isinstance(x, (list, tuple)) else [str(x)]


def _group_title(key: dict[str, Any]) -> str:
    parts = [f"{k} {v}" for k, v in key.items() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return ", ".join(parts)


def render_markdown(df: pd.DataFrame, metas: list[dict[str, Any]] | None = None, *,
                    baseline: str | None = None, runs: list[str] | None = None) -> str:
    """The whole report.md: machine line, absolute, relative, break-even and paper tables, hparams, failures."""
    df = _ensure_schema(df)
    eff = _labelled(_efficiency(df))
    base = choose_baseline(eff, baseline)
    out = ["# attnbench report", ""]
    metas = metas or []
    for line in dict.fromkeys(machine_line(m) for m in metas) or ["Machine: unknown (no meta.json)"]:
        out.append(line + "  ")
    for m in metas:
        if m.get("command"):
            out.append(f"Command ({m.get('run', '')}): `{m['command']}`  ")
    if runs:
        out.append(f"Runs: {', '.join(runs)}  ")
    n_ok = int((eff["status"] == "ok").sum())
    out += [f"Cells: {len(eff)} ({n_ok} ok)" + (f"; training rows: {int(_train_mask(df).sum())}"
                                               if _train_mask(df).any() else ""), ""]
    if not eff.empty:
        out += [MEASURES_NOTE, ""]
    absolute = absolute_table(eff)
    rel = relative_table(eff, base)
    be = break_even(eff, base)
    for key, g in _groups(absolute):
        title = _group_title(key)
        out += [f"## {title}", "", "### Absolute", "", to_markdown(absolute_display(g)), ""]
        if base is None:
            out += ["No softmax baseline in this run (looked for: " + ", ".join(BASELINES) +
                    "): relative table and break-even skipped.", ""]
            continue
        sel = _select(rel, key)
        if sel.empty:
            continue
        sel.attrs["baseline"] = base
        out += [f"### Relative to `{base}` at each N{_baseline_note(eff, base)}", "",
                f"Speed-up = `{base}` latency / model latency (> 1× is faster):", "",
                to_markdown(relative_display(sel, "speedup")), "",
                f"Memory ratio = model peak memory / `{base}` peak memory (< 1× is leaner):", "",
                to_markdown(relative_display(sel, "mem_ratio")), ""]
        bsel = _select(be, key)
        if not bsel.empty:
            out += [f"### Break-even N against `{base}` (log-log interpolation between bracketing N)", "",
                    to_markdown(break_even_display(bsel)), ""]
    paper = paper_table(df)
    if not paper.empty:
        from attnbench.report_paper import paper_notes

        out += ["## Accuracy and cost (training rows joined on model, skeleton, N)", "",
                to_markdown(paper_display(paper)), ""]
        out += [line + "  " for line in paper_notes(paper)] + [""]
    hp = _hparams_lines(eff)
    if hp:
        out += ["## Hyper-parameters", ""] + hp + [""]
    bad = eff[eff["status"] != "ok"]
    if not bad.empty:
        out += ["## Cells that did not finish", ""]
        out += [f"- `{r.model}` N={int(r.seq_len):,} {r.mode}: **{r.status}**" +
                (f" — {str(r.reason).splitlines()[0]}" if pd.notna(r.reason) and str(r.reason) else "")
                for r in bad.itertuples()]
        out.append("")
    unc = eff[eff["flops_uncounted_ops"].map(lambda v: bool(_as_list(v)) if isinstance(v, (str, list)) else False)]
    if not unc.empty:
        out += ["## FLOP audit", "", "fvcore left these ops uncounted (MACs are a lower bound there):", ""]
        for model, g in unc.groupby("model", sort=False):
            ops = sorted({op for v in g["flops_uncounted_ops"] for op in _as_list(v)})
            out.append(f"- `{model}`: {', '.join(ops)}")
        out.append("")
    out += [f"Latency is median ± IQR, shown to the figures the IQR supports. {NOISE_MARK} IQR above {NOISY:.0%} "
            f"of the median: noisy, read with care. {NO_SPREAD_MARK} one timing block: spread unknown "
            "(raise --min-time).", ""]
    return "\n".join(out)


def _select(frame: pd.DataFrame, key: dict[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for k, v in key.items():
        mask &= frame[k].isna() if v is None or (isinstance(v, float) and math.isnan(v)) else frame[k] == v
    return frame[mask]


# ------------------------------------------------------------------------------------------------ the API

@dataclass
class Report:
    """Everything a report holds; ``markdown`` is the text of report.md."""

    results: pd.DataFrame
    meta: list[dict[str, Any]]
    baseline: str | None
    absolute: pd.DataFrame
    relative: pd.DataFrame
    break_even: pd.DataFrame
    paper: pd.DataFrame
    markdown: str
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"Report({len(self.results)} rows, baseline={self.baseline!r}, out_dir={self.out_dir}, "
                f"files={[p.name for p in self.files]})")


def report(runs: str | Path | Iterable[str | Path] | pd.DataFrame, out: str | Path | None = None, *,
           baseline: str | None = None, plots: bool = True, write: bool | None = None,
           meta: list[dict[str, Any]] | None = None) -> Report:
    """Build the report of one or several run directories (or of a results DataFrame).

    Args:
        runs: a run directory, a list of them (shards are joined), or a DataFrame in the results schema.
        out: where to write report.md and the plots; default the run directory itself when there is one.
        baseline: the reference model (default the first of BASELINES present).
        plots: also write the PNG plots.
        write: write files (default: True when there is somewhere to write).
        meta: meta.json dicts, when ``runs`` is a DataFrame.

    Returns:
        A Report with the tables as DataFrames.
    """
    if isinstance(runs, pd.DataFrame):
        df, metas, names = runs, list(meta or []), []
    else:
        df, metas = load_runs(runs)
        names = list(dict.fromkeys(df["run"])) if "run" in df.columns else []
        if out is None and len(names) == 1:
            out = Path(runs) if isinstance(runs, (str, Path)) else Path(list(runs)[0])
    df = _ensure_schema(df)
    eff = _labelled(_efficiency(df))
    base = choose_baseline(eff, baseline)
    rep = Report(results=df, meta=metas, baseline=base, absolute=absolute_table(eff),
                 relative=relative_table(eff, base), break_even=break_even(eff, base), paper=paper_table(df),
                 markdown=render_markdown(df, metas, baseline=base, runs=names))
    if write is None:
        write = out is not None
    if write:
        if out is None:
            raise ValueError("report: pass out= to write the report of a DataFrame")
        rep.out_dir = Path(out)
        rep.out_dir.mkdir(parents=True, exist_ok=True)
        path = rep.out_dir / REPORT_NAME
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(rep.markdown)
        tmp.replace(path)
        rep.files.append(path)
        if plots:
            from attnbench.plots import plot_all

            rep.files += plot_all(eff, rep.out_dir)
    return rep


def rich_tables(rep: Report) -> list[Any]:
    """rich Tables of the absolute and relative tables, one per group, for the terminal."""
    from rich.table import Table

    from rich.console import Group
    from rich.text import Text

    def table(frame: pd.DataFrame, title: str) -> Group:
        t = Table()
        for c in frame.columns:
            t.add_column(str(c), justify="left" if c in ("model", "status") else "right")
        for r in frame.itertuples(index=False):
            t.add_row(*[str(v) for v in r], style=None if "status" not in frame.columns or
                      getattr(r, "status", "ok") in ("ok", "") else "red")
        return Group(Text(title, style="bold"), t)  # a title above, never wrapped to the table's width

    out = []
    for key, g in _groups(rep.absolute):
        out.append(table(absolute_display(g), _group_title(key)))
        sel = _select(rep.relative, key)
        if rep.baseline and not sel.empty:
            sel.attrs["baseline"] = rep.baseline
            where = _group_title(key)
            out.append(table(relative_display(sel, "speedup"),
                             f"speed-up over {rep.baseline} (> 1× is faster), {where}"))
            out.append(table(relative_display(sel, "mem_ratio"), f"memory / {rep.baseline} (< 1× is leaner), {where}"))
    return out


class _CallableModule(types.ModuleType):
    """``attnbench.report(...)`` works whether ``attnbench.report`` resolves to this module or to the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
