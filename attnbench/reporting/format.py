"""Numbers and tables as the text a reader sees: significant figures, marks, and each table's display cells.

Numbers are shown only to the significant figures their IQR supports; a cell whose IQR exceeds :data:`NOISY` of
its median is marked noisy (as ``torch.utils.benchmark`` does).
"""
from __future__ import annotations

import math
import numbers
import re
import textwrap
from typing import Any

import pandas as pd

from attnbench.results import STATUSES
from attnbench.stats import json_list

__all__ = ["NOISY", "NOISE_MARK", "NO_SPREAD_MARK", "UNTRUSTED_MARK", "DASH", "MIN_SIG", "SAME", "PAGE", "fmt_sig",
           "fmt_latency", "fmt_ratio", "fmt_times", "fmt_rounds", "fit_lines", "status_cell", "absolute_display",
           "relative_display", "break_even_display", "machine_line", "short_machine", "short_command", "group_title",
           "LEGEND", "looks_numeric", "table_cells"]

NOISY = 0.10  # IQR / median above this marks a cell noisy
NOISE_MARK = "†"
NO_SPREAD_MARK = "‡"
UNTRUSTED_MARK = "§"
DASH = "—"
MIN_SIG = 2  # no figure is shown with fewer significant digits
SAME = 1.05  # a ratio closer to 1 than this reads "about the same"
PAGE = 80  # columns of a log or a pipe (cli._render.PAGE for the commands' rich consoles)
LEGEND = (f"{NOISE_MARK} IQR above {NOISY:.0%} of the median: noisy, read with care (never used in the verdict). "
          f"{NO_SPREAD_MARK} one timing block: spread unknown (a step too slow for more; raise --min-time). "
          f"{UNTRUSTED_MARK} untrusted: it failed a trust rule (see Trust); shown, but never used in a speed-up, a "
          "break-even or the verdict.")


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
    if top + dec + 1 < MIN_SIG:  # the IQR is as large as the value: keep MIN_SIG figures anyway
        dec = MIN_SIG - 1 - top
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


def _latency_sig(median: Any, iqr: Any) -> int:
    """The significant figures of the latency cell, so that throughput (batch / latency) claims no more."""
    if median is None or pd.isna(median) or median <= 0 or iqr is None or pd.isna(iqr) or iqr == 0:
        return 3
    dec = _decimals(float(median), float(iqr))
    return max(MIN_SIG, math.floor(math.log10(float(median))) + dec + 1)


def fmt_ratio(v: Any, noisy: bool = False) -> str:
    """``1.7×`` (two figures), ``†`` when noisy; NaN -> a dash."""
    if v is None or pd.isna(v):
        return DASH
    return f"{fmt_sig(v, 2)}×" + (f" {NOISE_MARK}" if noisy else "")


def fmt_times(ratio: float, lo: float | None = None, hi: float | None = None, *, more: str = "faster",
              less: str = "slower", same: str = "about as fast", than: str = "") -> str:
    """A ratio read the way round it is >= 1: ``5.7× (5.2–6.1) faster``, or ``3.2× slower`` for 0.31 (the interval
    inverted with it); the interval is left out when unknown or a point. Within :data:`SAME` of 1 it is ``same``
    (``1.0× less memory`` would claim a difference the figure does not show). ``than`` names the other side:
    ``5.7× faster than `softmax```, ``about as fast as `softmax```."""
    if 1 / SAME < ratio < SAME:
        return f"{same} as {than}" if than else same
    if ratio < 1:
        ratio, lo, hi, more = 1 / ratio, (1 / hi if hi else None), (1 / lo if lo else None), less
    text = f"{fmt_sig(ratio, 2)}×"
    ok = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi) and lo > 0
    if ok and fmt_sig(lo, 2) != fmt_sig(hi, 2):
        text += f" ({fmt_sig(lo, 2)}–{fmt_sig(hi, 2)})"
    return f"{text} {more}" + (f" than {than}" if than else "")


def fmt_rounds(lo: Any, hi: Any, counted: Any, excluded: Any = None) -> str:
    """The spread over rounds: ``4.1–4.3 (3)``, the fastest and slowest round's median and how many rounds count
    (one figure when both read the same). When none counted, every round ran on a busy machine and was set aside:
    the figures are those rounds', so the count says so (``1.1 (1 set aside)``), never ``(0)``."""
    if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (lo, hi, counted)):
        return DASH
    a, b = fmt_sig(lo, 2), fmt_sig(hi, 2)
    span = a if a == b else f"{a}–{b}"
    if counted > 0:
        return f"{span} ({int(counted)})"
    aside = len(json_list(excluded))
    return f"{span} ({aside} set aside)" if aside else f"{span} (none counted)"


