"""SOFT: Softmax-free Transformer with linear complexity (arXiv 2110.11945) and SOFT++ (arXiv 2207.03341).

A standalone library (torch; timm only for the model registry)::

    from soft import SoftAttention, newton_inverse, soft_attention_macs
    import timm; timm.create_model("soft_tiny")   # registered on import

SOFT++ is ``SoftAttention(..., symmetric_norm=True)``; the paper's layer is ``SoftAttention(..., sampler="conv",
sr_ratio=s)`` or ``sampler="conv", seq_len=N`` (stride chosen for m near 49). docs/methods.md describes the
method as implemented.
"""
from .attention import LocalValueConv, SoftAttention
from .functional import soft_kernel_attention, soft_middle
from .grid import auto_stride, landmark_grid, resolve_hw, square_grid
from .kernel import gaussian_kernel, squared_distance
from .landmarks import ConvLandmarks, IdentityLandmarks, PoolLandmarks
from .macs import soft_attention_mac_breakdown, soft_attention_macs
from .naive import naive_gaussian_kernel, naive_kernel_attention, naive_soft_attention, naive_soft_attention_layer
from .newton import NEWTON_VARIANTS, newton_alpha, newton_alpha_global, newton_inverse, newton_residual, newton_schulz
from .pyramid import SOFT_SIZES, SOFT_STAGE_DEFAULTS, SoftPyramid, soft_huge, soft_large, soft_medium, soft_small, \
    soft_small_d20, soft_tiny

__all__ = [
    "SoftAttention", "LocalValueConv", "soft_kernel_attention", "soft_middle", "landmark_grid", "resolve_hw",
    "auto_stride", "square_grid", "NEWTON_VARIANTS", "newton_alpha_global", "soft_small_d20",
    "gaussian_kernel", "squared_distance", "ConvLandmarks", "IdentityLandmarks", "PoolLandmarks",
    "soft_attention_macs", "soft_attention_mac_breakdown", "naive_gaussian_kernel", "naive_kernel_attention",
    "naive_soft_attention",
    "naive_soft_attention_layer", "newton_alpha", "newton_inverse", "newton_residual", "newton_schulz",
    "SOFT_SIZES", "SOFT_STAGE_DEFAULTS", "SoftPyramid", "soft_tiny", "soft_small", "soft_medium", "soft_large",
    "soft_huge",
]
