"""Identical skeletons: timm's VisionTransformer with the attention swapped, one bare layer, the SOFT pyramid.

A sequence length N maps to a token grid H x W with H * W == N, H <= W, as close to square as possible.
Everything except the attention is built from the same seed and is bit-identical across attentions: the
non-attention weights are copied from a reference model built with timm's own Attention.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attnbench.registry import AttentionEntry, get_attention

__all__ = ["SIZES", "SKELETONS", "grid_for", "build_skeleton", "Skeleton", "skeleton_names", "check_skeleton",
           "make_timm_attn"]

# timm's ViT sizes (vit_tiny/small/base_patch16_224)
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
}
PYRAMIDS = ("tiny", "small", "medium", "large", "huge")
PYRAMID_SOFT_KEYS = ("sampler", "landmarks", "sr_ratio", "conv_kernel")  # set per stage by the SOFT pyramid
MAX_ASPECT = 4  # a patch grid more elongated than 1:4 is not an image a ViT user would run
PATCH = 16


def skeleton_names() -> list[str]:
    return ([f"vit-{s}" for s in SIZES] + ["layer"] + [f"layer-{s}" for s in SIZES if s != "tiny"]
            + [f"soft-{p}" for p in PYRAMIDS])


SKELETONS = tuple(skeleton_names())
# vit-<size>-d<depth>: the first <depth> blocks only (a cheaper ViT for CPU training; rows join on this name)
_VIT = re.compile(r"vit-(tiny|small|base)(?:-d([1-9][0-9]*))?")


def check_skeleton(name: str) -> None:
    """Raise a one-line ValueError naming the accepted skeletons unless ``name`` is one."""
    m = _VIT.fullmatch(name)
    if name in SKELETONS or (m and (m[2] is None or int(m[2]) <= SIZES[m[1]]["depth"])):
        return
    raise ValueError(f"unknown skeleton {name!r}; accepted: {', '.join(SKELETONS)}, or vit-<size>-d<depth> "
                     "(the first <depth> blocks, e.g. vit-tiny-d4)")


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


def make_timm_attn(entry: AttentionEntry, hw: tuple[int, int], hparams: dict[str, Any] | None = None) -> type:
    """A class timm's Block can instantiate (timm requires a class): builds the registered attention and
    passes the token grid ``hw`` to it. timm's extra constructor kwargs (qk_norm, norm_layer, ...) are dropped."""
    hparams = dict(hparams or {})

    class TimmAttention(nn.Module):
        def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, attn_drop: float = 0.,
                     proj_drop: float = 0., **_timm_kwargs: Any) -> None:
            super().__init__()
            self.inner = entry.build(dim, num_heads, qkv_bias=qkv_bias, seq_len=hw[0] * hw[1],
                                     attn_drop=attn_drop, proj_drop=proj_drop, **hparams)

        def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False):
            if attn_mask is not None or is_causal:
                raise ValueError("attention masks are not supported by the swapped attentions")
            return self.inner(x, hw=hw)

    TimmAttention.__name__ = TimmAttention.__qualname__ = f"TimmAttention[{entry.name}]"
    return TimmAttention


@dataclass
class Skeleton:
    """A built model with what the harness needs to feed it."""

    model: nn.Module
    input_shape: tuple[int, ...]  # per-sample input shape (C, H, W) or (N, dim)
    hw: tuple[int, int]  # token grid the swapped attention sees (stage 1 for the pyramid)
    dim: int
    num_heads: int
    attn_modules: list[nn.Module]  # the swapped attention modules, for auditing

    def example_input(self, batch: int, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                      seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.input_shape), generator=g, dtype=dtype).to(device)


def _copy_non_attention(dst: nn.Module, ref: nn.Module) -> None:
    ref_sd = ref.state_dict()
    dst_sd = dst.state_dict()
    shared = {k: v for k, v in ref_sd.items() if ".attn." not in k and k in dst_sd and dst_sd[k].shape == v.shape}
    dst.load_state_dict(shared, strict=False)


