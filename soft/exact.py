"""The exact attention SOFT approximates: the N×N Gaussian kernel with tied Q = K, no landmarks, no inverse.

    out = proj(S V + conv_k(V)),  S = exp(-½ dist²(q̄, q̄)),  q̄ = W_q x · d^(-1/4)

or, with ``row_norm``, S replaced by D⁻¹ S (D = diag(S·1): each row a weighted average, as softmax's rows are).
This is an **ablation and a reference**, never a default and not the paper's layer: it costs O(N² d) time and
O(N²) memory. Trained beside SOFT (same W_q, W_v, local conv and projection), it separates what the Nyström
approximation costs from what the tied Gaussian kernel costs; it is also SOFT's exact counterpart in fidelity
measurements (with ``sampler="identity"`` and an exact inverse SOFT's kernel term equals S V).
"""
from __future__ import annotations

from torch import Tensor, nn

from .attention import LocalValueConv
from .grid import resolve_hw
from .kernel import gaussian_kernel

__all__ = ["GaussianKernelAttention", "gaussian_exact_macs"]

_COST = "O(N^2 d), N^2 memory"


def gaussian_exact_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, *,
                        conv_kernel: int = 9, row_norm: bool = False, **_: object) -> int:
    """W_q, W_v, proj 3·B N dim²; q̄ q̄ᵀ and S V 2·B h N² d = 2·B N² dim; local conv B dim N k²."""
    return 3 * B * N * dim * dim + 2 * B * N * N * dim + B * dim * N * conv_kernel ** 2


class GaussianKernelAttention(nn.Module):
    """Exact tied-Gaussian-kernel attention (see the module docstring).

    Args:
        dim, num_heads, qkv_bias, attn_drop, proj_drop: as :class:`soft.SoftAttention`.
        conv_kernel: k of the local value conv, as SOFT's (0: none; odd).
        row_norm: divide each row of S by its sum.
    """

    variants = {
        "gaussian-exact": dict(defaults=dict(conv_kernel=9, row_norm=False), complexity=_COST,
                               description="ablation, O(N^2): the exact kernel SOFT approximates (S V, S = "
                                           "exp(-dist^2/2) of tied q, no landmarks, no inverse) + soft's 9x9 value "
                                           "conv"),
        "gaussian-exact-rownorm": dict(defaults=dict(conv_kernel=9, row_norm=True), complexity=_COST,
                                       description="ablation, O(N^2): gaussian-exact with each row of S divided by "
                                                   "its sum (a weighted average, as softmax's rows)"),
    }
    macs = staticmethod(gaussian_exact_macs)

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., conv_kernel: int = 9, row_norm: bool = False) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads} (a positive int)")
        if not isinstance(conv_kernel, int) or conv_kernel < 0 or (conv_kernel and conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be 0 (off) or an odd positive int, got {conv_kernel!r}")
        self.num_heads, self.head_dim, self.row_norm = num_heads, dim // num_heads, bool(row_norm)
        self.W_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.W_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.local_conv = LocalValueConv(num_heads, conv_kernel) if conv_kernel else None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, hw: tuple[int, int] | None = None) -> Tensor:
        """Args: x [B, N, C]; hw: token grid (H, W) for the conv (None: square). Returns [B, N, C]."""
        B, N, C = x.shape
        hw = resolve_hw(N, hw)
        h, d = self.num_heads, self.head_dim
        q_bar = self.W_q(x).reshape(B, N, h, d).transpose(1, 2) * d ** -0.25  # [B, h, N, d]
        v = self.W_v(x).reshape(B, N, h, d).transpose(1, 2)  # [B, h, N, d]
        S = gaussian_kernel(q_bar, q_bar)  # [B, h, N, N]
        if self.row_norm:
            S = S / S.sum(-1, keepdim=True)
        out = self.attn_drop(S) @ v  # [B, h, N, d]
        if self.local_conv is not None:
            out = out + self.local_conv(v, hw)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, row_norm={self.row_norm}"
