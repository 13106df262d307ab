"""What every skeleton family shares: the family interface, the built model, the token grid of a sequence length.

No torch at import: the CLI derives its choices and help from the families.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attnbench.config import ConfigError, ref

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["SkeletonFamily", "Skeleton", "grid_for", "SIZES", "MAX_ASPECT"]

# timm's ViT sizes (vit_tiny/small/base_patch16_224)
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
}
MAX_ASPECT = 4  # a patch grid more elongated than 1:4 is not an image a ViT user would run


def grid_for(n: int, *, multiple: int = 1, max_aspect: float | None = MAX_ASPECT) -> tuple[int, int]:
    """The most square H x W == n with H <= W and both divisible by ``multiple``.

    Raises ValueError when none exists within ``max_aspect``.
    """
    if n < 1:
        raise ValueError(f"sequence length must be positive, got {n}")
    for h in range(math.isqrt(n), 0, -1):
        if n % h == 0 and h % multiple == 0 and (n // h) % multiple == 0:
            w = n // h
            if max_aspect is None or w / h <= max_aspect:
                return h, w
            break
    hint = f"both sides multiples of {multiple}, " if multiple > 1 else ""
    raise ValueError(f"sequence length {n} cannot be tiled into an H x W token grid ({hint}aspect <= 1:{max_aspect}); "
                     f"use N = H*W such as {(math.isqrt(n) // multiple * multiple or multiple) ** 2}")


@dataclass
class Skeleton:
    """A built model with what the harness needs to feed it."""

    model: nn.Module
    input_shape: tuple[int, ...]  # per-sample input shape (C, H, W) or (N, dim)
    hw: tuple[int, int]  # token grid the swapped attention sees (stage 1 for the pyramid)
    dim: int
    num_heads: int
    attn_modules: list[nn.Module]  # the swapped attention modules, for auditing

    def example_input(self, batch: int, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                      seed: int = 0) -> torch.Tensor:
        import torch

        g = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.input_shape), generator=g, dtype=dtype or torch.float32).to(device)


class SkeletonFamily:
    """One kind of model around the attention. A name such as ``vit-tiny`` selects a member of a family.

    A family says which names are its own (:meth:`parse`), how a sequence length becomes its token grid
    (:meth:`grid`), what its rows are called (``scope``), how to build it (:meth:`build`) and whether
    ``attnbench train`` can train it (``trainable``, :meth:`image_tokens`). Nothing outside the family
    definitions looks at a skeleton's name.

    Attributes:
        scope: the results' ``scope`` column for its rows.
        pattern: the names in one pattern, for messages (``vit-<size>[-d<depth>]``).
        help: one line for ``--help`` and ``attnbench list``.
        trainable: a classifier of images (``attnbench train``).
        takes_patch: :meth:`build` takes ``patch_size`` (the image side per token).
        takes_depth: ``<name>-d<depth>`` keeps the first ``depth`` blocks (:meth:`with_depth`).
        per_stage_hparams: the skeleton sets the attention's settings per stage: cells record the caller's
            overrides alone, and their values are checked when the skeleton is built.
        mlp_ratio: hidden width / dim of the MLP beside each attention (0: none), for the plan's time estimate.
    """

    scope: str = ""
    pattern: str = ""
    help: str = ""
    trainable: bool = False
    takes_patch: bool = False
    takes_depth: bool = False
    per_stage_hparams: bool = False
    mlp_ratio: float = 0
    regex: re.Pattern[str] = re.compile(r"(?!)")

    def names(self) -> tuple[str, ...]:
        """The members listed by name (choices, ``attnbench list``)."""
        raise NotImplementedError

    def accepted(self) -> tuple[str, ...]:
        """What messages list as accepted: the names, and any pattern beyond them."""
        return self.names()

    def parse(self, name: str) -> dict[str, Any] | None:
        """The parameters encoded in ``name`` (``{"size": "tiny"}``), or None when ``name`` is not a member."""
        m = self.regex.fullmatch(name)
        return m.groupdict() if m else None

    def describe(self) -> str:
        """``names: help``, one line."""
        return f"{', '.join(self.accepted())}: {self.help}"

    def grid(self, seq_len: int) -> tuple[int, int]:
        """The H x W token grid of ``seq_len`` tokens; ValueError when this skeleton cannot tile it."""
        return grid_for(seq_len)

    def attention_grids(self, seq_len: int) -> list[tuple[int, int]]:
        """The token grids the attention is built for, one per stage that has its own (the harness asks the
        attention whether it can run on each before building); ValueError when this skeleton cannot tile N."""
        return [self.grid(seq_len)]

    def attention_layers(self, name: str, seq_len: int) -> list[tuple[int, int, int]]:
        """``(tokens, dim, num_heads)`` of every swapped attention module of ``name`` at ``seq_len``, without
        building it (the plan's memory estimate, :mod:`attnbench.memory_plan`); empty when the family does not say."""
        return []

    def block_macs(self, batch: int, tokens: int, dim: int) -> int:
        """MACs a block adds around its attention (the MLP's two linears), without building it."""
        return int(2 * self.mlp_ratio * batch * tokens * dim * dim)

    def cell_hparams(self, entry: Any, overrides: dict[str, Any], seq_len: int) -> dict[str, Any]:
        """What a cell records as its hyper-parameters: the registry defaults under the caller's overrides
        (``seq_len`` excluded), so that a changed default is a new cell, not a resumed one."""
        if self.per_stage_hparams:
            return dict(overrides)
        return {k: v for k, v in entry.hparams(overrides, seq_len=seq_len).items() if k != "seq_len"}

    def with_depth(self, name: str, depth: int | None) -> str:
        """The skeleton that keeps the first ``depth`` blocks of ``name`` (None or 0: all of them)."""
        if depth:
            raise ConfigError("depth", f"{ref('depth')} applies to skeletons with blocks to drop, not {name!r} "
                                       f"(pass {ref('depth')} 0)")
        return name

    def image_tokens(self, name: str, img: int, patch_size: int | None, default_patch: int) -> tuple[int | None, int]:
        """``(patch, seq_len)`` for square ``img`` px images (trainable families only)."""
        raise NotImplementedError(f"{name} is not a classifier of images")

    def build(self, name: str, entry: Any, seq_len: int, *, hparams: dict[str, Any], num_classes: int, seed: int,
              drop_path_rate: float, in_chans: int, patch_size: int | None) -> Skeleton:
        """The model for ``seq_len`` tokens with attention ``entry`` (a registry entry) and ``hparams``."""
        raise NotImplementedError
