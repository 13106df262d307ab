"""``layer[-<size>]``: one attention layer alone on tokens (B, N, dim), at the width of a ViT size."""
from __future__ import annotations

import functools
import re
from typing import Any

from attnbench.skeletons.base import SIZES, Skeleton, SkeletonFamily, grid_for

__all__ = ["LayerFamily"]


class LayerFamily(SkeletonFamily):
    scope = "layer"
    pattern = "layer[-<size>]"
    help = "the attention alone at ViT-Tiny (layer), -Small or -Base width; any N"
    regex = re.compile(r"layer(?:-(?P<size>small|base))?")

    def names(self) -> tuple[str, ...]:
        return ("layer", *(f"layer-{s}" for s in SIZES if s != "tiny"))

    def grid(self, seq_len: int) -> tuple[int, int]:
        return grid_for(seq_len, max_aspect=None)  # tokens, not an image: any factorisation will do

    def attention_layers(self, name: str, seq_len: int) -> list[tuple[int, int, int]]:
        size = SIZES[self.parse(name)["size"] or "tiny"]
        return [(seq_len, size["embed_dim"], size["num_heads"])]

    def build(self, name: str, entry: Any, seq_len: int, *, hparams: dict[str, Any], seed: int,
              **_unused: Any) -> Skeleton:
        import torch

        size = SIZES[self.parse(name)["size"] or "tiny"]
        dim, heads = size["embed_dim"], size["num_heads"]
        hw = self.grid(seq_len)
        torch.manual_seed(seed)
        layer = entry.build(dim, heads, seq_len=seq_len, **hparams)
        return Skeleton(_layer_scope()(layer, hw), (seq_len, dim), hw, dim, heads, [layer])


@functools.cache
def _layer_scope() -> type:
    """The module that feeds one attention its token grid (defined on first use: no torch at import)."""
    from torch import nn

    class LayerScope(nn.Module):
        """One attention module on tokens (B, N, dim): isolates the attention itself."""

        def __init__(self, attn: nn.Module, hw: tuple[int, int]) -> None:
            super().__init__()
            self.attn, self.hw = attn, hw

        def forward(self, x):
            return self.attn(x, hw=self.hw)

    return LayerScope
