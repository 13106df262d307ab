"""How fast can this machine go? Sustained matmul GFLOP/s of the run's dtype and copy bandwidth, measured once per
(device, threads, dtype) on the run's device, so that every cell can say what share of the machine's peak it reached.

The sustained peak is a ceiling, not a typical rate: each figure is the **best** of several timed blocks (one call
each), not their median, because anything that disturbs a block (another process, a page fault, a clock ramp)
only slows it. Two shapes are timed and the faster counts: a square ``torch.mm`` grown until one product takes
20 ms (at most 2048 on a CPU, 8192 on CUDA) and a batched ``torch.bmm`` of the same FLOPs (8 products of half the
side), the kernel family the attentions' QKᵀ and AV run. Blocks are bracketed by the load check of the timing
rounds (``stats.others_exceed``): a figure taken while other processes held the cores it needs is tried again once
the machine looks idle, and flagged (``disturbed``) when it never ran alone. Beside it, where the hardware says
enough, the theoretical peak (:func:`theoretical_gflops`: cores x flop/cycle x clock on a CPU, SMs x flop/cycle x
clock on CUDA).
"""
from __future__ import annotations

import functools
import json
import math
import time
from typing import Any, Callable

__all__ = ["calibrate", "calibrate_cached", "flops_per_step", "peak_of", "best_seconds", "theoretical_gflops",
           "cpu_flop_per_cycle", "CUDA_FLOP_PER_CYCLE", "MIN_BLOCKS"]

MAX_N = {"cpu": 2048, "cuda": 8192}  # the largest square matmul tried
PRODUCT_S = 0.02  # a product this long is compute-bound: the size stops growing there
MIN_BLOCKS = 3  # timed blocks per figure at least; more while the figure's seconds last
MAX_BLOCKS = 50
ATTEMPTS = 3  # tries of a figure whose blocks other processes disturbed, while the machine looks idle again
BMM_BATCH = 8  # the batched shape: 8 products of (n/2)^3, the FLOPs of one n^3 product
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

# Published per-SM rates (flop per clock, dense) by compute capability: fp32 on the CUDA cores (no TF32: torch's
# default for fp32 matmul), bf16/fp16 on the tensor cores. An unknown capability has no theoretical figure.
CUDA_FLOP_PER_CYCLE: dict[tuple[int, int], dict[str, int]] = {
    (7, 0): {"fp32": 128, "fp16": 1024},  # V100
    (7, 5): {"fp32": 128, "fp16": 1024},  # T4, Turing
    (8, 0): {"fp32": 128, "bf16": 2048, "fp16": 2048},  # A100
    (8, 6): {"fp32": 256, "bf16": 1024, "fp16": 1024},  # A10, A40, RTX 30xx (GeForce: half with fp32 accumulate)
    (8, 9): {"fp32": 256, "bf16": 1024, "fp16": 1024},  # L4, L40, RTX 40xx (idem)
    (9, 0): {"fp32": 256, "bf16": 4096, "fp16": 4096},  # H100, H200
}


def flops_per_step(macs: float, mode: str) -> float:
    """FLOPs of one timed step from the forward's audited MACs: 2 per MAC forward; a training step adds the backward,
    about twice the forward's (the usual 3x rule; the optimizer's elementwise update is not counted)."""
    return 2.0 * macs * (3.0 if mode == "train" else 1.0)


def peak_of(calibration: dict[str, Any], dtype: str) -> float | None:
    """The calibrated matmul GFLOP/s a cell of ``dtype`` is judged against (an older calibration without fp16:
    its bf16 figure, as it was used then)."""
    figures = calibration.get("matmul_gflops") or {}
    return figures.get(dtype) or (figures.get("bf16") if dtype == "fp16" else None)


# ------------------------------------------------------------------------------------------------ timing


def best_seconds(fn: Callable[[], Any], sync: Callable[[], Any], *, seconds: float,
                 clock: Callable[[], float] = time.perf_counter) -> tuple[float, int]:
    """(seconds of the fastest block, blocks timed): one call of ``fn`` per block, :data:`MIN_BLOCKS` at least and
    more while ``seconds`` of blocks last (at most :data:`MAX_BLOCKS`), after one untimed warm-up call."""
    fn()
    sync()
    times: list[float] = []
    while len(times) < MIN_BLOCKS or (sum(times) < seconds and len(times) < MAX_BLOCKS):
        t0 = clock()
        fn()
        sync()
        times.append(clock() - t0)
    return min(times), len(times)


def _grown(make: Callable[[int], Callable[[], Any]], sync: Callable[[], Any], max_n: int,
           clock: Callable[[], float]) -> tuple[int, Callable[[], Any]]:
    """The side n (doubling from 256) at which a call of ``make(n)`` takes :data:`PRODUCT_S` (the faster of two: one
    disturbed call must not stop the growth), or ``max_n``."""
    n = 128
    while True:
        n *= 2
        fn = make(n)
        fn()  # first call: allocation, kernel selection
        sync()
        took = []
        for _ in range(2):
            t0 = clock()
            fn()
            sync()
            took.append(clock() - t0)
        if min(took) >= PRODUCT_S or n >= max_n:
            return n, fn


