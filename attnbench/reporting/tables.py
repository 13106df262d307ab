"""The efficiency tables as DataFrames: absolute, relative to a softmax baseline, and the break-even N.

- **absolute**: per model x N, params, GMACs, peak memory, latency median +- IQR, throughput, status.
- **relative**: at each N, speed-up over the softmax baseline (baseline latency / model latency; > 1 is faster)
  with an interval, and memory ratio (model memory / baseline memory; < 1 is leaner), as in Long Range Arena's
  Table 2. Where both cells were timed in the same rounds (one ``pair_group``), the speed-up is the median of the
  per-round ratios with its exact order-statistic interval (``attnbench.stats.speedup_interval``); else the rows'
  own ``speedup_lo``/``speedup_hi`` where present, else the ratio of the two latencies' quartiles, each taken as
  median ± IQR/2. A speed-up with an untrusted cell on either side is left out (NaN); memory ratios are kept (peak
  memory is measured once, in a fresh process, and does not depend on the machine's load).
- **break_even**: the N where a method becomes cheaper than the baseline, interpolated log-log between the two
  measured lengths that bracket it, with the interval where the speed-up interval's ends cross 1
  (``attnbench.stats.break_even``), or a note saying it was not bracketed or not determined.
"""
from __future__ import annotations

import pandas as pd

from attnbench.reporting.format import NOISY
from attnbench.reporting.load import GROUP, efficiency, ensure_schema, groups, labelled, model_order
from attnbench.reporting.peak import peak_shares
from attnbench.stats import BASELINES, speedup_interval, used_rounds
from attnbench.stats import break_even as break_even_interval

__all__ = ["BASELINES", "INTERVAL_COLUMNS", "RELATIVE_COLUMNS", "choose_baseline", "baseline_note", "absolute_table",
           "relative_table", "ranking_table", "break_even"]

INTERVAL_COLUMNS = ("speedup_lo", "speedup_hi")  # a row's own interval of its speed-up, used when present
RELATIVE_COLUMNS = GROUP + ["model", "seq_len", "speedup", "speedup_lo", "speedup_hi", "speedup_pairs", "speedup_conf",
                            "mem_ratio", "macs_ratio", "noisy", "model_noisy", "baseline_noisy", "model_untrusted",
                            "baseline_untrusted", "status", "baseline_status", "latency_ms_median", "latency_ms_iqr",
                            "peak_mem_bytes", "untrusted_reason"]


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
    """One row per cell with units in the column names: params_m, gmacs, attn_gmacs, peak_mem_mib, latency, status,
    the rounds' spread and trust (latency_rounds_min/max, rounds, rounds_excluded, trusted, untrusted_reason), and
    the achieved GFLOP/s with its share of the run's calibrated matmul peak (achieved_gflops, peak_share: never above
    1, re-based where cells exceeded the calibration, ``peak.peak_shares``)."""
    df = labelled(ensure_schema(efficiency(df)))
    out = df[GROUP + ["model", "seq_len"]].copy()
    out["params_m"] = df["params"] / 1e6
    out["gmacs"] = df["macs"] / 1e9
    out["attn_gmacs"] = df["attn_macs"] / 1e9
    out["peak_mem_mib"] = df["peak_mem_bytes"] / 2**20
    for c in ("latency_ms_median", "latency_ms_iqr", "throughput_per_s", "status", "reason", "latency_rounds_min",
              "latency_rounds_max", "rounds", "rounds_excluded", "trusted", "untrusted_reason", "achieved_gflops",
              "peak_share"):
        out[c] = df[c]
    out["peak_share"] = peak_shares(df)  # a calibration the cells exceeded is no ceiling: re-based, never > 100 %
    order = {m: i for i, m in enumerate(model_order(df, choose_baseline(df)))}
    out["_o"] = out["model"].map(order)
    return out.sort_values(GROUP + ["_o", "seq_len"]).drop(columns="_o").reset_index(drop=True)


