"""``soft-<size>``: the SOFT paper's four-stage pyramid (timm's ``soft_tiny`` .. ``soft_huge``, from ``soft/``).

N is the stage-1 token count (a stride-4 stem); the grid's sides must be multiples of 8 so that every stage tiles
exactly (an image side that is a multiple of 32). The stages set the attention's settings themselves.
"""
from __future__ import annotations

import re
from typing import Any

from attnbench.config import ConfigError, ref
from attnbench.skeletons.base import Skeleton, SkeletonFamily, grid_for

__all__ = ["PyramidFamily", "PYRAMIDS", "PYRAMID_SOFT_KEYS"]

PYRAMIDS = ("tiny", "small", "medium", "large", "huge")
PYRAMID_SOFT_KEYS = ("sampler", "landmarks", "sr_ratio", "conv_kernel")  # set per stage by the SOFT pyramid
STEM = 4  # the stem's stride: image side / 4 = the stage-1 grid side
MULTIPLE = 8  # stage-1 sides divisible by 8: stages 2-4 (strides 8, 16, 32) tile exactly


class PyramidFamily(SkeletonFamily):
    scope = "pyramid"
    pattern = "soft-<size>"
    help = "the SOFT paper's pyramid; N = its stage-1 tokens (stride 4), grid sides multiples of 8"
    trainable = per_stage_hparams = True
    mlp_ratio = 4  # soft.pyramid: Mlp(dim, 4 * dim)
    regex = re.compile(rf"soft-(?P<size>{'|'.join(PYRAMIDS)})")

    def names(self) -> tuple[str, ...]:
        return tuple(f"soft-{s}" for s in PYRAMIDS)

    def grid(self, seq_len: int) -> tuple[int, int]:
        return grid_for(seq_len, multiple=MULTIPLE)

    def attention_grids(self, seq_len: int) -> list[tuple[int, int]]:
        h, w = self.grid(seq_len)
        return [(h >> i, w >> i) for i in range(3)]  # stages 1-3 swap the attention; stage 4 is timm's own

    def attention_layers(self, name: str, seq_len: int) -> list[tuple[int, int, int]]:
        from soft.pyramid import SOFT_SIZES

        size = SOFT_SIZES[self.parse(name)["size"]]
        return [(gh * gw, size["embed_dims"][i], size["num_heads"][i])
                for i, (gh, gw) in enumerate(self.attention_grids(seq_len)) for _ in range(size["depths"][i])]

    def image_tokens(self, name: str, img: int, patch_size: int | None, default_patch: int) -> tuple[int | None, int]:
        if patch_size is not None:
            raise ConfigError("patch_size", f"{ref('patch_size')} applies to vit-<size> skeletons; the {self.pattern} "
                                            "pyramid has a stride-4 stem")
        if img % (STEM * MULTIPLE):
            raise ConfigError("img_size", f"the {name} pyramid needs an image side divisible by {STEM * MULTIPLE}, "
                                          f"got {img}")
        return None, (img // STEM) ** 2

    def build(self, name: str, entry: Any, seq_len: int, *, hparams: dict[str, Any], num_classes: int, seed: int,
              drop_path_rate: float, in_chans: int, **_unused: Any) -> Skeleton:
        import timm
        import torch

        import soft  # noqa: F401  (registers soft_* in timm)

        h, w = self.grid(seq_len)
        grids = self.attention_grids(seq_len)
        if entry.cls is soft.SoftAttention:
            # the paper's per-stage landmarks (conv, s = 8/4/2) and value conv (k = 9/5/3) live in the pyramid: the
            # registry's sweep defaults for them (pooled m = 49, k = 3) are dropped, its other defaults (SOFT++'s
            # symmetric_norm) kept; the caller's ``hparams`` win over both
            base = {k: v for k, v in entry.defaults.items() if k not in PYRAMID_SOFT_KEYS}
            kw = [{**base, **hparams}] * 3
        else:
            kw = [entry.hparams(hparams, seq_len=gh * gw) for gh, gw in grids]
        torch.manual_seed(seed)
        net = timm.create_model(f"soft_{self.parse(name)['size']}", attn_layer=entry.cls, attn_kwargs=kw,
                                num_classes=num_classes, img_size=(h * STEM, w * STEM), drop_path_rate=drop_path_rate,
                                in_chans=in_chans)
        attns = [m for m in net.modules() if isinstance(m, entry.cls)]
        return Skeleton(net, (in_chans, h * STEM, w * STEM), (h, w), 0, 0, attns)