def fit_lines(text: str, width: int, indent: str = "    ") -> list[str]:
    """``text`` as lines of at most ``width`` columns, for a log or a pipe: wrapped at spaces, continuations indented
    by ``indent``; a word wider than a line (a path, a dataset spec) loses its middle to ``…`` rather than widen the
    page."""
    room = max(8, width - len(indent))
    out = []
    for para in text.splitlines() or [""]:
        words = [w if len(w) <= room else w[: room // 3] + "…" + w[len(w) - (room - 1 - room // 3):]
                 for w in para.split(" ")]
        out += textwrap.wrap(" ".join(words), width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False) or [""]
    return out


def status_cell(status: Any, reason: Any = None) -> str:
    """``ok``, or the status with the first line of its reason (60 characters at most)."""
    s = "" if status is None or pd.isna(status) else str(status)
    if s in ("", "ok"):
        return s
    r = "" if reason is None or pd.isna(reason) else str(reason).splitlines()[0]
    return f"{s}: {r[:60]}" if r else s


def table_cells(df: pd.DataFrame) -> tuple[list[list[str]], list[bool]]:
    """A display table's rows as strings (missing: empty) and, per column, whether every cell looks numeric
    (right-aligned by the renderers)."""
    rows = [["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in r]
            for r in df.itertuples(index=False)]
    numeric = [bool(rows) and all(looks_numeric(r[i]) for r in rows) for i in range(len(df.columns))]
    return rows, numeric


def looks_numeric(s: str) -> bool:
    """A cell of a numeric column: a number (with ``,``, ``×``, ``±``, marks), a dash, or a status in its place."""
    t = s.replace(",", "").replace("×", "").replace(NOISE_MARK, "").replace("±", " ").split()
    if not t or s == DASH or s in STATUSES:
        return s in (DASH, *STATUSES)
    try:
        float(t[0])
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------------ display tables

def absolute_display(absolute: pd.DataFrame) -> pd.DataFrame:
    """The absolute table's cells as display strings (what report.md and the terminal show). A cell that did not
    finish shows its status in the latency column (the reasons are listed apart)."""
    a = absolute
    ok = a["status"] == "ok"
    sig = a.apply(lambda r: _latency_sig(r["latency_ms_median"], r["latency_ms_iqr"]), axis=1)
    untrusted = a["trusted"] == 0 if "trusted" in a.columns else pd.Series(False, index=a.index)
    out = pd.DataFrame({
        "model": a["model"], "N": a["seq_len"].map(lambda n: f"{int(n):,}"),
        "params (M)": a["params_m"].map(lambda v: fmt_sig(v, 3)),
        "GMACs": a["gmacs"].map(lambda v: fmt_sig(v, 3)),
        "peak mem (MiB)": [fmt_sig(v, 3) if o else DASH for v, o in zip(a["peak_mem_mib"], ok)],
        "latency (ms)": [(fmt_latency(m, i) + (f" {UNTRUSTED_MARK}" if u else "")) if o else status_cell(s)
                         for m, i, o, s, u in zip(a["latency_ms_median"], a["latency_ms_iqr"], ok, a["status"],
                                                  untrusted)],
        "samples/s": [fmt_sig(v, s) if o else DASH for v, s, o in zip(a["throughput_per_s"], sig, ok)],
    })
    if "rounds" in a.columns and pd.to_numeric(a["rounds"], errors="coerce").notna().any():
        # the spread over rounds: the fastest and slowest round's median, and how many rounds count
        aside = a["rounds_excluded"] if "rounds_excluded" in a.columns else [None] * len(a)
        out.insert(out.columns.get_loc("latency (ms)") + 1, "rounds min–max (n)", [
            fmt_rounds(lo, hi, n, x) if o else DASH
            for lo, hi, n, x, o in zip(a["latency_rounds_min"], a["latency_rounds_max"], a["rounds"], aside, ok)])
    share = pd.to_numeric(a["peak_share"], errors="coerce") if "peak_share" in a.columns else None
    if share is not None and share.notna().any():
        # achieved GFLOP/s (audited MACs / latency) against the calibrated matmul peak: compute- or overhead-bound?
        out["% of peak"] = [fmt_sig(100 * v, 2) + "%" if o and pd.notna(v) else DASH for v, o in zip(share, ok)]
    return out


def relative_display(rel: pd.DataFrame, column: str) -> pd.DataFrame:
    """Wide model x N table of ``column`` (speedup, with its interval, or mem_ratio), failed cells showing their
    status and speed-ups of untrusted cells ``untrusted``."""
    base = rel.attrs.get("baseline", "baseline")

    def cell(r: pd.Series) -> str:
        if r["status"] != "ok":
            return str(r["status"])
        if r["baseline_status"] != "ok":
            b = r["baseline_status"] if pd.notna(r["baseline_status"]) else "missing"
            return f"{base} {b}"
        if column != "speedup":
            return fmt_ratio(r[column])
        if bool(r.get("model_untrusted", False)) or bool(r.get("baseline_untrusted", False)):
            return f"untrusted {UNTRUSTED_MARK}" if bool(r.get("model_untrusted")) else f"{base} untrusted"
        text = fmt_ratio(r[column], bool(r["noisy"]))
        lo, hi = r.get("speedup_lo"), r.get("speedup_hi")
        if pd.notna(lo) and pd.notna(hi) and math.isfinite(hi) and fmt_sig(lo, 2) != fmt_sig(hi, 2):
            text = text.replace("×", f"× ({fmt_sig(lo, 2)}–{fmt_sig(hi, 2)})", 1)
        return text

    cells = rel.assign(cell=rel.apply(cell, axis=1))
    wide = cells.pivot_table(index="model", columns="seq_len", values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=sorted(wide.columns))
    wide.columns = [f"N={int(c):,}" for c in wide.columns]
    return wide.fillna(DASH).reset_index()


def break_even_display(be: pd.DataFrame) -> pd.DataFrame:
    """One row per model: the break-even N in latency and in memory, or why there is none."""
    def cell(r: pd.Series) -> str:
        return f"≈ {fmt_sig(r['n'], 3)} ({r['note']})" if r["n"] is not None and pd.notna(r["n"]) else r["note"]

    rows = []
    for model, g in be.groupby("model", sort=False):
        d = {r["metric"]: cell(r) for _, r in g.iterrows()}
        rows.append({"model": model, "latency": d.get("latency", DASH), "memory": d.get("memory", DASH)})
    return pd.DataFrame(rows, columns=["model", "latency", "memory"])


# ------------------------------------------------------------------------------------------------ headings

def machine_line(meta: dict[str, Any]) -> str:
    """``Machine: <cpu> (<n> cores, <t> torch threads) | GPU ... | torch x | timm y | python z | attnbench v (sha)``."""
    if not meta:
        return "Machine: unknown (no meta.json)"
    from attnbench.machine import describe  # torch-free

    cpu = str(meta.get("cpu") or "?")
    hw = f"{cpu} ({meta.get('cpu_count', '?')} cores, {meta.get('torch_threads', '?')} torch threads)"
    detail = describe(meta).removeprefix(cpu).strip()  # family, model, stepping, ISA; the GPU and its driver
    parts = [f"Machine: {hw}" + (f" {detail}" if detail else "")]
    if meta.get("gpu"):
        parts.append(f"CUDA {meta.get('cuda', '?')}")
    for k in ("torch", "timm", "python"):
        if meta.get(k):
            parts.append(f"{k} {meta[k]}")
    v = meta.get("attnbench")
    if v:
        parts.append(f"attnbench {v}" + (f" ({meta['git_commit']})" if meta.get("git_commit") else ""))
    return " | ".join(parts)


# the executable a command line starts with: a path to attnbench, to its __main__.py, or python [-m] before it
_EXECUTABLE = re.compile(r"^(?:\S*/)?(?:python[\d.]*\s+(?:-m\s+)?)?(?:\S*/)?attnbench(?:/__main__\.py)?(?=\s|$)")


def short_command(command: str) -> str:
    """A command line as a reader would type it: ``/root/.pyenv/.../bin/attnbench train ...``,
    ``/work/main/attnbench/__main__.py train ...`` and ``python -m attnbench train ...`` -> ``attnbench train ...``."""
    return _EXECUTABLE.sub("attnbench", command.strip(), count=1)


def short_machine(meta: dict[str, Any]) -> str:
    """``AMD EPYC, 2 cores`` or the GPU's name: the machine in a few words, for figure titles."""
    if not meta:
        return "machine unknown"
    if meta.get("gpu"):
        return str(meta["gpu"])
    return f"{meta.get('cpu', '?')}, {meta.get('cpu_count', '?')} cores"


def group_title(key: dict[str, Any]) -> str:
    """``skeleton layer, batch 1, dtype fp32, device cpu, mode infer`` (missing values left out)."""
    parts = [f"{k} {v}" for k, v in key.items() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return ", ".join(parts)
