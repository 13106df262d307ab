"""The accuracy-and-cost ("paper") table: each training row with the cost of the model it trained.

* **params, GMACs**: the training row's own ``params`` and ``macs`` (``attnbench train`` counts the model it trained,
  one forward pass of one sample): an efficiency row of the same (model, skeleton, N) may have measured another
  model (patch size, number of classes, hparams).
* **peak memory, latency, throughput**: from one ``ok`` efficiency row joined on (model, skeleton, seq_len). Where
  several match, the first of: hparams agreeing with the training run's overrides, mode ``infer``, the smallest
  batch, ``fp32``, then the remaining columns in sort order. :func:`paper_notes` says which setting was used, and a
  row whose efficiency row counted different params is marked :data:`PARAMS_MISMATCH_MARK`.
* **top-1, top-5**: the row's own; a seed that did not learn (:mod:`attnbench.learning`) shows :data:`NOT_LEARNED`,
  not its chance-level figure, and top-5 is left out on a task of :data:`TOP5_CLASSES` classes or fewer.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from attnbench.reporting.format import DASH, fmt_latency, fmt_sig
from attnbench.reporting.load import canon_hparams, efficiency, ensure_schema, parse_hparams, train_mask, variant_labels
from attnbench.reporting.seeds import seed_learned

__all__ = ["paper_table", "paper_display", "paper_notes", "pick_efficiency_row", "top5_shown", "COUNT_NOTE",
           "NOT_LEARNED", "PARAMS_MISMATCH_MARK", "PARAMS_MISMATCH_NOTE"]

JOIN = ["model", "skeleton", "seq_len"]
SETTING = ["batch", "dtype", "device", "mode"]
COLUMNS = ["model", "skeleton", "seq_len", "params_m", "gmacs", "peak_mem_mib", "latency_ms_median",
           "latency_ms_iqr", "throughput_per_s", "top1", "top5", "learned", "classes", "epochs", "dataset",
           "train_hours", "eff_batch", "eff_dtype", "eff_device", "eff_mode", "eff_params_m", "params_differ"]
# why this table's params and GMACs need not match the efficiency tables' for the same (model, skeleton, N)
COUNT_NOTE = ("params and GMACs are the trained model's own count (GMACs: one forward pass of one sample; a "
              "training step costs about 3×). They differ from the efficiency rows of the same model, skeleton and N "
              "because those measure another instance of the architecture: the skeleton's default classifier head "
              "(1,000 classes; training uses the dataset's), its default patch size and input channels, and GMACs "
              "at the cell's batch.")
NOT_LEARNED = "did not learn"  # a seed's top-1 cell when it stayed at chance: its figure measures nothing
TOP5_CLASSES = 5  # top-5 of a task with this many classes or fewer is always 100 %
PARAMS_MISMATCH_MARK = "*"
PARAMS_MISMATCH_NOTE = ("efficiency row measured a model with different params (classifier head, patch size or "
                        "hparams): its memory and speed are those of that model")


def pick_efficiency_row(candidates: pd.DataFrame, train_hparams: Any = None) -> pd.Series | None:
    """The efficiency row to report beside a training row, deterministically (see the module docstring)."""
    if candidates.empty:
        return None
    want = parse_hparams(train_hparams)

    def agrees(h: Any) -> bool:
        d = parse_hparams(h)
        return all(k in d and d[k] == v for k, v in want.items())

    rest = [c for c in ("device", "mode", "run") if c in candidates.columns]
    ranked = candidates.assign(_disagree=~candidates["hparams"].map(agrees), _not_infer=candidates["mode"] != "infer",
                               _not_fp32=candidates["dtype"] != "fp32", _hp=candidates["hparams"].map(canon_hparams),
                               **{f"_{c}": candidates[c].astype(str) for c in ["dtype"] + rest})
    keys = ["_disagree", "_not_infer", "batch", "_not_fp32", "_dtype"] + [f"_{c}" for c in rest] + ["_hp"]
    return ranked.sort_values(keys, kind="mergesort", na_position="last").iloc[0]


def paper_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per finished training row (best top-1 first within skeleton and N); columns :data:`COLUMNS`.

    ``model`` is the training rows' :func:`~attnbench.reporting.load.variant_labels`; ``eff_*`` name the efficiency row
    the memory, latency and throughput come from (empty when none matched); ``params_differ`` is True when that row
    counted different params than the training row.
    """
    df = ensure_schema(df)
    train = df[train_mask(df)]
    train = train[train["top1"].notna()]
    if train.empty:
        return pd.DataFrame(columns=COLUMNS)
    labels = variant_labels(train)
    eff = efficiency(df)
    eff = eff[eff["status"] == "ok"]
    rows = []
    for (_, t), label in zip(train.iterrows(), labels):
        cand = eff[(eff["model"] == t["model"]) & (eff["skeleton"] == t["skeleton"]) & (eff["seq_len"] == t["seq_len"])]
        e = pick_efficiency_row(cand, t["hparams"])
        row = {"model": label, **{c: t[c] for c in ("skeleton", "seq_len", "top1", "top5", "classes", "epochs",
                                                      "dataset", "train_hours")},
               "learned": seed_learned(t), "params_m": t["params"] / 1e6, "gmacs": t["macs"] / 1e9}
        if e is None:
            row.update(params_differ=False)
        else:
            row.update(peak_mem_mib=e["peak_mem_bytes"] / 2**20, latency_ms_median=e["latency_ms_median"],
                       latency_ms_iqr=e["latency_ms_iqr"], throughput_per_s=e["throughput_per_s"],
                       **{f"eff_{c}": e[c] for c in SETTING}, eff_params_m=e["params"] / 1e6,
                       params_differ=bool(pd.notna(e["params"]) and pd.notna(t["params"])
                                          and e["params"] != t["params"]))
        rows.append(row)
    out = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return out.sort_values(["skeleton", "seq_len", "top1"], ascending=[True, True, False]).reset_index(drop=True)


