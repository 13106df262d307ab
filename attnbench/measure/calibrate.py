"""How fast can this machine go? Sustained matmul GFLOP/s (fp32, bf16) and copy bandwidth, measured once per run on
the run's device and thread count, so that every cell can say what share of the machine's peak it reached.

The figures are what torch itself sustains on a large square matmul (grown until one product takes 20 ms, at most 2048 on a CPU and 8192 on CUDA) and on a large
tensor copy (bytes read + written), timed with ``torch.utils.benchmark.Timer``: a practical ceiling for the cells,
which run the same kernels, not the vendor's datasheet peak.
"""
from __future__ import annotations

import functools
import json
import math
import time
from typing import Any

__all__ = ["calibrate", "calibrate_cached", "flops_per_step"]

MAX_N = {"cpu": 2048, "cuda": 8192}  # the largest square matmul tried


def flops_per_step(macs: float, mode: str) -> float:
    """FLOPs of one timed step from the forward's audited MACs: 2 per MAC forward; a training step adds the backward,
    about twice the forward's (the usual 3x rule; the optimizer's elementwise update is not counted)."""
    return 2.0 * macs * (3.0 if mode == "train" else 1.0)


def _median_s(fn: Any, threads: int, seconds: float) -> float:
    from torch.utils.benchmark import Timer

    fn()  # warm-up: allocation, kernel selection
    m = Timer("fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(min_run_time=seconds)
    return m.median


def calibrate(device: str = "cpu", threads: int | None = None, seconds: float = 0.3) -> dict[str, Any]:
    """Measure the machine: ``{"matmul_gflops": {"fp32": x, "bf16": y}, "copy_gbps": z, "device", "threads"}``.

    Never raises: a figure that cannot be measured is left out and ``reason`` says why (the rows' share column
    stays empty then).
    """
    import torch

    out: dict[str, Any] = {"device": device, "matmul_gflops": {}}
    old_threads = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        out["threads"] = torch.get_num_threads()
        dev = torch.device(device)
        if dev.type not in ("cpu", "cuda"):
            raise RuntimeError(f"no calibration for device type {dev.type!r}")
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            n = 128
            while True:  # grow until one product is long enough to be compute-bound
                n *= 2
                a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
                torch.mm(a, b)
                sync()
                t0 = time.perf_counter()
                torch.mm(a, b)
                sync()
                if time.perf_counter() - t0 >= 0.02 or n >= MAX_N[dev.type]:
                    break
            t = _median_s(lambda: (torch.mm(a, b), sync()), out["threads"], seconds)
            out["matmul_gflops"][name] = 2 * n**3 / t / 1e9
            del a, b
        x = torch.empty(64 * 2**20 // 4 * (4 if dev.type == "cuda" else 1), device=dev)
        y = torch.empty_like(x)
        t = _median_s(lambda: (y.copy_(x), sync()), out["threads"], seconds)
        out["copy_gbps"] = 2 * x.numel() * x.element_size() / t / 1e9
        bad = [k for k, v in (*out["matmul_gflops"].items(), ("copy", out["copy_gbps"]))
               if not (math.isfinite(v) and v > 0)]
        if bad:
            raise RuntimeError(f"non-positive or non-finite figures for {', '.join(bad)}")
    except Exception as e:  # noqa: BLE001 - a probe that cannot run leaves the column empty, never a crash
        out["reason"] = f"calibration failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        out.pop("copy_gbps", None)
        out["matmul_gflops"] = {}
    finally:
        torch.set_num_threads(old_threads)
    return out


@functools.lru_cache(maxsize=None)
def _cached(device: str, threads: int | None) -> str:
    return json.dumps(calibrate(device, threads))


def calibrate_cached(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """:func:`calibrate`, measured once per process for a (device, threads) pair (a notebook's repeated sweeps);
    ``threads`` None is torch's current count, so that it shares the measurement of that count given explicitly."""
    import torch

    return json.loads(_cached(device, threads or torch.get_num_threads()))
