"""Our Performer, Linformer and Nyströmformer against the pip packages users know, measured like the harness.

References (the optional extra ``bench``: ``pip install -e ".[bench]"``): ``performer-pytorch``
(``SelfAttention``), ``linformer`` (``LinformerSelfAttention``) and ``nystrom-attention`` (``NystromAttention``),
each at the settings of ours: one attention layer, B = 1, C = 192, 3 heads of 64, fp32; Performer 256 features,
Linformer k = 256 (separate E and F), Nyström 64 landmarks, 6 pseudo-inverse iterations, conv skip 33.

How it measures, as :mod:`attnbench.cell` does:

- every (method, implementation, N, mode) cell runs in a fresh process (the CPU peak-memory probe reads the
  process's high-water mark), which builds the layer, runs one warm-up step, measures the peak memory of one step
  (:func:`attnbench.measure.memory.measure_peak`) and then times the step
  (:func:`attnbench.measure.latency.time_step`); the step is :func:`attnbench.measure.step.make_step`'s:
  ``infer`` is a forward under ``no_grad`` ("fwd"), ``train`` forward + backward + AdamW ("fwd+bwd");
- rounds are interleaved (every cell once per round, ours and the reference back to back, their order alternating
  between rounds), each round's ratio ours / reference is taken, and the table shows the median over rounds, so
  that load from other processes on a shared machine hits both sides of a ratio alike;
- a correctness gate runs first: ours and the reference with the same weights, in float64, must give the same
  output and input gradient; a method that fails it gets no ratios.

SOFT is not compared: its official torch path (fudan-zvg/SOFT) is not a package, and vendoring it is not wanted.

Usage::

    python benchmarks/vs_reference.py --seq 1024,4096,16384 --rounds 3 --threads 2 --out results/vs-reference
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["METHODS", "MODES", "build", "check_equivalence", "run_cell", "summarise", "render_table", "main"]

DIM, HEADS = 192, 3
MODES = {"infer": "fwd", "train": "fwd+bwd"}
GATE_TOL = 1e-10  # float64; measured ~1e-15, so any real difference in the math shows orders above it
GROWTH = (4096, 16384)  # the fwd growth exponent is log(t(16k) / t(4k)) / log 4


# --------------------------------------------------------------------------------------------- the pairs


def _performer(impl: str, N: int, dim: int, heads: int):
    if impl == "ref":
        from performer_pytorch import SelfAttention

        return SelfAttention(dim=dim, heads=heads, dim_head=dim // heads, nb_features=256, qkv_bias=False)
    from baselines import PerformerAttention

    # eps 1e-4 and no redraw: performer-pytorch's kernel eps, and its SelfAttention never redraws on its own
    return PerformerAttention(dim, heads, qkv_bias=False, nb_features=256, eps=1e-4, redraw_interval=None)


def _performer_copy(ours, ref) -> None:
    ours.qkv.weight.copy_(torch.cat([ref.to_q.weight, ref.to_k.weight, ref.to_v.weight]))
    ours.projection.copy_(ref.fast_attention.projection_matrix)
    ours.proj.load_state_dict(ref.to_out.state_dict())


def _linformer(impl: str, N: int, dim: int, heads: int):
    if impl == "ref":
        from linformer import LinformerSelfAttention

        return LinformerSelfAttention(dim=dim, seq_len=N, k=256, heads=heads)
    from baselines import LinformerAttention

    return LinformerAttention(dim, heads, qkv_bias=False, seq_len=N, k=256, sharing="headwise")


def _linformer_copy(ours, ref) -> None:
    ours.qkv.weight.copy_(torch.cat([ref.to_q.weight, ref.to_k.weight, ref.to_v.weight]))
    ours.E.copy_(ref.proj_k.t())  # the package's [N, k] acts on the right of keys [N, C]; ours is E [k, N]
    ours.F.copy_(ref.proj_v.t())
    ours.proj.load_state_dict(ref.to_out.state_dict())


def _nystrom(impl: str, N: int, dim: int, heads: int):
    if impl == "ref":
        from nystrom_attention import NystromAttention

        return NystromAttention(dim=dim, dim_head=dim // heads, heads=heads, num_landmarks=64, pinv_iterations=6,
                                residual=True, residual_conv_kernel=33)
    from baselines import NystromAttention

    return NystromAttention(dim, heads, qkv_bias=False, num_landmarks=64, pinv_iters=6, conv_kernel=33)


def _nystrom_copy(ours, ref) -> None:
    ours.qkv.weight.copy_(ref.to_qkv.weight)
    ours.proj.load_state_dict(ref.to_out[0].state_dict())
    ours.conv.weight.copy_(ref.res_conv.weight)


# name -> (label, builder(impl, N, dim, heads), copy(ours, ref), gate (N, dim, heads)).
# Nyström's gate runs one head: the package starts its pseudo-inverse iteration from one norm over the whole batch
# and all heads, ours from each matrix's own (so a sample does not depend on its batch); with one matrix they agree.
METHODS: dict[str, tuple[str, Callable, Callable, tuple[int, int, int]]] = {
    "performer": ("Performer (256 features)", _performer, _performer_copy, (128, DIM, HEADS)),
    "linformer": ("Linformer (k 256)", _linformer, _linformer_copy, (300, DIM, HEADS)),
    "nystrom": ("Nyström (m 64, 6 it., conv 33)", _nystrom, _nystrom_copy, (256, 64, 1)),
}


def build(method: str, impl: str, N: int, *, dim: int = DIM, heads: int = HEADS, seed: int = 0):
    """The layer of ``method`` (``impl`` "ours" or "ref") for N tokens, seeded."""
    if impl not in ("ours", "ref"):
        raise ValueError(f"impl={impl!r} is not supported; accepted: 'ours', 'ref'")
    torch.manual_seed(seed)
    return METHODS[method][1](impl, N, dim, heads)


def check_equivalence(method: str) -> dict[str, Any]:
    """Ours with the reference's weights, float64: relative error of the output and of the input gradient."""
    N, dim, heads = METHODS[method][3]
    ref = build(method, "ref", N, dim=dim, heads=heads).double().eval()
    ours = build(method, "ours", N, dim=dim, heads=heads).double().eval()
    with torch.no_grad():
        METHODS[method][2](ours, ref)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, N, dim, generator=g, dtype=torch.float64)
    w = torch.randn(1, N, dim, generator=g, dtype=torch.float64)
    errs = {}
    outs, grads = [], []
    for mod in (ours, ref):
        xi = x.clone().requires_grad_(True)
        y = mod(xi)
        (y * w).sum().backward()
        outs.append(y.detach())
        grads.append(xi.grad)
    for name, (a, b) in {"output": outs, "input grad": grads}.items():
        errs[name] = float((a - b).norm() / b.norm())
    ok = all(e <= GATE_TOL for e in errs.values())
    return {"method": method, "ok": ok, "errors": errs, "tol": GATE_TOL, "gate_shape": [1, N, dim, heads]}


