"""``vit-<size>[-d<depth>]``: timm's VisionTransformer with the attention swapped, seeing exactly N tokens.

No class token and average pooling, so the attention sees the H x W patch grid and nothing else. Everything except
the attention is built from the same seed and is bit-identical across attentions: the non-attention weights are
copied from a reference model built with timm's own Attention. ``-d<depth>`` keeps the first ``depth`` blocks (a
cheaper ViT for CPU training; rows join on this name).
"""
from __future__ import annotations

import re
from typing import Any

from attnbench.config import ConfigError, ref
from attnbench.skeletons.base import SIZES, Skeleton, SkeletonFamily

__all__ = ["VitFamily", "make_timm_attn", "PATCH", "VIT_SIZES"]

PATCH = 16  # timm's patch16 models
# timm's sizes, then "micro" (not a timm model): width 64, 2 heads, which a 2-core CPU trains on the long-range task
# in minutes (vit-micro-d2; at ViT-Tiny's width 192 a throwaway prototype sat at chance for far longer)
VIT_SIZES: dict[str, dict[str, int]] = {**SIZES, "micro": dict(embed_dim=64, depth=12, num_heads=2)}


class VitFamily(SkeletonFamily):
    scope = "vit"
    pattern = "vit-<size>[-d<depth>]"
    help = "timm's ViT on N = H x W patches (aspect within 1:4); -d<depth> keeps the first blocks, e.g. vit-tiny-d4"
    trainable = takes_patch = takes_depth = True
    mlp_ratio = 4  # timm's default
    regex = re.compile(rf"vit-(?P<size>{'|'.join(VIT_SIZES)})(?:-d(?P<depth>[1-9][0-9]*))?")

    def names(self) -> tuple[str, ...]:
        return tuple(f"vit-{s}" for s in VIT_SIZES)

    def accepted(self) -> tuple[str, ...]:
        return (*self.names(), "vit-<size>-d<depth>")

    def parse(self, name: str) -> dict[str, Any] | None:
        p = super().parse(name)
        if p is None or (p["depth"] and int(p["depth"]) > VIT_SIZES[p["size"]]["depth"]):
            return None
        return p

    def with_depth(self, name: str, depth: int | None) -> str:
        # a skeleton of its own: `attnbench run --skeleton` takes it too
        return f"{name}-d{depth}" if depth else name

    def attention_layers(self, name: str, seq_len: int) -> list[tuple[int, int, int]]:
        p = self.parse(name)
        size = VIT_SIZES[p["size"]]
        return [(seq_len, size["embed_dim"], size["num_heads"])] * int(p["depth"] or size["depth"])

    def image_tokens(self, name: str, img: int, patch_size: int | None, default_patch: int) -> tuple[int | None, int]:
        patch = patch_size or default_patch
        if patch < 1 or img % patch:
            raise ConfigError("patch_size", f"{ref('patch_size')} {patch} must divide the image side {img}")
        return patch, (img // patch) ** 2

    def build(self, name: str, entry: Any, seq_len: int, *, hparams: dict[str, Any], num_classes: int, seed: int,
              drop_path_rate: float, in_chans: int, patch_size: int | None) -> Skeleton:
        import timm.models.vision_transformer as vt
        import torch

        p = self.parse(name)
        size = dict(VIT_SIZES[p["size"]], **({"depth": int(p["depth"])} if p["depth"] else {}))
        patch = PATCH if patch_size is None else patch_size
        hw = self.grid(seq_len)
        common = dict(img_size=(hw[0] * patch, hw[1] * patch), patch_size=patch, num_classes=num_classes,
                      class_token=False, global_pool="avg", drop_path_rate=drop_path_rate, in_chans=in_chans,
                      **size)
        torch.manual_seed(seed)
        vit = vt.VisionTransformer(attn_layer=make_timm_attn(entry, hw, hparams), **common)
        torch.manual_seed(seed)
        ref_vit = vt.VisionTransformer(**common)
        _copy_non_attention(vit, ref_vit)
        attns = [b.attn.inner for b in vit.blocks]
        return Skeleton(vit, (in_chans, hw[0] * patch, hw[1] * patch), hw, size["embed_dim"], size["num_heads"],
                        attns)


def make_timm_attn(entry: Any, hw: tuple[int, int], hparams: dict[str, Any] | None = None) -> type:
    """A class timm's Block can instantiate (timm requires a class): builds the registered attention ``entry`` and
    passes the token grid ``hw`` to it. timm's extra constructor kwargs (qk_norm, norm_layer, ...) are dropped."""
    from torch import nn

    hparams = dict(hparams or {})

    class TimmAttention(nn.Module):
        def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, attn_drop: float = 0.,
                     proj_drop: float = 0., **_timm_kwargs: Any) -> None:
            super().__init__()
            self.inner = entry.build(dim, num_heads, qkv_bias=qkv_bias, seq_len=hw[0] * hw[1],
                                     attn_drop=attn_drop, proj_drop=proj_drop, **hparams)

        def forward(self, x, attn_mask=None, is_causal: bool = False):
            if attn_mask is not None or is_causal:
                raise ValueError("attention masks are not supported by the swapped attentions")
            return self.inner(x, hw=hw)

    TimmAttention.__name__ = TimmAttention.__qualname__ = f"TimmAttention[{entry.name}]"
    return TimmAttention


def _copy_non_attention(dst: Any, ref_model: Any) -> None:
    ref_sd = ref_model.state_dict()
    dst_sd = dst.state_dict()
    shared = {k: v for k, v in ref_sd.items() if ".attn." not in k and k in dst_sd and dst_sd[k].shape == v.shape}
    dst.load_state_dict(shared, strict=False)
