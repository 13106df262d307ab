"""SOFT / SOFT++ attention layer (arXiv 2110.11945, arXiv 2207.03341).

Reference code checked against: fudan-zvg/SOFT @ d3febc3, ``models/softmax_free_transformer.py``
(``SoftmaxFreeAttention``, ``SoftmaxFreeAttentionKernel``, ``SoftmaxFreeNormAttentionKernel``) and
``SOFT/kernel/inverse.py``. docs/methods.md states what is implemented and where it departs from that code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import soft_kernel_attention
from .grid import resolve_hw, strided_grid
from .kernel import gaussian_kernel
from .landmarks import build_sampler, resolve_conv_stride
from .macs import soft_attention_macs
from .newton import check_newton_options

__all__ = ["SoftAttention", "LocalValueConv"]

# Registry defaults. "soft" is the paper's stage-1 layer: conv landmarks (kernel = stride = s) with s chosen per N
# so that m stays near 49 (the harness passes seq_len; a stride that does not tile the grid pads it), a 9x9 value
# conv, 20 Newton steps, ridge 0.01. "soft-pool" is the pooled sampler this project used before (not official).
_PAPER = dict(sampler="conv", landmarks=49, newton_iters=20, conv_kernel=9)
_POOL = dict(sampler="pool", landmarks=49, newton_iters=20, conv_kernel=3)
_COST = "O(N m d + N d^2 + T m^3), m ~ 49"


class LocalValueConv(nn.Module):
    """The official code's local term conv(V): a k×k Conv2d(h, h, groups=h, no bias) on each value channel.

    Each head has one spatial filter shared by that head's d channels (channels are folded into the batch),
    so it adds only h·k² parameters.
    """

    def __init__(self, num_heads: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_heads, num_heads, kernel_size, padding=kernel_size // 2, groups=num_heads,
                              bias=False)

    def forward(self, v: Tensor, hw: tuple[int, int]) -> Tensor:
        B, h, N, d = v.shape
        # the same conv run as a depthwise conv over all h·d channels (each head's filter repeated over its d
        # channels): identical result and MACs, ~2.5x faster on CPU than a grouped conv on [B·d, h, H, W]
        x = v.transpose(2, 3).reshape(B, h * d, hw[0], hw[1])  # [B, h·d, H, W]
        w = self.conv.weight.repeat_interleave(d, dim=0)  # [h·d, 1, k, k]
        x = F.conv2d(x, w, padding=self.conv.padding, groups=h * d)  # [B, h·d, H, W]
        return x.reshape(B, h, d, N).transpose(2, 3)  # [B, h, N, d]


class SoftAttention(nn.Module):
    """Softmax-free attention: Gaussian kernel, Nyström landmarks, Newton–Raphson pseudo-inverse.

    Q and K are tied (only W_q and W_v exist); q̄ = W_q x · d^(-1/4), landmarks Q̃ = sampler(q̄), and

        out = proj((K1 · M) · (K1ᵀ · V) + conv_k(V)),  K1 = exp(-½ dist²(q̄, Q̃)),  M = newton(exp(-½ dist²(Q̃, Q̃)))

    computed without any N×N tensor. **SOFT++** (symmetric normalisation, arXiv 2207.03341) is the flag
    ``symmetric_norm=True``: M = D^-½ newton(A) D^-½ with D = diag(A·1), inverted as the official SOFT-Norm code
    does unless ``newton_variant``/``ridge`` say otherwise. docs/methods.md has the equations and their limits.

    The paper's layer is ``sampler="conv"`` with ``sr_ratio`` = s (the pyramid's 8/4/2 with ``conv_kernel``
    9/5/3), or with ``seq_len`` = N and no ``sr_ratio`` (s is then chosen so that m is nearest ``landmarks``).
    The default ``sampler="pool"`` needs no grid at construction and is not in any official release.

    Args:
        dim: embedding dim C.
        num_heads: h; head dim d = C / h (every released SOFT model has d = 32).
        qkv_bias: bias on W_q and W_v (the official layer has it).
        attn_drop: dropout on the token-to-landmark weights K1·M (there is no N×N map to drop from; the official
            code has no attention dropout).
        proj_drop: dropout after the output projection.
        landmarks: m for ``sampler="pool"`` (fixed whatever N; a non-square m is laid out on its most nearly
            square factor pair, e.g. 48 -> 6×8, so exactly m landmarks are used); for ``sampler="conv"`` without
            ``sr_ratio``, the m the stride is chosen for. Ignored otherwise.
        sampler: ``"pool"`` (adaptive average pooling to a fixed grid + LayerNorm + GELU; default),
            ``"conv"`` (the paper's conv with kernel = stride = s + LayerNorm + GELU; m = (H/s)(W/s))
            or ``"identity"`` (m = N, no LayerNorm/GELU: exact kernel attention, for tests).
        sr_ratio: s for ``sampler="conv"``; None chooses it from ``seq_len``. Must be None for other samplers.
        seq_len: the token count N the layer is built for. With ``sampler="conv"`` and no ``sr_ratio`` the stride
            is chosen for its most nearly square H×W grid (H <= W), and kept for any grid seen later (the conv
            weight is s×s). Ignored by the other samplers.
        newton_iters: Newton steps T (official: 20); with ``newton_tol``, the most steps.
        ridge: diagonal shift of A before inverting. None: the official value of the Newton variant (0.01 for
            ``"soft"``, 0 for ``"soft-norm"``).
        newton_variant: ``"soft"`` (per-matrix start value, closed-form backward: SOFT's official routine) or
            ``"soft-norm"`` (one start value for the batch with the halving rule, autograd through the steps:
            SOFT-Norm's official routine). None: ``"soft-norm"`` with ``symmetric_norm``, ``"soft"`` without.
        newton_tol: stop the Newton steps once every matrix has ‖I - (A + ridge·I) M‖_F <= newton_tol (at most
            ``newton_iters`` steps; one host sync per step). None: exactly ``newton_iters`` steps.
        conv_kernel: k of the local value conv (official: 9/5/3 in stages 1–3); 0 disables it; must be odd.
        symmetric_norm: SOFT++.
        grid_policy: for ``sampler="conv"`` when H or W is not a multiple of s: ``"error"`` (a ValueError) or
            ``"pad"`` (replicate-pad bottom/right to a multiple of s). None (default): ``"error"`` for a given
            ``sr_ratio``, ``"pad"`` for a chosen one. Never a silent crop.
        landmark_scale: ``"sampler"`` (as published: the landmarks as the sampler's LayerNorm + GELU leave them) or
            ``"match"`` (an ablation: each landmark rescaled to the mean norm of its head's queries q̄).
        track_residual: after each forward, ``self.last_residual`` holds the largest Newton residual
            ‖I - (A + ridge·I) newton(A)‖_F over batch and heads (a float; one extra m³ matmul per matrix and a
            host sync). Otherwise ``last_residual`` is None.

    Raises:
        ValueError: on any invalid option (message lists what is accepted). Unknown keywords raise TypeError.
    """

    # Read by attnbench's registry (this package never imports it): one entry per key.
    variants = {
        "soft": dict(defaults=_PAPER, complexity=_COST,
                     description="SOFT as in the paper: Gaussian kernel, conv landmarks (kernel = stride = s, s chosen "
                                 "per N so that m ~ 49, grid padded if s does not tile it), 9x9 value conv, 20 "
                                 "Newton steps on A + 0.01 I"),
        "soft++": dict(defaults={**_PAPER, "symmetric_norm": True}, complexity=_COST,
                       description="SOFT++ as published (SOFT-Norm): the soft layer with M = D^-1/2 newton(A) D^-1/2, "
                                   "no ridge, one Newton start value per batch halved until stable, autograd through "
                                   "the steps (newton_variant=soft: this project's earlier inverse)"),
        "soft-matched": dict(defaults={**_PAPER, "landmark_scale": "match"}, complexity=_COST,
                             description="ablation, not the paper's layer: soft with each landmark rescaled to the "
                                         "mean norm of the queries (the sampler's LayerNorm + GELU leave them ~7-10x "
                                         "longer)"),
        "soft-pool": dict(defaults=_POOL, complexity="O(N m d + T m^3), m = 49",
                          description="SOFT with pooled landmarks (adaptive average pool to m = 49, no parameters) "
                                      "and a 3x3 value conv: not an official configuration"),
    }
    needs_seq_len = True  # the conv sampler's stride follows N when sr_ratio is None (ignored by the other samplers)
    macs = staticmethod(soft_attention_macs)  # the closed-form MACs of one forward

    @classmethod
    def not_supported_reason(cls, *, device: str, dtype: str, seq_len: int, hparams: dict,
                             hw: tuple[int, int] | None = None) -> str | None:
        """Why the layer cannot run on this token grid (the conv sampler's stride does not tile it under
        ``grid_policy="error"``), or None. Bad option values are not reasons: the constructor reports them."""
        if hparams.get("sampler") != "conv":
            return None
        try:
            s, policy = resolve_conv_stride(hparams.get("sr_ratio"), hparams.get("grid_policy"),
                                            hparams.get("landmarks"), seq_len)
            grid = resolve_hw(seq_len, hw)
        except ValueError:
            return None
        try:
            strided_grid(grid, s, policy)
        except ValueError as e:
            return str(e)
        return None

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., landmarks: int = 49, sampler: str = "pool", sr_ratio: int | None = None,
                 seq_len: int | None = None, newton_iters: int = 20, ridge: float | None = None,
                 newton_variant: str | None = None, newton_tol: float | None = None, conv_kernel: int = 3,
                 symmetric_norm: bool = False, grid_policy: str | None = None, track_residual: bool = False,
                 landmark_scale: str = "sampler") -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads} (a positive int)")
        if not isinstance(newton_iters, int) or newton_iters < 0:
            raise ValueError(f"newton_iters must be a non-negative int, got {newton_iters!r}")
        if not isinstance(conv_kernel, int) or conv_kernel < 0 or (conv_kernel and conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be 0 (off) or an odd positive int, got {conv_kernel!r}")
        if landmark_scale not in ("sampler", "match"):
            raise ValueError(f"landmark_scale must be 'sampler' or 'match', got {landmark_scale!r}")
        self.landmark_scale = landmark_scale
        variant = newton_variant if newton_variant is not None else ("soft-norm" if symmetric_norm else "soft")
        ridge = ridge if ridge is not None else (0.01 if variant == "soft" else 0.0)
        check_newton_options(newton_iters, ridge, variant, newton_tol)
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.newton_iters, self.ridge, self.symmetric_norm = newton_iters, float(ridge), bool(symmetric_norm)
        self.newton_variant, self.newton_tol = variant, newton_tol
        self.track_residual = bool(track_residual)
        self.last_residual: float | None = None

        self.W_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.W_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.sampler = build_sampler(sampler, self.head_dim, landmarks, sr_ratio, grid_policy, seq_len)
        self.local_conv = LocalValueConv(num_heads, conv_kernel) if conv_kernel else None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def num_landmarks(self, hw: tuple[int, int]) -> int:
        """m used on an H×W grid (fixed for ``"pool"``, (H/s)(W/s) for ``"conv"``, H·W for ``"identity"``).

        Raises:
            ValueError: the conv sampler's s does not tile the grid and its grid policy is ``"error"``.
        """
        return self.sampler.num_landmarks(hw)

    def _heads(self, x: Tensor, hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """``(q̄, Q̃, v)``: scaled queries, landmarks and values, each [B, h, ·, d]."""
        B, N, C = x.shape
        h, d = self.num_heads, self.head_dim
        q = self.W_q(x).reshape(B, N, h, d).transpose(1, 2)  # [B, h, N, d]
        v = self.W_v(x).reshape(B, N, h, d).transpose(1, 2)  # [B, h, N, d]
        q_bar = q * d ** -0.25  # S = exp(-|q - k|² / (2√d)) = exp(-½|q̄ - k̄|²)
        q_tilde = self.sampler(q_bar, hw)  # [B, h, m, d]; not rescaled again, as in the official code
        if self.landmark_scale == "match":
            q_tilde = q_tilde * (q_bar.norm(dim=-1).mean(-1, keepdim=True)
                                 / q_tilde.norm(dim=-1).clamp_min(1e-6)).unsqueeze(-1)
        return q_bar, q_tilde, v

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        """Args: x [B, N, C]; hw: token grid (H, W), H·W = N (None: square). Returns [B, N, C]."""
        B, N, C = x.shape
        hw = resolve_hw(N, hw)
        q_bar, q_tilde, v = self._heads(x, hw)
        out = soft_kernel_attention(q_bar, q_tilde, v, iters=self.newton_iters, ridge=self.ridge,
                                    symmetric_norm=self.symmetric_norm, variant=self.newton_variant,
                                    tol=self.newton_tol, dropout=self.attn_drop, return_residual=self.track_residual)
        if self.track_residual:
            out, residual = out
            self.last_residual = float(residual.detach().max())
        else:
            self.last_residual = None
        if self.local_conv is not None:
            out = out + self.local_conv(v, hw)  # [B, h, N, d]
        out = out.transpose(1, 2).reshape(B, N, C)  # [B, N, C]
        return self.proj_drop(self.proj(out))

    @torch.no_grad()
    def diagnostics(self, x: Tensor, hw: tuple[int, int] | None = None) -> dict[str, float]:
        """What the layer does with the tokens ``x [B, N, C]`` it sees (logged per epoch by the training harness):

        - ``global_share``: var(global) / (var(global) + var(local)) of the two terms of the output before ``proj``,
          the kernel term (K1 M)(K1ᵀ V) and the local value conv (1 without a conv);
        - ``newton_residual``: the largest ‖I - (A + ridge·I) newton(A)‖_F over samples and heads;
        - ``kernel_mean``: the mean of K1 = exp(-½ dist²(q̄, Q̃)), the weight a query gives a landmark;
        - ``query_norm``, ``landmark_norm``: mean ‖q̄‖ and ‖Q̃‖ (a large gap drives K1 to 0).
        """
        hw = resolve_hw(x.shape[1], hw)
        q_bar, q_tilde, v = self._heads(x, hw)
        glob, residual = soft_kernel_attention(q_bar, q_tilde, v, iters=self.newton_iters, ridge=self.ridge,
                                               symmetric_norm=self.symmetric_norm, variant=self.newton_variant,
                                               tol=self.newton_tol, return_residual=True)
        g = float(glob.double().var())
        local = float(self.local_conv(v, hw).double().var()) if self.local_conv is not None else 0.0
        return {"global_share": g / (g + local) if g + local > 0 else float("nan"),
                "newton_residual": float(residual.max()),
                "kernel_mean": float(gaussian_kernel(q_bar, q_tilde).mean()),
                "query_norm": float(q_bar.norm(dim=-1).mean()), "landmark_norm": float(q_tilde.norm(dim=-1).mean())}

    def extra_repr(self) -> str:
        tol = f", newton_tol={self.newton_tol}" if self.newton_tol is not None else ""
        return (f"dim={self.dim}, num_heads={self.num_heads}, newton_iters={self.newton_iters}, "
                f"newton_variant={self.newton_variant!r}{tol}, ridge={self.ridge}, "
                f"symmetric_norm={self.symmetric_norm}")