# --------------------------------------------------------------------------------------------- one cell


def run_cell(method: str, impl: str, N: int, mode: str, *, threads: int, min_time: float) -> dict[str, Any]:
    """Measure one cell in this process (run it in a fresh one): peak memory, then time, of one step."""
    from attnbench.measure.latency import time_step
    from attnbench.measure.memory import measure_peak
    from attnbench.measure.step import make_step

    torch.set_num_threads(threads)
    model = build(method, impl, N)
    x = torch.randn(1, N, DIM, generator=torch.Generator().manual_seed(2))
    step = make_step(model, x, mode=mode)
    step()  # warm-up: lazy init, optimizer state
    mem = measure_peak(step, "cpu")
    lat = time_step(step, batch=1, min_time=min_time, warmup=0)
    return {"method": method, "impl": impl, "N": N, "mode": mode, "time_ms": lat.median_ms, "iqr_ms": lat.iqr_ms,
            "runs": lat.runs, "peak_bytes": mem.peak_bytes, "mem_reason": mem.reason, "threads": lat.num_threads}


def _spawn_cell(method: str, impl: str, N: int, mode: str, *, threads: int, min_time: float,
                timeout: float) -> dict[str, Any]:
    spec = json.dumps({"method": method, "impl": impl, "N": N, "mode": mode, "threads": threads,
                       "min_time": min_time})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cell", spec], capture_output=True,
                             text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"method": method, "impl": impl, "N": N, "mode": mode, "error": f"timeout after {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"method": method, "impl": impl, "N": N, "mode": mode, "error": f"exit {out.returncode}: {err}"}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------------------- the table


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(xs) if xs else None