def _disturbed(share: float | None, threads: int) -> bool:
    from attnbench.machine import cpu_ids
    from attnbench.stats import others_exceed

    return others_exceed(share, len(cpu_ids()), threads)


def _idle_now(threads: int) -> bool:
    """The cores a retry needs look idle now (unknown counts as idle): else it would be disturbed as well."""
    from attnbench.machine import idle_cores

    idle = idle_cores()
    return idle is None or idle >= threads


def _figure(fn: Callable[[], Any], sync: Callable[[], Any], work: float, *, threads: int, seconds: float,
            clock: Callable[[], float]) -> dict[str, Any]:
    """``work`` per call / the best block, in units per second. Other processes that held the cores the calibration
    needs make it try again (at most :data:`ATTEMPTS`) once they look idle, the best attempt kept (load only slows
    a block); while they stay busy, the figure is kept and flagged ``disturbed``."""
    from attnbench.machine import CpuWindow

    best, blocks, share = 0.0, 0, None
    for attempt in range(1, ATTEMPTS + 1):
        window = CpuWindow().start()
        t, n = best_seconds(fn, sync, seconds=seconds, clock=clock)
        share = window.stop()
        best, blocks = max(best, work / t), blocks + n
        if not _disturbed(share, threads) or not _idle_now(threads):
            break
    return {"rate": best, "blocks": blocks, "attempts": attempt, "other_share": share,
            "disturbed": _disturbed(share, threads)}


# ------------------------------------------------------------------------------------------------ theoretical


def cpu_flop_per_cycle(identity: dict[str, Any], dtype: str) -> tuple[float, str] | None:
    """(flop per cycle per core, the basis in words) of an x86 CPU from its ``machine.cpu_identity``; None where
    the ISA says too little (not x86). Two FMA pipes per core are assumed where the vector ISA has FMA (Haswell and
    later, Zen 2 and later; Xeon parts with one AVX-512 FMA unit reach half): an upper bound, as a ceiling must be."""
    isa = set(identity.get("cpu_isa") or ())
    amd, family, model = identity.get("cpu_vendor") == "AuthenticAMD", identity.get("cpu_family"), \
        identity.get("cpu_model")
    if "avx512f" in isa and not (amd and family == 25):
        lanes, basis = 32, "2 AVX-512 FMA pipes x 16 fp32 lanes"
    elif "fma" in isa and not (amd and family == 23 and isinstance(model, int) and model < 0x30):
        lanes, basis = 16, "2 FMA pipes x 8 fp32 lanes"  # AVX2, or Zen 4's AVX-512 on 256-bit pipes
    elif "avx" in isa or "fma" in isa:
        lanes, basis = 8, "8 fp32 lanes of FMA-equivalent per cycle"  # Sandy Bridge mul+add, Zen 1 128-bit pipes
    elif "sse4_2" in isa:
        lanes, basis = 4, "4 fp32 lanes of SSE mul+add"
    else:
        return None
    fp32 = (2.0 * lanes, f"{basis} x 2 flop")
    native = {"bf16": (("amx_bf16", 2048.0, "AMX bf16 tile unit"), ("avx512_bf16", 4.0 * lanes, "AVX512-BF16 dot")),
              "fp16": (("amx_fp16", 2048.0, "AMX fp16 tile unit"), ("avx512_fp16", 4.0 * lanes, "AVX512-FP16"))}
    for flag, rate, text in native.get(dtype, ()):
        if flag in isa:
            return rate, text
    return fp32 if dtype == "fp32" else (fp32[0], f"no native {dtype} FMA: computed in fp32, {fp32[1]}")


def _cpu_theoretical(threads: int, dtype: str) -> dict[str, Any] | None:
    from attnbench.machine import cpu_identity, cpu_max_ghz, physical_cores

    per_cycle, clock = cpu_flop_per_cycle(cpu_identity(), dtype), cpu_max_ghz()
    if per_cycle is None or clock is None:
        return None
    cores = min(threads, physical_cores() or threads)  # SMT siblings share a core's FMA pipes
    return {"gflops": cores * per_cycle[0] * clock[0],
            "basis": f"{cores} core(s) x {per_cycle[0]:g} flop/cycle ({per_cycle[1]}) x {clock[0]:.2f} GHz "
                     f"({clock[1]})"}


def _cuda_theoretical(device: str, dtype: str) -> dict[str, Any] | None:
    import torch

    props = torch.cuda.get_device_properties(torch.device(device))
    rate = CUDA_FLOP_PER_CYCLE.get((props.major, props.minor), {}).get(dtype)
    khz = getattr(props, "clock_rate", None)
    if rate is None or not khz or (dtype == "fp32" and torch.backends.cuda.matmul.allow_tf32):
        return None  # TF32 runs fp32 matmuls on the tensor cores, at a rate the table does not hold
    ghz = khz / 1e6
    return {"gflops": props.multi_processor_count * rate * ghz,
            "basis": f"{props.multi_processor_count} SMs x {rate} flop/cycle (sm {props.major}.{props.minor}, "
                     f"{dtype}) x {ghz:.2f} GHz (boost clock)"}


