"""Identical skeletons: the model around the attention, one family per module.

* ``layer[-<size>]`` (:mod:`.layer`): the attention alone on tokens, at a ViT width.
* ``vit-<size>[-d<depth>]`` (:mod:`.vit`): timm's VisionTransformer with the attention swapped.
* ``soft-<size>`` (:mod:`.pyramid`): the SOFT paper's pyramid.

A sequence length N maps to a token grid H x W with H * W == N, H <= W, as close to square as possible. Everything
except the attention is built from the same seed and is identical across attentions.

A family (:class:`SkeletonFamily`) owns everything that depends on a skeleton's name: which names it accepts, its
grid rule, its results scope, whether it trains, how it builds. Adding a family is one module and one entry in
``FAMILIES``; the CLI's help and checks follow. Importing this package does not import torch.
"""
from __future__ import annotations

from typing import Any

from attnbench.config import ConfigError, ref
from attnbench.skeletons.base import MAX_ASPECT, SIZES, Skeleton, SkeletonFamily, grid_for
from attnbench.skeletons.layer import LayerFamily
from attnbench.skeletons.pyramid import PyramidFamily
from attnbench.skeletons.vit import PATCH, VitFamily, make_timm_attn

__all__ = ["FAMILIES", "SkeletonFamily", "Skeleton", "family_of", "find_family", "trainable_family",
           "skeleton_names", "SKELETONS", "check_skeleton", "describe", "grid_for", "build_skeleton", "make_timm_attn",
           "SIZES", "MAX_ASPECT", "PATCH"]

FAMILIES: tuple[SkeletonFamily, ...] = (VitFamily(), LayerFamily(), PyramidFamily())


def skeleton_names() -> list[str]:
    """Every skeleton listed by name (``vit-<size>-d<depth>`` is accepted beyond them)."""
    return [n for f in FAMILIES for n in f.names()]


SKELETONS = tuple(skeleton_names())


def find_family(name: str) -> SkeletonFamily | None:
    """The family ``name`` belongs to, or None."""
    return next((f for f in FAMILIES if f.parse(name) is not None), None)


def family_of(name: str) -> SkeletonFamily:
    """The family ``name`` belongs to; a one-line ConfigError listing the accepted names otherwise."""
    family = find_family(name)
    if family is None:
        accepted = ", ".join(n for f in FAMILIES for n in f.accepted())
        raise ConfigError("skeleton", f"unknown {ref('skeleton')} {name!r}; accepted: {accepted} "
                                      "(vit-<size>-d<depth>: the first <depth> blocks, e.g. vit-tiny-d4)")
    return family


def trainable_family(name: str) -> SkeletonFamily:
    """The family of ``name`` if ``attnbench train`` can train it (an image classifier)."""
    family = family_of(name)
    if not family.trainable:
        accepted = ", ".join(n for f in FAMILIES if f.trainable for n in f.accepted())
        raise ConfigError("skeleton", f"cannot train skeleton {name!r}; accepted: {accepted}")
    return family


def check_skeleton(name: str) -> None:
    """Raise a one-line ConfigError (a ValueError) naming the accepted skeletons unless ``name`` is one."""
    family_of(name)


def describe(*, trainable: bool = False) -> list[str]:
    """One line per family (``names: what it is``), for help texts."""
    return [f.describe() for f in FAMILIES if f.trainable or not trainable]


def build_skeleton(skeleton: str, model: str, seq_len: int, *, hparams: dict[str, Any] | None = None,
                   num_classes: int = 1000, seed: int = 0, drop_path_rate: float = 0.0,
                   in_chans: int = 3, patch_size: int | None = None) -> Skeleton:
    """Build ``skeleton`` (see ``describe()``) with attention ``model`` for ``seq_len`` tokens.

    ``patch_size`` (ViT skeletons only; default 16) sets the image side per token: small generated images use
    patch 1 or 4 so that e.g. a 32 px image is 1024 or 64 tokens. The pyramid's stem is fixed at stride 4.
    """
    from attnbench.registry import get_attention

    family = family_of(skeleton)
    entry = get_attention(model)
    if patch_size is not None and not family.takes_patch:
        takes = ", ".join(f.pattern for f in FAMILIES if f.takes_patch)
        raise ConfigError("patch_size", f"{ref('patch_size')} applies to the {takes} skeletons only, "
                                        f"not {skeleton!r}")
    if patch_size is not None and int(patch_size) < 1:
        raise ConfigError("patch_size", f"{ref('patch_size')} must be a positive integer, got {patch_size}")
    return family.build(skeleton, entry, seq_len, hparams=dict(hparams or {}), num_classes=num_classes, seed=seed,
                        drop_path_rate=drop_path_rate, in_chans=in_chans,
                        patch_size=None if patch_size is None else int(patch_size))