def _setting(r: Any) -> str:
    batch = r["eff_batch"]
    b = f"batch {int(batch)}" if pd.notna(batch) else "batch ?"
    return ", ".join([b] + [str(r[f"eff_{c}"]) for c in ("dtype", "device")]) + f", {r['eff_mode']} mode"


def paper_display(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper table's cells as display strings; memory/latency/throughput of a params mismatch marked ``*``."""
    def mark(text: str, differ: Any) -> str:
        return f"{text} {PARAMS_MISMATCH_MARK}" if bool(differ) and text != DASH else text

    differ = paper["params_differ"] if "params_differ" in paper.columns else [False] * len(paper)
    thr = paper["throughput_per_s"] if "throughput_per_s" in paper.columns else [None] * len(paper)
    learned = paper["learned"] if "learned" in paper.columns else pd.Series(math.nan, index=paper.index)
    top5 = top5_shown(paper)
    out = pd.DataFrame({
        "model": paper["model"], "skeleton": paper["skeleton"], "N": paper["seq_len"].map(lambda n: f"{int(n):,}"),
        "params (M)": paper["params_m"].map(fmt_sig), "GMACs": paper["gmacs"].map(fmt_sig),
        "peak mem (MiB)": [mark(fmt_sig(v), d) for v, d in zip(paper["peak_mem_mib"], differ)],
        "latency (ms)": [mark(fmt_latency(m, i), d)
                         for m, i, d in zip(paper["latency_ms_median"], paper["latency_ms_iqr"], differ)],
        "samples/s": [mark(fmt_sig(v), d) for v, d in zip(thr, differ)],
        "top-1 (%)": [NOT_LEARNED if x == 0 else fmt_sig(v) for v, x in zip(paper["top1"], learned)],
        "top-5 (%)": [fmt_sig(v) if s else DASH for v, s in zip(paper["top5"], top5)],
        "epochs": paper["epochs"].map(lambda v: DASH if pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v)),
        "dataset": paper["dataset"].fillna(DASH)})
    return out if top5.any() else out.drop(columns="top-5 (%)")


def top5_shown(rows: pd.DataFrame) -> pd.Series:
    """Where top-5 says something: not on a task of 5 classes or fewer (every answer is then in the top 5)."""
    classes = rows["classes"] if "classes" in rows.columns else pd.Series(math.nan, index=rows.index)
    return ~(pd.to_numeric(classes, errors="coerce") <= TOP5_CLASSES)


def paper_notes(paper: pd.DataFrame) -> list[str]:
    """The lines under the table: where each column comes from, the efficiency setting used, the ``*`` footnote."""
    lines = [COUNT_NOTE + " Peak memory, latency and samples/s come from the efficiency row joined on "
             "(model, skeleton, N); where several match, the first of: hparams agreeing with the training run's, "
             "mode infer, the smallest batch, fp32, then the remaining columns."]
    joined = paper[paper["eff_mode"].notna()]
    by_setting = joined.groupby(joined.apply(_setting, axis=1), sort=True)
    settings = {s: list(dict.fromkeys(g["model"])) for s, g in by_setting}
    if len(settings) == 1:
        lines.append(f"Efficiency setting of those columns: {next(iter(settings))}.")
    else:
        lines += [f"Efficiency setting of those columns for {', '.join(f'`{m}`' for m in models)}: {s}."
                  for s, models in settings.items()]
    missing = list(dict.fromkeys(paper.loc[paper["eff_mode"].isna(), "model"]))
    if missing:
        lines.append(f"No finished efficiency row for {', '.join(f'`{m}`' for m in missing)}: those columns are empty.")
    if (paper["learned"] == 0).any():
        lines.append(f"'{NOT_LEARNED}': the seed's best top-1 did not beat chance (binomial test, "
                     "`attnbench.learning`), so its top-1 measures nothing.")
    if not top5_shown(paper).all():
        lines.append(f"top-5 is left out on tasks of {TOP5_CLASSES} classes or fewer, where it is always 100 %.")
    if paper["params_differ"].fillna(False).astype(bool).any():
        lines.append(f"`{PARAMS_MISMATCH_MARK}` {PARAMS_MISMATCH_NOTE}.")  # in backticks: not a list item
    return lines
