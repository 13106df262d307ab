"""Measured quantities as probes: each is one object with its name, the columns it writes (with units), the
phase it needs, and ``run(ctx) -> dict``.

A cell (:func:`attnbench.cell.run_cell`) builds its model once into a :class:`CellContext` and runs every probe in
phase order; the results schema (:mod:`attnbench.results`), the report's numeric columns and its plots derive from
the probes' columns. Adding a quantity is one ``@probe`` function in this file. Phases run in :data:`PHASES`
order: memory first, while the process is fresh (the CPU probe reads the process's high-water mark), then the
FLOP trace, diagnostics, and timing last (only for cells still ``ok``). Importing this module does not import torch.

A cell is timed in several rounds (``attnbench.sweep``), each in a fresh process; the first round runs every probe,
later ones (``CellSpec.timing_only``) only the probes marked ``every_round``: the warm-up and the timing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from attnbench.schema import Column, PlotSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["UNCONVERGED", "CellContext", "Probe", "probe", "PROBES", "PHASES", "probes_in_run_order"]

# a pseudo-inverse whose residual ||I - A M||_F exceeds this is not one: its cell is flagged (float32 rounding alone
# stays below it up to condition numbers of about 2e3)
UNCONVERGED = 1e-2

PHASES = ("setup", "warm-up", "memory", "flops", "diagnostics", "timing")


@dataclass
class CellContext:
    """What the probes of one cell share: the built model, its input and the step closure.

    Attributes:
        spec: the cell (``attnbench.cell.CellSpec``).
        entry: its registry entry.
        skel: the built skeleton (``attnbench.skeletons.Skeleton``).
        model: ``skel.model`` on the cell's device.
        x: the example input at the cell's batch.
        device: the cell's device.
        step: the one-step closure (set by the warm-up probe).
        attn_shapes: input shapes seen by the attention modules in the warm-up step.
        notes: what a probe could not measure (joined into an ``ok`` row's reason).
        row: the row so far (what earlier probes measured).
        eager: the uncompiled model when ``model`` is its ``torch.compile`` wrapper (``spec.compile``), else None.
    """

    spec: Any
    entry: Any
    skel: Any
    model: nn.Module
    x: torch.Tensor
    device: torch.device
    step: Callable[[], torch.Tensor] | None = None
    attn_shapes: list[tuple[int, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    row: dict[str, Any] = field(default_factory=dict)
    eager: nn.Module | None = None

    @property
    def eager_model(self) -> nn.Module:
        """The model before ``torch.compile`` (fvcore traces it; extra forwards use it to avoid recompiling)."""
        return self.model if self.eager is None else self.eager


@dataclass(frozen=True)
class Probe:
    """One measured quantity.

    Attributes:
        name: what it measures.
        phase: when it runs (:data:`PHASES`); errors are reported as ``<phase>: <reason>``.
        columns: the columns it writes, with units.
        fn: ``fn(ctx) -> dict`` of column values (``status``/``reason`` may also be set, e.g. ``nan``).
        needs_ok: run only while the cell is still ``ok`` (timing a non-finite step means nothing).
        every_round: run in every timing round, not only in the first (fresh) one.
    """

    name: str
    phase: str
    columns: tuple[Column, ...]
    fn: Callable[[CellContext], dict[str, Any]]
    needs_ok: bool = False
    every_round: bool = False

    def run(self, ctx: CellContext) -> dict[str, Any]:
        out = self.fn(ctx)
        unknown = set(out) - {c.name for c in self.columns} - {"status", "reason"}
        if unknown:
            raise AssertionError(f"probe {self.name} wrote undeclared columns {sorted(unknown)}")
        return out


PROBES: list[Probe] = []


def probe(phase: str, *columns: Column, needs_ok: bool = False,
          every_round: bool = False) -> Callable[[Callable], Probe]:
    """Register ``fn(ctx) -> dict`` as a probe writing ``columns`` (declaration order = column order)."""
    if phase not in PHASES:
        raise ValueError(f"unknown probe phase {phase!r}; accepted: {', '.join(PHASES)}")

    def wrap(fn: Callable[[CellContext], dict[str, Any]]) -> Probe:
        p = Probe(fn.__name__, phase, tuple(columns), fn, needs_ok, every_round)
        PROBES.append(p)
        return p
    return wrap


def probes_in_run_order() -> list[Probe]:
    return sorted(PROBES, key=lambda p: PHASES.index(p.phase))  # stable: declaration order within a phase


# ---------------------------------------------------------------------------------------------------- the probes


@probe("setup", Column("params", "int", "params", "params", "parameters of the whole skeleton", core=True))
def params(ctx: CellContext) -> dict[str, Any]:
    return {"params": sum(p.numel() for p in ctx.model.parameters())}


@probe("setup", Column("compile_s", "float", "s", "compile s",
                       "seconds of the first compiled step, compilation included (torch.compile); never in the "
                       "latency; empty when eager"), every_round=True)
def compile_model(ctx: CellContext) -> dict[str, Any]:
    """``torch.compile`` the skeleton (``spec.compile``) and run one step so that compilation happens here, timed
    apart; a failure is an error row with the compiler's first line."""
    if not ctx.spec.compile:
        return {"compile_s": None}
    import time

    import torch

    from attnbench.measure.step import make_step

    ctx.eager = ctx.model
    ctx.model = torch.compile(ctx.model, mode=ctx.spec.compile)
    t0 = time.perf_counter()
    try:
        make_step(ctx.model, ctx.x, mode=ctx.spec.mode, dtype=ctx.spec.dtype,
                  num_classes=getattr(ctx.eager, "num_classes", None))()
    except Exception as e:  # noqa: BLE001 - any compiler failure becomes the row's one-line reason
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        raise RuntimeError(f"torch.compile failed: {type(e).__name__}: {first}") from None
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    return {"compile_s": time.perf_counter() - t0}


@probe("warm-up", Column("backend", "text", label="backend", doc="the kernel that ran (softmax's SDPA backend)"),
       every_round=True)
def warm_up(ctx: CellContext) -> dict[str, Any]:
    """One untimed step: builds the step closure, records the attention's input shapes, checks that every
    attention returns its input's shape (a wrong one would broadcast through a residual unnoticed) and that the
    output is finite."""
    import torch

    from attnbench.measure.step import DTYPES, autocast, make_step

    spec = ctx.spec
    allowed = {DTYPES["fp32"], DTYPES[spec.dtype]}  # under autocast a module may return the autocast dtype

    def check(_m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        x = args[0]
        if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype not in allowed | {x.dtype}:
            got = f"{list(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"attention output {got} does not match its input {list(x.shape)} {x.dtype}")
    hooks = [h for m in ctx.skel.attn_modules for h in (
        m.register_forward_pre_hook(lambda _m, args: ctx.attn_shapes.append(tuple(args[0].shape))),
        m.register_forward_hook(check))]
    ctx.step = make_step(ctx.model, ctx.x, mode=spec.mode, dtype=spec.dtype,
                         num_classes=getattr(ctx.eager_model, "num_classes", None))
    try:
        if ctx.eager is not None:  # compiled: the checks run on an eager forward (hooks would force a recompile)
            with torch.no_grad(), autocast(ctx.device, spec.dtype):
                ctx.eager(ctx.x)
            for h in hooks:
                h.remove()
        out = ctx.step()
    finally:
        for h in hooks:
            h.remove()
    del ctx.attn_shapes[len(ctx.skel.attn_modules):]
    row: dict[str, Any] = {"backend": next((m.last_backend for m in ctx.skel.attn_modules
                                             if hasattr(m, "last_backend")), None)}
    if not bool(torch.isfinite(out).all()):
        what = "loss" if spec.mode == "train" else "output"
        row.update(status="nan", reason=f"non-finite {what} in the warm-up step")
    return row


def _formula_macs(ctx: CellContext) -> int | None:
    """Sum of the entry's closed-form MACs over the attention modules (layer and vit scopes: every module sees the
    same N, dim and heads; the pyramid varies hparams per stage, so it has no formula here)."""
    entry, spec, skel = ctx.entry, ctx.spec, ctx.skel
    if entry.macs is None or spec.scope == "pyramid" or not ctx.attn_shapes:
        return None
    try:
        return sum(entry.count_macs(B, N, C, skel.num_heads, hw=skel.hw, **spec.hparams_dict)
                   for B, N, C in ctx.attn_shapes)
    except (TypeError, ValueError):
        return None


@probe("flops",
       Column("macs", "int", "MAC", "GMACs", "multiply-accumulates of one forward (fvcore, every op handled)",
              core=True, plot=PlotSpec("flops", "forward GFLOPs (2 × MACs)", 2e-9, per_mode=False)),
       Column("flops", "int", "FLOP", "GFLOPs", "2 x macs", core=True),
       Column("flops_uncounted_ops", "json", label="uncounted ops", doc="ops fvcore saw but could not count",
              core=True),
       Column("attn_macs", "int", "MAC", "attn GMACs", "MACs inside the swapped attention modules"),
       Column("attn_macs_formula", "int", "MAC", "formula GMACs", "the attention's closed-form MAC count"),
       Column("elementwise_flops", "int", "FLOP", "elementwise", "elementwise ops (norms, exp, ...), apart"))
def flops(ctx: CellContext) -> dict[str, Any]:
    from attnbench.measure.flops import count_flops

    ctx.eager_model.eval()
    fc = count_flops(ctx.eager_model, ctx.x, attn_modules=ctx.skel.attn_modules)
    return dict(macs=fc.macs, flops=fc.flops, elementwise_flops=fc.elementwise_flops,
                flops_uncounted_ops=list(fc.uncounted_ops), attn_macs=fc.attn_macs,
                attn_macs_formula=_formula_macs(ctx))


@probe("memory", Column("peak_mem_bytes", "int", "bytes", "peak MiB",
                        "peak memory of one step above what was live before it (CUDA allocator / CPU VmHWM)",
                        core=True, plot=PlotSpec("memory", "peak memory (MiB)", 2**-20)))
def peak_memory(ctx: CellContext) -> dict[str, Any]:
    from attnbench.measure.memory import measure_peak

    mem = measure_peak(ctx.step, ctx.device)
    if mem.reason:
        ctx.notes.append(f"peak memory not measured: {mem.reason}")
    return {"peak_mem_bytes": mem.peak_bytes}


@probe("diagnostics", Column("pinv_residual_max", "float", "", "pinv resid",
                             "largest ||I - A M||_F over layers, heads and samples of the iterative pseudo-inverse "
                             "(SOFT's Newton-Raphson, Nystrom's pinv) in one forward; above 1e-2 (the inverse is off "
                             "by more than 1 %) the report flags the cell; empty for methods without one"))
def pinv_residual(ctx: CellContext) -> dict[str, Any]:
    """One extra, untimed forward with residual tracking on: is the "inverse" an inverse?"""
    import torch

    from attnbench.measure.step import autocast

    mods = [m for m in ctx.skel.attn_modules if hasattr(m, "track_residual")]
    if not mods:
        return {"pinv_residual_max": None}
    saved = [m.track_residual for m in mods]
    try:
        for m in mods:
            m.track_residual = True
        ctx.eager_model.eval()
        with torch.no_grad(), autocast(ctx.device, ctx.spec.dtype):
            ctx.eager_model(ctx.x)
        vals = [float(torch.as_tensor(m.last_residual).max()) for m in mods if m.last_residual is not None]
    finally:
        for m, t in zip(mods, saved):
            m.track_residual = t
    return {"pinv_residual_max": max(vals) if vals else None}


@probe("timing",
       Column("latency_ms_median", "float", "ms", "latency ms", "median time of one step (torch Timer)", core=True,
              plot=PlotSpec("latency", "latency, median (ms)")),
       Column("latency_ms_iqr", "float", "ms", "IQR ms", "interquartile range of the timed blocks", core=True),
       Column("throughput_per_s", "float", "samples/s", "samples/s", "batch / median latency", core=True),
       Column("num_threads", "int", "threads", "threads", "intra-op CPU threads while timing"),
       Column("timed_blocks", "int", "blocks", "blocks", "Timer.timeit blocks timed (over the rounds that count)"),
       Column("load_other_share", "float", "", "others' CPU",
              "share of the cores' time other processes took while the cell was timed (mean over its rounds)"),
       Column("load_avg_1m", "float", "", "load avg", "the machine's 1-minute load average after timing (highest "
                                                      "over its rounds)"),
       Column("cpu_governor", "text", label="governor", doc="CPU frequency governor, where readable"),
       needs_ok=True, every_round=True)
def latency(ctx: CellContext) -> dict[str, Any]:
    from attnbench import machine
    from attnbench.measure.latency import time_step

    spec = ctx.spec
    ctx.model.train(spec.mode == "train")  # warm: the warm-up step ran, and in a first round the memory pass too
    window = machine.CpuWindow().start()
    lat = time_step(ctx.step, batch=spec.batch, min_time=spec.min_time, warmup=1 if spec.timing_only else 0,
                    label=spec.mode, sub_label=spec.model, description=str(spec.seq_len), min_blocks=spec.min_blocks,
                    **({"target_blocks": spec.target_blocks} if spec.target_blocks else {}))
    return dict(latency_ms_median=lat.median_ms, latency_ms_iqr=lat.iqr_ms, throughput_per_s=lat.throughput_per_s,
                num_threads=lat.num_threads, timed_blocks=lat.blocks, load_other_share=window.stop(),
                load_avg_1m=machine.load_avg_1m(), cpu_governor=machine.governor(window.cpus))


def _achieved_gflops(row: dict[str, Any]) -> float | None:
    from attnbench.measure.calibrate import flops_per_step
    from attnbench.stats import positive

    macs, ms = row.get("macs"), row.get("latency_ms_median")
    if not positive(macs) or not positive(ms):
        return None
    return flops_per_step(float(macs), row.get("mode", "infer")) / (float(ms) * 1e-3) / 1e9


def _peak_share(row: dict[str, Any]) -> float | None:
    from attnbench.stats import positive

    achieved, peak = _achieved_gflops(row), row.get("peak_gflops")
    return achieved / float(peak) if achieved is not None and positive(peak) else None


@probe("timing",
       Column("peak_gflops", "float", "GFLOP/s", "peak GFLOP/s",
              "the run's calibrated matmul GFLOP/s for the cell's dtype (measure.calibrate; meta.json)"),
       Column("achieved_gflops", "float", "GFLOP/s", "GFLOP/s",
              "FLOPs of one step (2 x macs; x3 for a training step) / median latency", derive=_achieved_gflops),
       Column("peak_share", "float", "", "of peak", "achieved_gflops / peak_gflops: how close to the machine's "
              "limit (low: bound by memory traffic or overheads)", derive=_peak_share),
       needs_ok=True)
def efficiency(ctx: CellContext) -> dict[str, Any]:
    """The calibrated peak this cell is judged against; the derived columns follow from the final row."""
    return {"peak_gflops": ctx.spec.peak_gflops}
