"""Synthetic results frames whose report answers are known in closed form (shared by the report tests)."""
from __future__ import annotations

import json

import pandas as pd

from attnbench.results import ALL_COLUMNS

NS = [256, 512, 1024, 2048, 4096]
# latency (ms) and memory (bytes) as power laws: log-log interpolation between bracketing N is then exact
COSTS = {
    "softmax": (lambda n: 1e-6 * n * n, lambda n: 4.0 * n * n),
    "soft": (lambda n: 2e-3 * n, lambda n: 12_000.0 * n),  # latency break-even 2000, memory 3000
    "performer": (lambda n: 1e-5 * n, lambda n: 100.0 * n),  # cheaper everywhere
    "linformer": (lambda n: 1.0 * n, lambda n: 1e5 * n),  # dearer everywhere up to 4096 in latency
}


def frame(models=COSTS, ns=NS, fail=None, iqr=0.01, mode="infer") -> pd.DataFrame:
    fail = fail or {}
    rows = []
    for model in models:
        lat, mem = COSTS[model]
        for n in ns:
            status = fail.get((model, n), "ok")
            ok = status == "ok"
            rows.append(dict(model=model, scope="layer", skeleton="layer", seq_len=n, batch=1, dtype="fp32",
                             device="cpu", mode=mode, status=status, reason=None if ok else f"{status} at {n}",
                             params=123_456, macs=1000 * n, peak_mem_bytes=mem(n) if ok else None,
                             latency_ms_median=lat(n) if ok else None, latency_ms_iqr=lat(n) * iqr if ok else None,
                             throughput_per_s=1000 / lat(n) if ok else None,
                             hparams=json.dumps({"landmarks": 49, "sampler": "pool"}) if model == "soft" else "{}"))
    return pd.DataFrame(rows, columns=ALL_COLUMNS)


def soft_train_and_efficiency_rows():
    """One trained soft (5.7 M params, 1.2 GMACs) and four efficiency rows of a smaller soft at the same key."""
    base = dict(model="soft", scope="layer", skeleton="vit-tiny", seq_len=196, device="cpu", status="ok",
                params=123_456, macs=7e6, latency_ms_iqr=0.01, hparams=json.dumps({"landmarks": 49}))
    eff = pd.DataFrame([
        {**base, "mode": "train", "batch": 1, "dtype": "fp32", "peak_mem_bytes": 1 * 2**20, "latency_ms_median": 9.0,
         "throughput_per_s": 111.0},
        {**base, "mode": "infer", "batch": 8, "dtype": "fp32", "peak_mem_bytes": 2 * 2**20, "latency_ms_median": 8.0,
         "throughput_per_s": 1000.0},
        {**base, "mode": "infer", "batch": 1, "dtype": "bf16", "peak_mem_bytes": 3 * 2**20, "latency_ms_median": 7.0,
         "throughput_per_s": 142.0},
        {**base, "mode": "infer", "batch": 1, "dtype": "fp32", "peak_mem_bytes": 4 * 2**20, "latency_ms_median": 2.0,
         "throughput_per_s": 500.0},
    ], columns=ALL_COLUMNS)
    train = pd.DataFrame([dict(model="soft", scope="train", skeleton="vit-tiny", seq_len=196, batch=1024, mode="train",
                               dtype="bf16", device="cuda", status="ok", top1=79.3, top5=94.6, epochs=300,
                               dataset="imagenet", params=5_700_000, macs=1.2e9, hparams="{}")], columns=ALL_COLUMNS)
    return eff, train


def variants_frame() -> pd.DataFrame:
    """softmax and soft, each in two hparams variants (the second soft twice as slow, the second softmax 4x slower)."""
    df = frame(models=["softmax", "soft"])
    df.loc[df.model == "softmax", "hparams"] = json.dumps({"impl": "sdpa"})
    slow_soft = df[df.model == "soft"].assign(hparams=json.dumps({"landmarks": 64, "sampler": "pool"}))
    slow_soft["latency_ms_median"] *= 2
    slow_soft["latency_ms_iqr"] *= 2
    math_softmax = df[df.model == "softmax"].assign(hparams=json.dumps({"impl": "math"}))
    math_softmax["latency_ms_median"] *= 4
    return pd.concat([df, slow_soft, math_softmax], ignore_index=True)
