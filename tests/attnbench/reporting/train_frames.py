"""Training rows and per-pair logs whose report answers are known (shared by the training report tests)."""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from attnbench.learning import learned as learned_rule
from attnbench.results import ALL_COLUMNS

SK = "vit-micro-d2"
KEEP = object()  # train_row(learned=KEEP): the learned column as the rule gives it


def train_row(model: str, seed: int, top1: float, *, n: int = 256, best: float | None = None, learned=KEEP,
              classes: int = 2, val: int = 500, budget: int = 5, dataset: str = "longrange:64:hard:n=4000:seed=0",
              **extra) -> dict:
    """One finished training row; ``best`` defaults to ``top1``; ``learned=None`` leaves the column empty (a row
    written before it)."""
    best = top1 if best is None else best
    return dict(model=model, scope="train", skeleton=SK, seq_len=n, batch=32, dtype="fp32", device="cpu",
                mode="train", status="ok", top1=top1, top5=100.0, epochs=budget, dataset=dataset, seed=seed,
                macs=1e8 * (n / 256) * (2 if model == "softmax" else 1), params=2e5, train_hours=0.1, hparams="{}",
                epochs_budget=budget, best_top1=best, best_epoch=1, val_images=val, classes=classes,
                learned=int(learned_rule(best, val, classes)) if learned is KEEP else learned, fresh=1, **extra)


def eff_row(model: str, n: int, latency: float, mem_mib: float) -> dict:
    return dict(model=model, scope="vit", skeleton=SK, seq_len=n, batch=1, dtype="fp32", device="cpu",
                mode="infer", status="ok", latency_ms_median=latency, latency_ms_iqr=latency / 20,
                peak_mem_bytes=mem_mib * 2**20, hparams="{}", params=2e5)


def frame(rows: list[dict]) -> pd.DataFrame:
    extra = [c for r in rows for c in r if c not in ALL_COLUMNS]
    return pd.DataFrame(rows, columns=ALL_COLUMNS + list(dict.fromkeys(extra)))


def write_log(run_dir: Path, model: str, n: int, seed: int, top1: list[float], **diags: list[float]) -> Path:
    """A sweep pair's log.csv (epoch 0-based, as the training loop writes it) with ``diag_<name>`` columns."""
    d = run_dir / model / f"N{n}-seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    fields = ["epoch", "train_loss", "val_loss", "top1", "top5", "ema_top1", "ema_top5", "lr", "images_per_s",
              "epoch_s"] + [f"diag_{k}" for k in diags]
    with open(d / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for e, t in enumerate(top1):
            w.writerow({"epoch": e, "train_loss": 0.7, "val_loss": 0.7, "top1": t, "top5": 100.0, "ema_top1": "",
                        "ema_top5": "", "lr": 1e-3, "images_per_s": 100.0, "epoch_s": 1.0,
                        **{f"diag_{k}": v[e] for k, v in diags.items()}})
    return d / "log.csv"
