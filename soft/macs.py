"""Closed-form multiply-accumulate count of one :class:`soft.SoftAttention` forward (table in docs/methods.md).

Convention: one MAC = one multiply-add. Vision papers' "FLOPs" (the SOFT paper's 1.9 G for Tiny included) and
fvcore's ``FlopCountAnalysis`` count exactly this; ``torch.utils.flop_counter.FlopCounterMode`` counts 2 per MAC.
Only matmul-class ops are counted (linear, matmul/bmm, conv); exp, LayerNorm, GELU, pooling, sums and
elementwise products are not, as fvcore does for these ops.
"""
from __future__ import annotations

import inspect

from .grid import landmark_grid, resolve_hw, strided_grid
from .landmarks import GRID_POLICIES, SAMPLERS, resolve_conv_stride

__all__ = ["soft_attention_macs", "soft_attention_mac_breakdown"]


def _defaults() -> dict:
    from .attention import SoftAttention

    sig = inspect.signature(SoftAttention.__init__)
    return {k: p.default for k, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}


def soft_attention_mac_breakdown(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None,
                                 **hparams) -> dict[str, int]:
    """Per-part MACs of one forward (same arguments as :func:`soft_attention_macs`, which is their sum).

    Keys: ``projections, sampler, kernels, newton, products, local_conv``. ``newton`` includes SOFT-Norm's
    start-value matmul and the residual matmul when ``track_residual=True``; with ``newton_tol`` it counts the cap
    (``newton_iters`` steps), an upper bound: a run that converges earlier does fewer. The parts make audits
    possible, e.g. the SOFT README's FLOPs match an fvcore count that misses ``newton`` and ``kernels`` (custom
    autograd Function / CUDA op in the official code).
    """
    defaults = _defaults()
    unknown = set(hparams) - set(defaults)
    if unknown:
        raise ValueError(f"unknown SoftAttention hparams {sorted(unknown)}; accepted: {', '.join(sorted(defaults))}")
    p = {**defaults, **hparams}
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
    if p["sampler"] not in SAMPLERS or p["grid_policy"] not in (None, *GRID_POLICIES):
        raise ValueError(f"sampler must be one of {SAMPLERS} and grid_policy one of {GRID_POLICIES}")
    H, W = resolve_hw(N, hw)
    h, d, T, k = num_heads, dim // num_heads, p["newton_iters"], p["conv_kernel"]
    variant = p["newton_variant"] or ("soft-norm" if p["symmetric_norm"] else "soft")

    sampler_macs = 0
    if p["sampler"] == "pool":
        gh, gw = landmark_grid(p["landmarks"], (H, W))
        m = gh * gw
    elif p["sampler"] == "conv":
        # a layer built for this N when no seq_len is given, as the harness builds one per N
        s, policy = resolve_conv_stride(p["sr_ratio"], p["grid_policy"], p["landmarks"], p["seq_len"] or N)
        gh, gw = strided_grid((H, W), s, policy)
        m = gh * gw
        sampler_macs = B * h * m * d * d * s * s
    else:  # identity
        m = N

    newton = 2 * T + (variant == "soft-norm") + bool(p["track_residual"])  # in units of m³ per matrix
    return dict(
        projections=3 * B * N * dim * dim,
        sampler=sampler_macs,
        kernels=B * h * (N * m * d + m * m * d),
        newton=B * h * newton * m ** 3,
        products=B * h * (N * m * m + m * N * d + N * m * d),
        local_conv=B * dim * N * k * k if k else 0,
    )


def soft_attention_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None,
                        **hparams) -> int:
    """MACs of one forward of ``SoftAttention(dim, num_heads, **hparams)`` on x [B, N, dim].

    With h heads, d = dim/h, m landmarks, T Newton steps, local conv size k and sampler stride s:

    ================================  =========================
    W_q, W_v, output projection       3 · B N dim²
    landmark conv (sampler="conv")    B h · m · d² s²
    K1 = kernel(q̄, Q̃): q̄ Q̃ᵀ         B h · N m d
    A = kernel(Q̃, Q̃): Q̃ Q̃ᵀ          B h · m² d
    Newton: T × (V P) V               B h · 2 T m³
    SOFT-Norm start value: P · P      B h · m³ (``newton_variant="soft-norm"``, SOFT++'s default)
    K1 · M                            B h · N m²
    K1ᵀ · V                           B h · m N d
    (K1 M) · (K1ᵀ V)                  B h · N m d
    local value conv (k > 0)          B · dim · N k²
    SOFT++ D^-½ · D^-½ scaling        0 (elementwise)
    residual (track_residual=True)    B h · m³
    ================================  =========================

    Args:
        B, N, dim, num_heads: batch, tokens, embedding dim, heads.
        hw: token grid (None: square; needed for the conv sampler's m).
        **hparams: any keyword of :class:`soft.SoftAttention` (landmarks, sampler, sr_ratio, newton_iters,
            conv_kernel, symmetric_norm, newton_variant, grid_policy, seq_len, ...); unknown names raise. For
            ``sampler="conv"`` without ``sr_ratio`` the stride is the one a layer built for ``seq_len`` (default
            N) would use.

    Returns:
        MACs (int). FLOPs in the 2-per-MAC convention are twice this.
    """
    return sum(soft_attention_mac_breakdown(B, N, dim, num_heads, hw, **hparams).values())
