"""Runs read into one frame, and the frame helpers every table shares: schema, training rows, hparams variants.

Which columns are numeric comes from the results schema (``attnbench.results.NUMERIC_COLUMNS``).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.results import ALL_COLUMNS, KEY_COLUMNS, NUMERIC_COLUMNS, load_results, read_meta
from attnbench.train.data import LEVELS, REAL

__all__ = ["GROUP", "ABLATIONS", "load_runs", "run_labels", "train_mask", "task_of", "description", "is_ablation",
           "ensure_schema", "efficiency", "model_order", "canon_hparams", "parse_hparams", "as_list",
           "variant_labels", "labelled", "groups", "select"]

GROUP = ["skeleton", "batch", "dtype", "device", "mode"]  # one table per combination
# registered variants that are not a paper's layer (the registry also says so: a description starting "ablation")
ABLATIONS = ("softmax-tied", "gaussian-exact", "gaussian-exact-rownorm", "soft-matched")


# ------------------------------------------------------------------------------------------------ loading

def load_runs(run_dirs: str | Path | Iterable[str | Path]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read and join one or several run directories (e.g. the shards of one sweep).

    Returns the rows (with a ``run`` column naming the directory, a ``run_dir`` column giving its path, where the
    training pairs' logs are; a cell measured twice keeps its last row) and each run's meta.json. Raises a
    one-line ValueError for a missing directory or a corrupt file.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("no run directories given")
    frames, metas = [], []
    for d, label in zip(dirs, run_labels(dirs)):
        if not d.is_dir():
            raise ValueError(f"not a run directory: {d} (expected a folder holding results.csv)")
        if not (d / "results.csv").exists():
            raise ValueError(f"no results.csv in {d}; is it an attnbench run directory?")
        df = load_results(d)
        meta = read_meta(d)
        # a joined run (attnbench report A B --out J) keeps each row's source run and the sources' metas
        df["run"] = df["run"].fillna(label) if "run" in df.columns else label
        df["run_dir"] = _source_dirs(df, d, meta)
        frames.append(df)
        if isinstance(meta.get("runs"), list) and meta["runs"]:
            metas += [m for m in meta["runs"] if isinstance(m, dict)]
        elif meta:
            metas.append({**_flat_meta(meta), "run": label})
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return _dedupe(df), metas


def run_labels(dirs: list[Path]) -> list[str]:
    """Each run's label in the ``run`` column: its folder's name, or, where another run's folder has the same name,
    as many parent folders as tell them apart (``gpu/run1`` and ``cpu/run1``)."""
    parts = [d.resolve().parts for d in dirs]
    labels = []
    for i, p in enumerate(parts):
        k = 1
        while k < len(p) and any(q[-k:] == p[-k:] for j, q in enumerate(parts) if j != i):
            k += 1
        labels.append("/".join(p[-k:]))
    return labels


def _source_dirs(df: pd.DataFrame, d: Path, meta: dict[str, Any]) -> pd.Series:
    """Each row's source run directory: kept from a joined run's rows (relative to it), else found from the row's run label among
    the directories the run was joined from (a join written before rows kept it), else ``d`` itself."""
    own = pd.Series(df["run_dir"] if "run_dir" in df.columns else pd.NA, index=df.index, dtype=object)
    own = own.map(lambda p: str((d / p).resolve()) if isinstance(p, str) else p)  # a join stores them relative
    sources = [Path(p) for p in meta.get("joined_from") or [] if isinstance(p, str)]
    by_label = dict(zip(run_labels(sources), (str(p.resolve()) for p in sources))) if sources else {}
    return own.fillna(df["run"].map(by_label)).fillna(str(d.resolve()))


def _flat_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """meta.json as the sweep writes it (``{"environment": {...}, "config": {...}}``) flattened to one level."""
    env = meta.get("environment") if isinstance(meta.get("environment"), dict) else {}
    return {**{k: v for k, v in meta.items() if k != "environment"}, **env}


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    is_train = train_mask(df)
    keys = [k for k in KEY_COLUMNS if k in df.columns]
    eff = df[~is_train].drop_duplicates(keys, keep="last")
    return pd.concat([eff, df[is_train]], ignore_index=True) if is_train.any() else eff.reset_index(drop=True)


def train_mask(df: pd.DataFrame) -> pd.Series:
    """Rows written by ``attnbench train`` (scope ``train``, or carrying accuracy/dataset columns)."""
    mask = pd.Series(False, index=df.index)
    if "scope" in df.columns:
        mask |= df["scope"] == "train"
    for c in ("top1", "dataset"):
        if c in df.columns:
            mask |= df[c].notna()
    return mask


def task_of(dataset: Any) -> str:
    """The task a training row's data spec names, without its image size and options (``longrange:64:hard:n=4000``
    -> ``longrange:hard``, ``shapes:32`` -> ``shapes``, ``cifar10:/data`` -> ``cifar10``); ``""`` when missing."""
    if not isinstance(dataset, str) or not dataset:
        return ""
    kind, _, rest = dataset.partition(":")
    return kind if kind in REAL else ":".join([kind] + [p for p in rest.split(":") if p in LEVELS])


def description(model: str) -> str:
    """The registry's one-line description of ``model``; ``""`` when the name does not resolve."""
    from attnbench.registry import get_attention  # loads every attention (torch): asked only of training rows

    try:
        return get_attention(model).description or ""
    except ValueError:
        return ""


