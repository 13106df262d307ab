"""Plan-time memory estimates (:mod:`attnbench.measure.memory` measures; this only predicts): a cell that cannot fit
in the machine's memory is planned as a ``skipped`` row that gives the estimate, instead of swapping the machine for
its whole timeout or being killed by the kernel.

The estimate is a lower bound, from closed forms only (nothing is built): per attention module of the skeleton
(``SkeletonFamily.attention_layers``), the class's optional classmethod::

    memory_bytes(B, N, dim, num_heads, hw=None, **hparams) -> int   # bytes one forward holds at once, fp32

(softmax-math: the B·h·N² score matrix), or, without it, the input and output tokens (2·B·N·dim floats), which every
attention holds. Inference runs one layer at a time (the largest counts); training keeps every layer's activations
for the backward (the sum). A cell is skipped when the estimate exceeds the limit: ``mem_limit`` for CPU cells when
given, else the machine's physical RAM (CPU) or the GPU's memory (CUDA). ``SweepConfig.force`` runs them anyway.
"""
from __future__ import annotations

import os
from typing import Any

from attnbench.cell import CellSpec

__all__ = ["SKIP_PREFIX", "cell_bytes", "device_memory_bytes", "memory_skips"]

SKIP_PREFIX = "estimated memory"  # how a memory skip's reason starts (``--resume --force`` runs those cells again)
GIB = 2**30


def _layer_bytes(entry: Any, B: int, n: int, dim: int, heads: int, overrides: dict[str, Any]) -> int:
    tokens = 4 * 2 * B * n * dim  # input and output, fp32: every attention holds both
    closed_form = getattr(entry.cls, "memory_bytes", None)
    if closed_form is None:
        return tokens
    try:
        hp = entry.hparams(overrides, seq_len=n)
        return max(tokens, int(closed_form(B, n, dim, heads, **hp)))
    except (TypeError, ValueError):  # a formula that does not take these settings: the bound every class meets
        return tokens


def cell_bytes(spec: CellSpec) -> int | None:
    """The lower-bound estimate of ``spec``'s attention memory in bytes, or None when its skeleton gives no layers."""
    from attnbench.registry import get_attention
    from attnbench.skeletons import family_of

    layers = family_of(spec.skeleton).attention_layers(spec.skeleton, spec.seq_len)
    if not layers:
        return None
    entry = get_attention(spec.model)
    per_layer = [_layer_bytes(entry, spec.batch, n, dim, heads, spec.hparams_dict) for n, dim, heads in layers]
    return sum(per_layer) if spec.mode == "train" else max(per_layer)


def device_memory_bytes(device: str) -> int | None:
    """The memory of ``device``: physical RAM for ``cpu``, the GPU's total for ``cuda[:i]``; None if unknown."""
    if device.startswith("cuda"):
        import torch

        try:
            return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
        except (RuntimeError, AssertionError, ValueError):
            return None
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_skips(cells: list[CellSpec], mem_limit: int | None = None) -> dict[tuple, str]:
    """``{cell key: reason}`` for the cells whose estimate exceeds their device's memory (``mem_limit`` for CPU
    cells when given)."""
    limits: dict[str, tuple[int | None, str]] = {}
    out: dict[tuple, str] = {}
    for spec in cells:
        if spec.device not in limits:
            cpu = not spec.device.startswith("cuda")
            limits[spec.device] = ((mem_limit, "--mem-limit") if cpu and mem_limit
                                   else (device_memory_bytes(spec.device), "the machine's RAM" if cpu
                                         else f"the memory of {spec.device}"))
        limit, what = limits[spec.device]
        est = cell_bytes(spec)
        if limit and est is not None and est > limit:
            out[spec.key()] = (f"{SKIP_PREFIX} {est / GIB:.3g} GiB (a lower bound for {spec.model} at batch "
                               f"{spec.batch}, N={spec.seq_len}, {spec.mode}, fp32) exceeds {what}, {limit / GIB:.3g} "
                               "GiB; --force runs it anyway")
    return out