def theoretical_gflops(device: str, threads: int, dtype: str) -> dict[str, Any] | None:
    """``{"gflops", "basis"}``: the hardware's peak for ``dtype`` matmuls at ``threads`` (CPU) or on the device
    (CUDA), derived from its ISA or compute capability and its clock; None where it cannot be derived."""
    try:
        return _cuda_theoretical(device, dtype) if device.startswith("cuda") else _cpu_theoretical(threads, dtype)
    except (OSError, RuntimeError, ValueError, AttributeError):
        return None


# ------------------------------------------------------------------------------------------------ calibration


def _matmul(dtype: Any, dev: Any, sync: Callable[[], Any], max_n: int, *, threads: int, seconds: float,
            clock: Callable[[], float]) -> tuple[float, dict[str, Any]]:
    """The best GFLOP/s of the square and the batched product at the grown size, and each shape's figure."""
    import torch

    def square(n: int) -> Callable[[], Any]:
        a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
        return lambda: torch.mm(a, b)

    def batched(n: int) -> Callable[[], Any]:
        a, b = (torch.randn(BMM_BATCH, n // 2, n // 2, device=dev).to(dtype) for _ in range(2))
        return lambda: torch.bmm(a, b)

    n, fn = _grown(square, sync, max_n, clock)
    shapes = {f"mm {n}x{n}x{n}": _figure(fn, sync, 2 * n**3 / 1e9, threads=threads, seconds=seconds, clock=clock)}
    del fn
    h = n // 2
    shapes[f"bmm {BMM_BATCH}x{h}x{h}x{h}"] = _figure(batched(n), sync, 2 * BMM_BATCH * h**3 / 1e9, threads=threads,
                                                      seconds=seconds, clock=clock)
    return max(s["rate"] for s in shapes.values()), shapes


def calibrate(device: str = "cpu", threads: int | None = None, seconds: float = 0.3,
              dtypes: tuple[str, ...] = ("fp32", "bf16"), *,
              clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Measure the machine: ``{"matmul_gflops": {dtype: x}, "copy_gbps": z, "device", "threads", "shapes",
    "theoretical_gflops", "disturbed"}``; ``seconds`` of blocks per figure (at least :data:`MIN_BLOCKS`).

    Never raises: a figure that cannot be measured is left out and ``reason`` says why (the rows' share column
    stays empty then).
    """
    import torch

    out: dict[str, Any] = {"device": device, "matmul_gflops": {}, "method": f"best of >= {MIN_BLOCKS} blocks"}
    old_threads = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        out["threads"] = torch.get_num_threads()
        dev = torch.device(device)
        if dev.type not in ("cpu", "cuda"):
            raise RuntimeError(f"no calibration for device type {dev.type!r}")
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        needs = 1 if dev.type == "cuda" else out["threads"]  # the cores the calibration needs to itself
        kw = dict(threads=needs, seconds=seconds, clock=clock)
        out["shapes"], out["theoretical_gflops"] = {}, {}
        for name in dtypes:
            dtype = getattr(torch, TORCH_DTYPES[name])
            out["matmul_gflops"][name], out["shapes"][name] = _matmul(dtype, dev, sync, MAX_N[dev.type], **kw)
            out["theoretical_gflops"][name] = theoretical_gflops(device, out["threads"], name)
        x = torch.empty(64 * 2**20 // 4 * (4 if dev.type == "cuda" else 1), device=dev)
        y = torch.empty_like(x)
        copy = _figure(lambda: y.copy_(x), sync, 2 * x.numel() * x.element_size() / 1e9, **kw)
        out["copy_gbps"] = copy["rate"]
        out["disturbed"] = copy["disturbed"] or any(s["disturbed"] for d in out["shapes"].values()
                                                    for s in d.values())
        _check_finite(out)
    except Exception as e:  # noqa: BLE001 - a probe that cannot run leaves the column empty, never a crash
        out["reason"] = f"calibration failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        out.pop("copy_gbps", None)
        out["matmul_gflops"] = {}
    finally:
        torch.set_num_threads(old_threads)
    return out


def _check_finite(out: dict[str, Any]) -> None:
    bad = [k for k, v in (*out["matmul_gflops"].items(), ("copy", out["copy_gbps"]))
           if not (math.isfinite(v) and v > 0)]
    if bad:
        raise RuntimeError(f"non-positive or non-finite figures for {', '.join(bad)}")


@functools.lru_cache(maxsize=None)
def _cached(device: str, threads: int | None, dtype: str) -> str:
    return json.dumps(calibrate(device, threads, dtypes=(dtype,)))


def calibrate_cached(device: str = "cpu", threads: int | None = None, dtype: str = "fp32") -> dict[str, Any]:
    """:func:`calibrate` of one dtype, measured once per process for a (device, threads, dtype) (a run's groups, a
    notebook's repeated sweeps); ``threads`` None is torch's current count, so that it shares the measurement of
    that count given explicitly."""
    import torch

    return json.loads(_cached(device, threads or torch.get_num_threads(), dtype))
