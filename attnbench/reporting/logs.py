"""The per-epoch logs of the trained pairs, found beside each training row's source run.

``attnbench train`` writes ``<run_dir>/<model slug>/N<N>-seed<seed>/log.csv`` for each pair of a sweep and
``<run_dir>/<model slug>/log.csv`` for a single run; a joined report finds them through each row's ``run_dir``
(:func:`~attnbench.reporting.load.load_runs`). A row without a readable log simply has no curve.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.train.sweep import slug as model_slug

__all__ = ["LOG_NAME", "DIAG_PREFIX", "log_path", "read_log", "pair_logs", "diag_columns"]

LOG_NAME = "log.csv"
DIAG_PREFIX = "diag_"  # attnbench.train.diagnostics.PREFIX, which imports torch
KEYS = ["skeleton", "task", "seq_len", "model", "seed"]  # what ties a log's epochs to its training row


def log_path(run_dir: Any, model: str, seq_len: Any, seed: Any, log_dir: Any = None) -> Path | None:
    """The log of one pair: its row's ``log_dir``; for rows written before that column, the sweep's folder for
    (N, seed), else the single run's; None when none is there."""
    if not isinstance(run_dir, str) or not run_dir:
        return None
    if isinstance(log_dir, str) and log_dir:
        path = Path(run_dir) / log_dir / LOG_NAME
        return path if path.is_file() else None
    base = Path(run_dir) / model_slug(str(model))
    sweep = [base / f"N{int(seq_len)}-seed{int(seed)}" / LOG_NAME] if pd.notna(seq_len) and pd.notna(seed) else []
    return next((p for p in sweep + [base / LOG_NAME] if p.is_file()), None)


def read_log(path: Path) -> pd.DataFrame | None:
    """A log's epochs (1-based ``epoch``), its validation ``top1`` curve and its ``diag_*`` columns; None when
    unreadable. The curve is the EMA weights' where the run kept an EMA, as the results row's top-1 is."""
    try:
        log = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError):  # pandas' parse errors are ValueErrors
        return None
    if log.empty or not {"epoch", "top1"} <= set(log.columns):
        return None
    ema = pd.to_numeric(log["ema_top1"], errors="coerce") if "ema_top1" in log.columns else None
    curve = ema if ema is not None and ema.notna().any() else pd.to_numeric(log["top1"], errors="coerce")
    diags = {c: pd.to_numeric(log[c], errors="coerce") for c in diag_columns(log)}
    return pd.DataFrame({"epoch": pd.to_numeric(log["epoch"], errors="coerce") + 1, "top1": curve, **diags})


def pair_logs(train: pd.DataFrame) -> pd.DataFrame:
    """Every epoch of the logs of ``train`` (labelled training rows with a ``task`` column: ``model`` is the label,
    ``model_base`` the name the log folder is named after), long: the row's :data:`KEYS`, ``epoch``, ``top1`` and
    the ``diag_*`` columns."""
    frames = []
    for _, r in train.iterrows():
        path = log_path(r.get("run_dir"), r["model_base"], r["seq_len"], r["seed"], r.get("log_dir"))
        log = read_log(path) if path else None
        if log is not None:
            frames.append(log.assign(**{k: r[k] for k in KEYS}))
    if not frames:
        return pd.DataFrame(columns=KEYS + ["epoch", "top1"])
    out = pd.concat(frames, ignore_index=True)
    return out[KEYS + [c for c in out.columns if c not in KEYS]]


def diag_columns(frame: pd.DataFrame) -> list[str]:
    """The ``diag_*`` columns of a log (or of :func:`pair_logs`), in order."""
    return [c for c in frame.columns if str(c).startswith(DIAG_PREFIX)]