def is_ablation(model: str) -> bool:
    """True for an ablation (never a paper's layer): one of :data:`ABLATIONS`, or described as one."""
    return model in ABLATIONS or description(model).startswith("ablation")


def ensure_schema(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with every schema column present and the numeric ones as numbers (unparsable -> NaN)."""
    df = df.copy()
    for c in ALL_COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    for c in NUMERIC_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def efficiency(df: pd.DataFrame) -> pd.DataFrame:
    """The efficiency cells (every row that is not a training row)."""
    return df[~train_mask(df)]


def model_order(df: pd.DataFrame, baseline: str | None = None) -> list[str]:
    """Models in the frame's order, the baseline first."""
    seen = list(dict.fromkeys(df["model"].astype(str)))
    return ([baseline] if baseline in seen else []) + [m for m in seen if m != baseline]


# ------------------------------------------------------------------------------------------------ hparams

def parse_hparams(v: Any) -> dict[str, Any]:
    """An hparams cell (JSON text or dict) as a dict; anything else -> ``{}``."""
    if isinstance(v, dict):
        return v
    try:
        out = json.loads(v)
        return out if isinstance(out, dict) else {}
    except (TypeError, ValueError):
        return {}


def canon_hparams(v: Any) -> str:
    """One spelling per hparams value (sorted JSON; missing -> ``{}``), so equal settings compare equal."""
    return json.dumps(parse_hparams(v), sort_keys=True, default=str)


def as_list(v: Any) -> list[str]:
    """A JSON list cell (or a scalar) as a list of strings."""
    try:
        x = json.loads(v) if isinstance(v, str) else v
    except ValueError:
        return [str(v)]
    return [str(o) for o in x] if isinstance(x, (list, tuple)) else [str(x)]


def _hp_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def variant_labels(df: pd.DataFrame) -> pd.Series:
    """Each row's model label: the model's name, or, when the frame holds that model with more than one distinct
    ``hparams`` value, the name plus the keys whose values differ between its variants (``soft[landmarks=64]``;
    a key a variant does not set shows ``default``). Variants are thereby separate models in every table. A frame
    already labelled (``model_base``) is labelled from its base names, so labelling twice changes nothing."""
    model = df["model_base" if "model_base" in df.columns else "model"].astype(str)
    if df.empty or "hparams" not in df.columns:
        return model
    canon = df["hparams"].map(canon_hparams)
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
    if "compile" in df.columns:  # a compiled run is its own model in every table: soft+compile, soft+max-autotune
        mode = df["compile"].astype(object).where(df["compile"].notna(), "").astype(str)
        labels = labels.where(mode == "", labels + "+" + mode.replace("default", "compile"))
    return labels


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``model`` replaced by :func:`variant_labels` and the name kept in ``model_base`` (idempotent)."""
    labels = variant_labels(df)
    if "model_base" in df.columns and labels.equals(df["model"].astype(str)):
        return df
    out = df.copy()
    if "model_base" not in out.columns:
        out["model_base"] = out["model"]
    out["model"] = labels
    return out


# ------------------------------------------------------------------------------------------------ groups

def groups(df: pd.DataFrame) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """Yield (key dict, frame) per (skeleton, batch, dtype, device, mode), in a stable order."""
    cols = [c for c in GROUP if c in df.columns]
    if df.empty:
        return
    for key, g in df.groupby(cols, dropna=False, sort=True):
        yield dict(zip(cols, key if isinstance(key, tuple) else (key,))), g


def select(frame: pd.DataFrame, key: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``frame`` matching every column of ``key`` (a missing value matches NaN)."""
    mask = pd.Series(True, index=frame.index)
    for k, v in key.items():
        mask &= frame[k].isna() if v is None or (isinstance(v, float) and math.isnan(v)) else frame[k] == v
    return frame[mask]