def relative_table(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """At each N (within each group), speed-up and memory ratio against ``baseline``.

    Columns: the group columns, model, seq_len, speedup (baseline latency / model latency) and its interval
    speedup_lo/speedup_hi (paired: speedup_pairs rounds, interval coverage speedup_conf), mem_ratio (model peak
    memory / baseline peak memory), macs_ratio, noisy (either cell's
    IQR above NOISY of its median) with model_noisy/baseline_noisy, model_untrusted/baseline_untrusted (the row's
    ``trusted`` is 0), status, baseline_status, and the model's own latency_ms_median, latency_ms_iqr,
    peak_mem_bytes and untrusted_reason. Ratios are NaN when either cell is not ``ok``. Empty when no baseline is
    present (:func:`ranking_table` has the same columns without one).
    """
    df = labelled(ensure_schema(efficiency(df)))
    base = choose_baseline(df, baseline)
    if base is None:
        return pd.DataFrame(columns=RELATIVE_COLUMNS)
    b = df[df["model"] == base][GROUP + ["seq_len", "status", "latency_ms_median", "latency_ms_iqr",
                                         "peak_mem_bytes", "macs", "trusted", "latency_ms_rounds", "rounds_excluded",
                                         "pair_group"]]
    m = df.merge(b, on=GROUP + ["seq_len"], how="left", suffixes=("", "_b"))
    ok = (m["status"] == "ok") & (m["status_b"] == "ok")
    m["model_untrusted"], m["baseline_untrusted"] = m["trusted"] == 0, m["trusted_b"] == 0  # no flag: trusted
    paired = _paired(m)
    m["speedup"] = paired["mid"].fillna(m["latency_ms_median_b"] / m["latency_ms_median"]).where(ok)
    m["mem_ratio"] = (m["peak_mem_bytes"] / m["peak_mem_bytes_b"]).where(ok & (m["peak_mem_bytes_b"] > 0))
    m["macs_ratio"] = (m["macs"] / m["macs_b"]).where(m["macs_b"] > 0)
    for col, own in zip(INTERVAL_COLUMNS, (paired["lo"], paired["hi"])):
        m[col] = own.fillna(pd.to_numeric(m[col], errors="coerce")) if col in m.columns else own
    m["speedup_lo"], m["speedup_hi"] = _interval(m, ok)
    m["speedup_pairs"], m["speedup_conf"] = paired["n"], paired["conf"]
    untrusted = m["model_untrusted"] | m["baseline_untrusted"]
    for col in ("speedup", "speedup_lo", "speedup_hi"):  # an untrusted cell is shown, never used in a ratio
        m[col] = m[col].mask(untrusted)
    m["model_noisy"] = _noisy(m["latency_ms_median"], m["latency_ms_iqr"])
    m["baseline_noisy"] = _noisy(m["latency_ms_median_b"], m["latency_ms_iqr_b"])
    m["noisy"] = m["model_noisy"] | m["baseline_noisy"]
    m["baseline_status"] = m["status_b"]
    order = {x: i for i, x in enumerate(model_order(df, base))}
    m["_o"] = m["model"].map(order)
    m = m.sort_values(GROUP + ["_o", "seq_len"])
    out = m[RELATIVE_COLUMNS].reset_index(drop=True)
    out.attrs["baseline"] = base
    return out


def _noisy(median: pd.Series, iqr: pd.Series) -> pd.Series:
    return iqr / median > NOISY


def ranking_table(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`relative_table`'s columns for a run without a baseline: each cell's own status, latency, memory and
    flags, every ratio NaN. The verdict ranks such cells against the fastest and the leanest at each N."""
    df = labelled(ensure_schema(efficiency(df)))
    out = df.assign(model_noisy=_noisy(df["latency_ms_median"], df["latency_ms_iqr"]),
                    model_untrusted=df["trusted"] == 0, baseline_noisy=False, baseline_untrusted=False)
    out["noisy"] = out["model_noisy"]
    order = {x: i for i, x in enumerate(model_order(df))}
    out = out.assign(_o=out["model"].map(order)).sort_values(GROUP + ["_o", "seq_len"])
    out = out.reindex(columns=RELATIVE_COLUMNS).reset_index(drop=True)
    out.attrs["baseline"] = None
    return out


def _paired(m: pd.DataFrame) -> pd.DataFrame:
    """Per row: the paired speed-up (mid, lo, hi, n pairs, conf) where the model and the baseline were timed in the
    same rounds (one ``pair_group``) and have rounds in common; NaN elsewhere."""
    out = []
    for r in m.itertuples(index=False):
        iv = None
        if isinstance(r.pair_group, str) and r.pair_group == r.pair_group_b:
            iv = speedup_interval(used_rounds(r.latency_ms_rounds_b, r.rounds_excluded_b),
                                  used_rounds(r.latency_ms_rounds, r.rounds_excluded))
        out.append((iv.mid, iv.lo, iv.hi, iv.n, iv.confidence) if iv else (float("nan"),) * 5)
    return pd.DataFrame(out, columns=["mid", "lo", "hi", "n", "conf"], index=m.index, dtype=float)


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


def break_even(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Per group and model, the N where the model becomes cheaper than the baseline in latency and in memory.

    Only N where both cells are ``ok`` (and, in latency, trusted) count. ``n`` is interpolated linearly in log N
    between the two measured lengths whose cost ratio brackets 1 (None when the sweep does not bracket it, or when
    the speed-up intervals include 1 on both sides; ``note`` says why); ``n_lo``/``n_hi`` are where the speed-up
    interval's ends cross 1 (None: open on that side; memory has no interval).
    """
    rel = relative_table(df, baseline)
    cols = GROUP + ["model", "metric", "n", "n_lo", "n_hi", "note"]
    base = rel.attrs.get("baseline")
    rows = []
    for key, g in groups(rel):
        for model, gm in g.groupby("model", sort=False):
            if model == base:
                continue
            for metric, col, inv in (("latency", "speedup", True), ("memory", "mem_ratio", False)):
                pts = gm[gm[col].notna() & (gm[col] > 0)].sort_values("seq_len")
                ratios = [1 / v if inv else v for v in pts[col]]
                ends = None
                if inv and pts["speedup_lo"].gt(0).all() and pts["speedup_hi"].notna().all():
                    ends = [1 / v for v in pts["speedup_hi"]], [1 / v for v in pts["speedup_lo"]]  # cost lo, hi
                be = break_even_interval([float(x) for x in pts["seq_len"]], ratios, *(ends or (None, None)))
                n, note = be.n, _untrusted_note(gm, be.note, bool(len(pts))) if inv else be.note
                # the baseline failing where this model finished is the strongest "cheaper" there is
                beyond = gm[(gm["status"] == "ok") & gm["baseline_status"].notna() & (gm["baseline_status"] != "ok")]
                if n is None and not beyond.empty:
                    first = beyond.sort_values("seq_len").iloc[0]
                    note += f"; {base} {first['baseline_status']} at {int(first['seq_len']):,} where {model} finished"
                rows.append({**key, "model": model, "metric": metric, "n": n, "n_lo": be.lo, "n_hi": be.hi,
                             "note": note})
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["baseline"] = base
    return out


def _untrusted_note(gm: pd.DataFrame, note: str, some_used: bool) -> str:
    """The latency break-even's note, saying which N it left out because a cell was untrusted there (when every N
    was, that is the whole story: both finished, so "no N where both finished" would be wrong)."""
    both = gm[(gm["status"] == "ok") & (gm["baseline_status"] == "ok")]
    bad = both[both["model_untrusted"].astype(bool) | both["baseline_untrusted"].astype(bool)]
    if bad.empty:
        return note
    ns = ", ".join(f"{int(n):,}" for n in sorted(bad["seq_len"]))
    return f"{note}; untrusted at {ns}, left out (see Trust)" if some_used else \
        f"not judged: untrusted at every N where both finished ({ns}; see Trust)"
