"""SOFT / SOFT++ attention layer (arXiv 2110.11945, arXiv 2207.03341).

Reference code checked against: fudan-zvg/SOFT @ d3febc3, ``models/softmax_free_transformer.py``
(``SoftmaxFreeAttention``, ``SoftmaxFreeAttentionKernel``, ``SoftmaxFreeNormAttentionKernel``).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .functional import soft_kernel_attention
from .grid import resolve_hw, strided_grid
from .landmarks import build_sampler
from .macs import soft_attention_macs

__all__ = ["SoftAttention", "LocalValueConv"]

# Sweep defaults (where N varies): a fixed m = 49 pooled landmarks keeps the cost linear in N; the paper's stride-s
# conv sampler (m = N / s^2) is sampler="conv".
_SWEEP = dict(landmarks=49, sampler="pool", newton_iters=20, conv_kernel=3)
_COST = "O(N m d + m^2 d + T m^3)"


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
    ``symmetric_norm=True``: M = D^-½ newton(A) D^-½ with D = diag(A·1).

    Args:
        dim: embedding dim C.
        num_heads: h; head dim d = C / h (every released SOFT model has d = 32).
        qkv_bias: bias on W_q and W_v (the official layer has it).
        attn_drop: dropout on the token-to-landmark weights K1·M (there is no N×N map to drop from; the official
            code has no attention dropout).
        proj_drop: dropout after the output projection.
        landmarks: m for ``sampler="pool"`` (fixed whatever N; a non-square m is laid out on its most nearly
            square factor pair, e.g. 48 -> 6×8, so exactly m landmarks are used). Ignored by the other samplers.
        sampler: ``"pool"`` (adaptive average pooling to a fixed grid + LayerNorm + GELU; default, linear in N),
            ``"conv"`` (the paper's conv with kernel = stride = ``sr_ratio`` + LayerNorm + GELU; m = (H/s)(W/s))
            or ``"identity"`` (m = N, no LayerNorm/GELU: exact kernel attention, for tests).
        sr_ratio: s for ``sampler="conv"`` (the paper: 8/4/2 in stages 1–3); must be None for other samplers.
        newton_iters: Newton steps T (official: 20).
        ridge: diagonal shift of A before inverting (official: 0.01; 0 for the plain pseudo-inverse).
        conv_kernel: k of the local value conv (official: 9/5/3 in stages 1–3); 0 disables it; must be odd.
        symmetric_norm: SOFT++.
        grid_policy: for ``sampler="conv"`` when H or W is not a multiple of s: ``"error"`` (default, a
            ValueError) or ``"pad"`` (replicate-pad bottom/right to a multiple of s). Never a silent crop.
        track_residual: store ‖I - (A + ridge·I) M‖_F per (sample, head) of the last forward in
            ``self.last_residual`` ([B, h], detached; one extra m³ matmul) to monitor Newton convergence.

    Raises:
        ValueError: on any invalid option (message lists what is accepted). Unknown keywords raise TypeError.
    """

    # Read by attnbench's registry (this package never imports it): one entry per key.
    variants = {
        "soft": dict(defaults=_SWEEP, complexity=_COST,
                     description="SOFT: Gaussian kernel, Nystrom landmarks, Newton-Raphson pseudo-inverse"),
        "soft++": dict(defaults={**_SWEEP, "symmetric_norm": True}, complexity=_COST,
                       description="SOFT++: SOFT with symmetric normalisation D^-1/2 A+ D^-1/2"),
    }
    macs = staticmethod(soft_attention_macs)  # the closed-form MACs of one forward

    @classmethod
    def not_supported_reason(cls, *, device: str, dtype: str, seq_len: int, hparams: dict,
                             hw: tuple[int, int] | None = None) -> str | None:
        """Why the layer cannot run on this token grid (the conv sampler's stride does not tile it under
        ``grid_policy="error"``), or None. Bad option values are not reasons: the constructor reports them."""
        s = hparams.get("sr_ratio")
        if hparams.get("sampler") != "conv" or not isinstance(s, int) or s < 1:
            return None
        try:
            grid = resolve_hw(seq_len, hw)
        except ValueError:
            return None
        try:
            strided_grid(grid, s, hparams.get("grid_policy") or "error")
        except ValueError as e:
            return str(e)
        return None

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., landmarks: int = 49, sampler: str = "pool", sr_ratio: int | None = None,
                 newton_iters: int = 20, ridge: float = 0.01, conv_kernel: int = 3, symmetric_norm: bool = False,
                 grid_policy: str = "error", track_residual: bool = False) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads} (a positive int)")
        if not isinstance(newton_iters, int) or newton_iters < 0:
            raise ValueError(f"newton_iters must be a non-negative int, got {newton_iters!r}")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        if not isinstance(conv_kernel, int) or conv_kernel < 0 or (conv_kernel and conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be 0 (off) or an odd positive int, got {conv_kernel!r}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.newton_iters, self.ridge, self.symmetric_norm = newton_iters, float(ridge), bool(symmetric_norm)
        self.track_residual = track_residual
        self.last_residual: Tensor | None = None

        self.W_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.W_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.sampler = build_sampler(sampler, self.head_dim, landmarks, sr_ratio, grid_policy)
        self.local_conv = LocalValueConv(num_heads, conv_kernel) if conv_kernel else None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def num_landmarks(self, hw: tuple[int, int]) -> int:
        """m used on an H×W grid (fixed for ``"pool"``, (H/s)(W/s) for ``"conv"``, H·W for ``"identity"``)."""
        return self.sampler.num_landmarks(hw)

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        """Args: x [B, N, C]; hw: token grid (H, W), H·W = N (None: square). Returns [B, N, C]."""
        B, N, C = x.shape
        hw = resolve_hw(N, hw)
        h, d = self.num_heads, self.head_dim
        q = self.W_q(x).reshape(B, N, h, d).transpose(1, 2)  # [B, h, N, d]
        v = self.W_v(x).reshape(B, N, h, d).transpose(1, 2)  # [B, h, N, d]
        q_bar = q * d ** -0.25  # S = exp(-|q - k|² / (2√d)) = exp(-½|q̄ - k̄|²)
        q_tilde = self.sampler(q_bar, hw)  # [B, h, m, d]; not rescaled again, as in the official code
        out = soft_kernel_attention(q_bar, q_tilde, v, iters=self.newton_iters, ridge=self.ridge,
                                    symmetric_norm=self.symmetric_norm, dropout=self.attn_drop,
                                    return_residual=self.track_residual)
        if self.track_residual:
            out, residual = out
            self.last_residual = residual.detach()
        if self.local_conv is not None:
            out = out + self.local_conv(v, hw)  # [B, h, N, d]
        out = out.transpose(1, 2).reshape(B, N, C)  # [B, N, C]
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, newton_iters={self.newton_iters}, "
                f"ridge={self.ridge}, symmetric_norm={self.symmetric_norm}")
