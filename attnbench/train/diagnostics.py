"""Per-epoch diagnostics from the attention itself, for the training log.

An attention may define ``diagnostics(x, hw) -> {name: float}`` (an optional hook on its class, so a mechanism
stays one file): given the tokens one of its blocks saw, it returns what explains its behaviour (SOFT: the share of
the output coming from the global kernel term, the Newton residual; Nyströmformer: the pinv residual;
softmax-like maps: the attention entropy over log N). The harness runs a fixed batch of validation images after
each epoch, captures every block's input, calls the hook on each block and logs the mean over blocks as
``diag_<name>``; it adds ``diag_attn_grad_norm``, the mean over the epoch's steps of the gradient norm of the
attention parameters (before clipping), for every method.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["DIAG_IMAGES", "attention_diagnostics", "grad_norm", "PREFIX"]

DIAG_IMAGES = 16  # validation images the diagnostics see (the first ones: the same every epoch)
PREFIX = "diag_"


@torch.no_grad()
def attention_diagnostics(model: nn.Module, attn_modules: list[nn.Module], images: torch.Tensor) -> dict[str, float]:
    """``{diag_<name>: mean over blocks}`` of every block's ``diagnostics`` on the tokens it sees for ``images``;
    empty when the attention has no hook. The model runs in eval mode, in float32, and is left as it was."""
    hooked = [m for m in attn_modules if callable(getattr(m, "diagnostics", None))]
    if not hooked:
        return {}
    seen: dict[int, tuple[Any, ...]] = {}

    def capture(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen[id(module)] = (args[0].detach().float(), kwargs.get("hw", args[1] if len(args) > 1 else None))

    handles = [m.register_forward_pre_hook(capture, with_kwargs=True) for m in hooked]
    was_training = model.training
    try:
        model.eval()
        model(images)
        figures: dict[str, list[float]] = {}
        for m in hooked:
            x, hw = seen[id(m)]
            for k, v in m.diagnostics(x, hw).items():
                figures.setdefault(k, []).append(float(v))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {PREFIX + k: math.fsum(v) / len(v) for k, v in figures.items()}


def grad_norm(params: Iterable[torch.Tensor]) -> float:
    """The 2-norm of the gradients of ``params`` together (0 when none has a gradient)."""
    norms = [torch.linalg.vector_norm(p.grad.detach().float()) for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
