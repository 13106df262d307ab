"""The efficiency tables as DataFrames: absolute, relative to a softmax baseline, and the break-even N.

- **absolute**: per model x N, params, GMACs, peak memory, latency median +- IQR, throughput, status.
- **relative**: at each N, speed-up over the softmax baseline (baseline latency / model latency; > 1 is faster)
  with an interval, and memory ratio (model memory / baseline memory; < 1 is leaner), as in Long Range Arena's
  Table 2. The interval is the rows' own ``speedup_lo``/``speedup_hi`` where a row carries them (paired per-round
  ratios), else the ratio of the two latencies' quartiles, each taken as median ± IQR/2.
- **break_even**: the N where a method becomes cheaper than the baseline, interpolated log-log between the two
  measured lengths that bracket it, or a note saying it was not bracketed.
"""
from __future__ import annotations

import math

import pandas as pd

from attnbench.reporting.format import NOISY
from attnbench.reporting.load import GROUP, efficiency, ensure_schema, groups, labelled, model_order

__all__ = ["BASELINES", "INTERVAL_COLUMNS", "choose_baseline", "baseline_note", "absolute_table", "relative_table",
           "break_even"]

BASELINES = ("softmax", "softmax-math", "softmax-xformers")  # the first one present is the reference
INTERVAL_COLUMNS = ("speedup_lo", "speedup_hi")  # a row's own interval of its speed-up, used when present


def choose_baseline(df: pd.DataFrame, baseline: str | None = None) -> str | None:
    """``baseline`` if given (must be present), else the first of BASELINES present, else None.

    Models are matched as :func:`~attnbench.reporting.load.variant_labels` shows them; a name held in several
    hparams variants resolves to its first variant in the frame's order (``softmax`` -> ``softmax[impl=sdpa]``).
    """
    df = labelled(df) if not df.empty else df
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


def baseline_note(df: pd.DataFrame, base: str) -> str:
    """`` (`softmax` has 2 hparams variants here; the first in the frame's order is the baseline)`` or ``""``."""
    df = labelled(df)
    name = next(iter(df.loc[df["model"] == base, "model_base"].astype(str)), base)
    n = df.loc[df["model_base"].astype(str) == name, "model"].nunique()
    return "" if name == base or n < 2 else \
        f" (`{name}` has {n} hparams variants here; the first in the frame's order is the baseline)"


def absolute_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell with units in the column names: params_m, gmacs, attn_gmacs, peak_mem_mib, latency, status."""
    df = labelled(ensure_schema(efficiency(df)))
    out = df[GROUP + ["model", "seq_len"]].copy()
    out["params_m"] = df["params"] / 1e6
    out["gmacs"] = df["macs"] / 1e9
    out["attn_gmacs"] = df["attn_macs"] / 1e9
    out["peak_mem_mib"] = df["peak_mem_bytes"] / 2**20
    for c in ("latency_ms_median", "latency_ms_iqr", "throughput_per_s", "status", "reason"):
        out[c] = df[c]
    order = {m: i for i, m in enumerate(model_order(df, choose_baseline(df)))}
    out["_o"] = out["model"].map(order)
    return out.sort_values(GROUP + ["_o", "seq_len"]).drop(columns="_o").reset_index(drop=True)


def relative_table(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """At each N (within each group), speed-up and memory ratio against ``baseline``.

    Columns: the group columns, model, seq_len, speedup (baseline latency / model latency) and its interval
    speedup_lo/speedup_hi, mem_ratio (model peak memory / baseline peak memory), macs_ratio, noisy (either cell's
    IQR above NOISY of its median) with model_noisy/baseline_noisy, model_untrusted/baseline_untrusted (the row's
    ``trusted`` is 0), status, baseline_status, and the model's own latency_ms_median, latency_ms_iqr and
    peak_mem_bytes. Ratios are NaN when either cell is not ``ok``. Empty when
    no baseline is present.
    """
    df = labelled(ensure_schema(efficiency(df)))
    base = choose_baseline(df, baseline)
    cols = GROUP + ["model", "seq_len", "speedup", "speedup_lo", "speedup_hi", "mem_ratio", "macs_ratio", "noisy",
                    "model_noisy", "baseline_noisy", "model_untrusted", "baseline_untrusted", "status",
                    "baseline_status", "latency_ms_median", "latency_ms_iqr", "peak_mem_bytes"]
    if base is None:
        return pd.DataFrame(columns=cols)
    b = df[df["model"] == base][GROUP + ["seq_len", "status", "latency_ms_median", "latency_ms_iqr",
                                         "peak_mem_bytes", "macs", "trusted"]]
    m = df.merge(b, on=GROUP + ["seq_len"], how="left", suffixes=("", "_b"))
    ok = (m["status"] == "ok") & (m["status_b"] == "ok")
    m["speedup"] = (m["latency_ms_median_b"] / m["latency_ms_median"]).where(ok)
    m["mem_ratio"] = (m["peak_mem_bytes"] / m["peak_mem_bytes_b"]).where(ok & (m["peak_mem_bytes_b"] > 0))
    m["macs_ratio"] = (m["macs"] / m["macs_b"]).where(m["macs_b"] > 0)
    m["speedup_lo"], m["speedup_hi"] = _interval(m, ok)
    m["model_noisy"] = m["latency_ms_iqr"] / m["latency_ms_median"] > NOISY
    m["baseline_noisy"] = m["latency_ms_iqr_b"] / m["latency_ms_median_b"] > NOISY
    m["noisy"] = m["model_noisy"] | m["baseline_noisy"]
    m["model_untrusted"], m["baseline_untrusted"] = m["trusted"] == 0, m["trusted_b"] == 0  # no flag: trusted
    m["baseline_status"] = m["status_b"]
    order = {x: i for i, x in enumerate(model_order(df, base))}
    m["_o"] = m["model"].map(order)
    m = m.sort_values(GROUP + ["_o", "seq_len"])
    out = m[cols].reset_index(drop=True)
    out.attrs["baseline"] = base
    return out


def _interval(m: pd.DataFrame, ok: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(lo, hi) of each speed-up: the row's own INTERVAL_COLUMNS where present, else quartile over quartile."""
    half, half_b = m["latency_ms_iqr"].fillna(0) / 2, m["latency_ms_iqr_b"].fillna(0) / 2
    lo = (m["latency_ms_median_b"] - half_b) / (m["latency_ms_median"] + half)
    fast = m["latency_ms_median"] - half
    hi = ((m["latency_ms_median_b"] + half_b) / fast.where(fast > 0)).fillna(float("inf"))
    for col, q in zip(INTERVAL_COLUMNS, (lo, hi)):
        if col in m.columns:
            own = pd.to_numeric(m[col], errors="coerce")
            q.update(own[own.notna()])
    return lo.where(ok), hi.where(ok)


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
    for key, g in groups(rel):
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