def build_skeleton(skeleton: str, model: str, seq_len: int, *, hparams: dict[str, Any] | None = None,
                   num_classes: int = 1000, seed: int = 0, drop_path_rate: float = 0.0,
                   in_chans: int = 3, patch_size: int | None = None) -> Skeleton:
    """Build ``skeleton`` (see ``skeleton_names()``) with attention ``model`` for ``seq_len`` tokens.

    ``patch_size`` (ViT skeletons only; default 16) sets the image side per token: small generated images use
    patch 1 or 4 so that e.g. a 32 px image is 1024 or 64 tokens. The pyramid's stem is fixed at stride 4.
    """
    check_skeleton(skeleton)
    entry = get_attention(model)
    if patch_size is not None and not skeleton.startswith("vit-"):
        raise ValueError(f"patch_size applies to the vit-* skeletons only, not {skeleton!r}")
    patch = PATCH if patch_size is None else int(patch_size)
    if patch < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
    hparams = dict(hparams or {})
    if skeleton == "layer" or skeleton.startswith("layer-"):
        size = SIZES[skeleton.partition("-")[2] or "tiny"]
        dim, heads = size["embed_dim"], size["num_heads"]
        hw = grid_for(seq_len, max_aspect=None)
        torch.manual_seed(seed)
        layer = entry.build(dim, heads, seq_len=seq_len, **hparams)
        return Skeleton(_LayerScope(layer, hw), (seq_len, dim), hw, dim, heads, [layer])
    vit_name = _VIT.fullmatch(skeleton)
    if vit_name:
        import timm.models.vision_transformer as vt

        size = dict(SIZES[vit_name[1]], **({"depth": int(vit_name[2])} if vit_name[2] else {}))
        hw = grid_for(seq_len)
        common = dict(img_size=(hw[0] * patch, hw[1] * patch), patch_size=patch, num_classes=num_classes,
                      class_token=False, global_pool="avg", drop_path_rate=drop_path_rate, in_chans=in_chans,
                      **size)
        torch.manual_seed(seed)
        vit = vt.VisionTransformer(attn_layer=make_timm_attn(entry, hw, hparams), **common)
        torch.manual_seed(seed)
        ref = vt.VisionTransformer(**common)
        _copy_non_attention(vit, ref)
        attns = [b.attn.inner for b in vit.blocks]
        return Skeleton(vit, (in_chans, hw[0] * patch, hw[1] * patch), hw, size["embed_dim"], size["num_heads"],
                        attns)
    if skeleton.startswith("soft-") and skeleton[5:] in PYRAMIDS:
        return _build_pyramid(skeleton[5:], entry, seq_len, hparams, num_classes, seed, drop_path_rate, in_chans)
    check_skeleton(skeleton)
    raise AssertionError(f"skeleton {skeleton!r} passed the check but has no builder")


def _build_pyramid(size: str, entry: AttentionEntry, seq_len: int, hparams: dict[str, Any], num_classes: int,
                   seed: int, drop_path_rate: float, in_chans: int) -> Skeleton:
    """The SOFT paper's pyramid: ``seq_len`` is the stage-1 token count (stride 4); sides must be multiples of 8
    so that every stage tiles exactly (image side a multiple of 32)."""
    import timm

    import soft  # noqa: F401  (registers soft_* in timm)

    h, w = grid_for(seq_len, multiple=8)
    grids = [(h >> i, w >> i) for i in range(3)]
    if entry.cls is soft.SoftAttention:
        # the paper's per-stage landmarks (conv, s = 8/4/2) and value conv (k = 9/5/3) live in the pyramid: the
        # registry's sweep defaults for them (pooled m = 49, k = 3) are dropped, its other defaults (SOFT++'s
        # symmetric_norm) kept; the caller's ``hparams`` win over both
        base = {k: v for k, v in entry.defaults.items() if k not in PYRAMID_SOFT_KEYS}
        kw = [{**base, **hparams}] * 3
    else:
        kw = [entry.hparams(hparams, seq_len=gh * gw) for gh, gw in grids]
    torch.manual_seed(seed)
    net = timm.create_model(f"soft_{size}", attn_layer=entry.cls, attn_kwargs=kw, num_classes=num_classes,
                            img_size=(h * 4, w * 4), drop_path_rate=drop_path_rate, in_chans=in_chans)
    attns = [m for m in net.modules() if isinstance(m, entry.cls)]
    return Skeleton(net, (in_chans, h * 4, w * 4), (h, w), 0, 0, attns)


class _LayerScope(nn.Module):
    """One attention module on tokens (B, N, dim): isolates the attention itself."""

    def __init__(self, attn: nn.Module, hw: tuple[int, int]) -> None:
        super().__init__()
        self.attn, self.hw = attn, hw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, hw=self.hw)