def summarise(cells: list[dict[str, Any]], gates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per (method, N): median over rounds of each round's ratio ours / reference; fwd growth exponents.

    ``cells`` are measured cells with a ``round`` key; a pair is used in a round only when both sides measured.
    """
    by = {(c["round"], c["method"], c["impl"], c["N"], c["mode"]): c for c in cells if "error" not in c}
    rounds = sorted({c["round"] for c in cells})
    out: dict[str, Any] = {}
    for method in METHODS:
        if method not in gates:
            continue
        per_n: dict[int, dict[str, Any]] = {}
        for N in sorted({c["N"] for c in cells if c["method"] == method}):
            row: dict[str, Any] = {}
            for mode in MODES:
                t, m, abs_ours, abs_ref, mem_ours, mem_ref = [], [], [], [], [], []
                for r in rounds:
                    a, b = by.get((r, method, "ours", N, mode)), by.get((r, method, "ref", N, mode))
                    if a is None or b is None:
                        continue
                    t.append(a["time_ms"] / b["time_ms"])
                    abs_ours.append(a["time_ms"]), abs_ref.append(b["time_ms"])
                    if a.get("peak_bytes") and b.get("peak_bytes"):
                        m.append(a["peak_bytes"] / b["peak_bytes"])
                        mem_ours.append(a["peak_bytes"]), mem_ref.append(b["peak_bytes"])
                row[mode] = {"time_ratio": _median(t), "mem_ratio": _median(m), "time_ms_ours": _median(abs_ours),
                             "time_ms_ref": _median(abs_ref), "mem_ours": _median(mem_ours),
                             "mem_ref": _median(mem_ref), "rounds": len(t)}
            per_n[N] = row
        growth = {}
        for impl in ("ours", "ref"):
            exps = []
            for r in rounds:
                lo, hi = by.get((r, method, impl, GROWTH[0], "infer")), by.get((r, method, impl, GROWTH[1], "infer"))
                if lo and hi:
                    exps.append(math.log(hi["time_ms"] / lo["time_ms"]) / math.log(GROWTH[1] / GROWTH[0]))
            growth[impl] = _median(exps)
        out[method] = {"per_n": per_n, "growth": growth}
    return out


def _fmt_ratio(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


def _fmt_time(row: dict[str, Any]) -> str:
    if row.get("time_ratio") is None:
        return "–"
    return f"{_fmt_ratio(row['time_ratio'])} ({row['time_ms_ours']:.1f} / {row['time_ms_ref']:.1f} ms)"


def _fmt_mem(row: dict[str, Any]) -> str:
    if row.get("mem_ratio") is None:
        return "–"
    return f"{_fmt_ratio(row['mem_ratio'])} ({row['mem_ours'] / 2**20:.0f} / {row['mem_ref'] / 2**20:.0f} MiB)"


def render_table(summary: dict[str, Any], gates: dict[str, dict[str, Any]], *, machine: str,
                 load: dict[str, Any], rounds: int, threads: int, versions: dict[str, str]) -> str:
    """The markdown report: one table per N (largest first), ratios ours / reference, medians over rounds."""
    lines = ["# Ours vs the reference implementations", "",
             f"One attention layer, B = 1, C = {DIM}, {HEADS} heads of {DIM // HEADS}, fp32, {threads} threads. "
             "Each cell: ratio ours / reference, the median over rounds of each round's ratio (ours / reference "
             "absolute medians in brackets). fwd = forward under no_grad; fwd+bwd = forward, backward and AdamW "
             "step (the harness's train step). Peak memory: the process's resident high-water mark above the "
             "baseline (attnbench.measure.memory). Below 1 is better for ours.", "",
             machine, "",
             f"References: {', '.join(f'{k} {v}' for k, v in versions.items())}. Rounds: {rounds}, interleaved. "
             f"Load average (1 / 5 / 15 min) at start {load['start']}, at end {load['end']}, highest 1-min "
             f"seen before a cell {load['max1']:.2f}.", ""]
    failed = [m for m, g in gates.items() if not g["ok"]]
    lines.append("Correctness gate (float64, same weights, relative error of output / input gradient, tol "
                 f"{GATE_TOL:.0e}): " + "; ".join(
                     f"{METHODS[m][0].split(' ')[0]} {g['errors']['output']:.1e} / {g['errors']['input grad']:.1e}"
                     f" {'ok' if g['ok'] else 'FAILED'}" for m, g in gates.items()) + ".")
    if failed:
        lines.append(f"No ratio is reported for {', '.join(failed)}: its output differs from the reference's.")
    lines.append("")
    all_n = sorted({N for s in summary.values() for N in s["per_n"]}, reverse=True)
    for N in all_n:
        growth_col = N == max(all_n) and GROWTH[1] in all_n and GROWTH[0] in all_n
        head = "| method | fwd time | fwd+bwd time | fwd peak mem | fwd+bwd peak mem |"
        sep = "|---|---|---|---|---|"
        if growth_col:
            head += " fwd growth exponent 4k→16k, ours (ref) |"
            sep += "---|"
        lines += [f"## N = {N}", "", head, sep]
        for method in gates:
            label = METHODS[method][0]
            if not gates[method]["ok"]:
                lines.append(f"| {label} | gate failed | gate failed | gate failed | gate failed |"
                             + (" – |" if growth_col else ""))
                continue
            s = summary.get(method)
            row = None if s is None else s["per_n"].get(N)
            if row is None:
                continue
            cells = [_fmt_time(row["infer"]), _fmt_time(row["train"]), _fmt_mem(row["infer"]), _fmt_mem(row["train"])]
            if growth_col:
                g = s["growth"]
                cells.append("–" if g["ours"] is None else
                             f"{g['ours']:.2f} ({g['ref']:.2f})" if g["ref"] is not None else f"{g['ours']:.2f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- driver


def _load() -> tuple[float, float, float]:
    return tuple(round(v, 2) for v in os.getloadavg())


def _environment(threads: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "git_commit": commit}


def _machine_line(env: dict[str, Any]) -> str:
    return (f"Machine: {env['cpu']} ({env['cpu_count']} cores, {env['torch_threads']} torch threads) | torch "
            f"{env['torch']} | python {env['python']} | {env['platform']} | commit {env['git_commit']}")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("performer-pytorch", "linformer", "nystrom-attention"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of: " + ", ".join(METHODS))
    p.add_argument("--seq", default="1024,4096,16384", help="comma-separated sequence lengths")
    p.add_argument("--modes", default="infer,train", help="comma-separated, of: infer, train")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=0.5, help="seconds each cell's timer runs at least")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one cell may take")
    p.add_argument("--out", default="results/vs-reference", help="folder for table.md and raw.json")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # the child's side: a JSON cell spec
    a = p.parse_args(argv)
    if a.cell:
        spec = json.loads(a.cell)
        print(json.dumps(run_cell(spec["method"], spec["impl"], spec["N"], spec["mode"], threads=spec["threads"],
                                  min_time=spec["min_time"])))
        return 0

    methods = [m for m in a.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        p.error(f"--methods {','.join(bad)} not supported; accepted: {', '.join(METHODS)}")
    modes = [m for m in a.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        p.error(f"--modes {a.modes} not supported; accepted: {', '.join(MODES)}")
    try:
        seqs = [int(s) for s in a.seq.split(",") if s]
    except ValueError:
        p.error(f"--seq {a.seq!r} must be comma-separated integers")
    if a.rounds < 1 or a.threads < 1:
        p.error("--rounds and --threads must be >= 1")
    versions = _versions()
    missing = [k for k, v in versions.items() if v == "missing"]
    if missing:
        print(f"missing reference package(s) {', '.join(missing)}: pip install -e '.[bench]'", file=sys.stderr)
        return 2

    torch.set_num_threads(a.threads)
    gates = {m: check_equivalence(m) for m in methods}
    for m, g in gates.items():
        print(f"gate {m}: {'ok' if g['ok'] else 'FAILED'} {g['errors']}", flush=True)
    load = {"start": _load(), "max1": 0.0}
    cells: list[dict[str, Any]] = []
    timed = [m for m in methods if gates[m]["ok"]]
    for r in range(a.rounds):
        for N in seqs:
            for method in timed:
                for mode in modes:
                    order = ("ours", "ref") if (r + seqs.index(N)) % 2 == 0 else ("ref", "ours")
                    for impl in order:
                        load["max1"] = max(load["max1"], os.getloadavg()[0])
                        t0 = time.perf_counter()
                        c = _spawn_cell(method, impl, N, mode, threads=a.threads, min_time=a.min_time,
                                        timeout=a.timeout)
                        c.update(round=r, load1=round(os.getloadavg()[0], 2))
                        cells.append(c)
                        what = c.get("error") or f"{c['time_ms']:.2f} ms, {(c['peak_bytes'] or 0) / 2**20:.0f} MiB"
                        print(f"round {r} {method:9s} {impl:4s} N={N:6d} {mode:5s}: {what} "
                              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    load["end"] = _load()
    summary = summarise(cells, {m: gates[m] for m in timed})
    env = _environment(a.threads)
    md = render_table(summary, gates, machine=_machine_line(env), load=load, rounds=a.rounds, threads=a.threads,
                      versions=versions)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(md + "\n")
    (out / "raw.json").write_text(json.dumps({"environment": env, "load": load, "gates": gates, "cells": cells,
                                              "summary": summary, "argv": sys.argv[1:]}, indent=1, default=str))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
