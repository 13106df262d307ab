"""Nyströmformer (Xiong et al., arXiv 2102.03902): softmax attention approximated through m landmarks.

Ŝ = softmax(Q K̃ᵀ/√d) · Z* · softmax(Q̃ Kᵀ/√d), Z* ≈ softmax(Q̃ K̃ᵀ/√d)⁺ (paper eq. 14), output Ŝ V + DConv(V).
Checked against mlpen/Nystromformer (T2T-ViT "exact" init, uneven segments) and lucidrains
``nystrom-attention`` (conv skip (33, 1) per head). Differences from lucidrains, on purpose:

- landmarks are means of consecutive segments of sizes ⌊N/m⌋ and ⌊N/m⌋+1 when m does not divide N (the first
  N mod m segments are the longer ones, as ``torch.tensor_split``); zero-padding at the front would make the pads
  act as real keys;
- the pseudo-inverse starts from Z₀ = Aᵀ / (‖A‖₁‖A‖_∞) taken per matrix, so a sample's output does not depend on
  the rest of the batch (mlpen#3);
- the pseudo-inverse runs in float32 (float64 kept) with autocast off;
- m > N is refused (a segment would be empty); m = N runs the Nyström path as is (each landmark is one token),
  which equals softmax exactly with ``pinv="exact"`` (A A⁺ A = A) and to ~1e-12 with >= 30 iterations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._common import (QKVAttention, check_choice, check_hparams, custom_backward_applies, projection_macs,
                               softmax_chain)

__all__ = ["NystromAttention", "segment_means", "iterative_pinv", "nystrom_attention", "nystrom_macs",
           "sequence_conv"]

PINVS = ("iterative", "exact")


def segment_means(x: Tensor, m: int) -> Tensor:
    """Means of m consecutive segments along the sequence, uneven when m does not divide N.

    Args:
        x: ``[B, h, N, d]``.
        m: number of segments, 1 <= m <= N.

    Returns:
        ``[B, h, m, d]``; segment j has ⌊N/m⌋+1 tokens for j < N mod m, ⌊N/m⌋ after.
    """
    *lead, N, d = x.shape
    N, d = int(N), int(d)  # plain numbers under jit.trace too
    l, r = divmod(N, m)  # r segments of l+1 tokens, then m-r of l
    long = x[..., : r * (l + 1), :].reshape(*lead, r, l + 1, d).mean(dim=-2)  # [B, h, r, d]
    short = x[..., r * (l + 1):, :].reshape(*lead, m - r, l, d).mean(dim=-2)  # [B, h, m-r, d]
    return torch.cat([long, short], dim=-2) if r else short


def iterative_pinv(A: Tensor, iters: int = 6) -> Tensor:
    """Moore–Penrose pseudo-inverse by Razavi et al.'s iteration (paper eq. 16), batched over leading dims.

    Z_{j+1} = ¼ Z_j (13I − A Z_j (15I − A Z_j (7I − A Z_j))), Z₀ = Aᵀ / (‖A‖₁ ‖A‖_∞) per matrix: 4 m x m
    matmuls per iteration.

    Args:
        A: ``[..., m, m]``.
        iters: number of iterations T.

    Returns:
        ``[..., m, m]``.
    """
    norm_1 = A.abs().sum(dim=-2).amax(dim=-1)  # max column sum, [...]
    norm_inf = A.abs().sum(dim=-1).amax(dim=-1)  # max row sum (1 after a softmax), [...]
    Z = A.transpose(-2, -1) / (norm_1 * norm_inf)[..., None, None]
    I = torch.eye(A.shape[-1], device=A.device, dtype=A.dtype)
    for _ in range(iters):
        AZ = A @ Z
        Z = 0.25 * Z @ (13 * I - AZ @ (15 * I - AZ @ (7 * I - AZ)))
    return Z

def _conv_layout(x: Tensor) -> Tensor:
    """``[B, h, N, d]`` as ``[B, h·d, 1, N]`` in channels-last memory order ([B, N, h·d]), a view when x's heads
    are already merged in memory (the layout the qkv projection gives)."""
    B, h, N, d = (int(s) for s in x.shape)
    return x.transpose(1, 2).reshape(B, 1, N, h * d).permute(0, 3, 1, 2)


def _conv_forward(v: Tensor, weight: Tensor) -> Tensor:
    B, h, N, d = (int(s) for s in v.shape)
    K = int(weight.shape[2])
    w = weight.reshape(h, 1, 1, K).repeat_interleave(d, dim=0)  # the head's filter for each of its d channels
    y = F.conv2d(_conv_layout(v), w, padding=(0, K // 2), groups=h * d)  # [B, h·d, 1, N], channels-last
    return y.permute(0, 2, 3, 1).reshape(B, N, h, d).transpose(1, 2)


class _SequenceConv(torch.autograd.Function):
    """The depthwise sequence conv with a fast weight gradient. oneDNN's weight gradient of a depthwise conv is
    ~30x slower than its forward here; this one is a blocked matmul: each block of R rows of ∂y against its R + K - 1
    rows of padded v, whose K diagonals hold the block's share of ∂w."""

    @staticmethod
    def forward(ctx, v: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(v, weight)
        return _conv_forward(v, weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: Tensor) -> tuple[Tensor, Tensor]:
        v, weight = ctx.saved_tensors
        B, h, N, d = (int(s) for s in v.shape)
        K = int(weight.shape[2])
        dv = _conv_forward(gy, weight.flip(2))  # stride 1, 'same' padding: the transpose is the flipped filter
        R = 64  # rows per block: the band is (R + K - 1) / K times the MACs of the direct sum, in one matmul
        n_blocks = -(-N // R)
        g = F.pad(gy, (0, 0, 0, n_blocks * R - N)).view(B, h, n_blocks, R, d)
        vp = F.pad(v, (0, 0, K // 2, n_blocks * R - N + K // 2)).contiguous()  # [B, h, n_blocks·R + K - 1, d]
        s = vp.stride()
        windows = vp.as_strided((B, h, n_blocks, R + K - 1, d), (s[0], s[1], R * s[2], s[2], s[3]))
        m = g @ windows.transpose(-2, -1)  # [B, h, n_blocks, R, R + K - 1]: ∂y rows · padded v rows
        ms = m.stride()
        band = m.as_strided((B, h, n_blocks, R, K), (ms[0], ms[1], ms[2], ms[3] + ms[4], ms[4]))  # [.., r, r + t]
        dw = band.sum(dim=(0, 2, 3)).view(h, 1, K, 1).to(weight.dtype)
        return dv, dw


def sequence_conv(v: Tensor, weight: Tensor) -> Tensor:
    """Depthwise conv of v ``[B, h, N, d]`` along the sequence, head i's filter ``weight[i, 0, :, 0]`` (length K,
    odd, 'same' zero padding) shared by its d columns: ``nn.Conv2d(h, h, (K, 1), groups=h)`` applied to v.

    Run as one depthwise conv over the h·d channels in channels-last order (~5x faster on a CPU than the
    h-channel conv, whose 3 channels oneDNN pads to a vector width); same weights, values and MACs.

    Returns:
        ``[B, h, N, d]``, a view of a ``[B, N, h, d]`` buffer.
    """
    if custom_backward_applies(v, weight):
        return _SequenceConv.apply(v, weight)
    return _conv_forward(v, weight)



def nystrom_attention(q: Tensor, k: Tensor, v: Tensor, *, num_landmarks: int, scale: float, pinv: str = "iterative",
                      pinv_iters: int = 6, return_residual: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Ŝ V with Ŝ = softmax(Q K̃ᵀ s) · pinv(softmax(Q̃ K̃ᵀ s)) · softmax(Q̃ Kᵀ s) (no conv skip).

    Args:
        q, k, v: ``[B, h, N, d]``.
        num_landmarks: m, 1 <= m <= N.
        scale: s = d^-½.
        pinv: "iterative" (Razavi, ``pinv_iters`` iterations) or "exact" (``torch.linalg.pinv``, an SVD).
        pinv_iters: iterations of the iterative pseudo-inverse.
        return_residual: also return the pinv residual ‖I - A Z‖_F per (sample, head), ``[B, h]`` (no grad; one
            extra m³ matmul).

    Returns:
        ``[B, h, N, d]``; or (output, residual) with ``return_residual=True``.
    """
    q_l = segment_means(q, num_landmarks) * scale  # Q̃ (scaled after the mean, so that no scaled copy of q is made)
    k_l = segment_means(k, num_landmarks)  # K̃ [B, h, m, d]
    k2 = (q_l @ k_l.transpose(-2, -1)).softmax(dim=-1)  # A_S [B, h, m, m]
    k3 = (q_l @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, h, m, N]
    dt = torch.promote_types(k2.dtype, torch.float32)
    with torch.autocast(device_type=k2.device.type, enabled=False):  # the iteration is ill-conditioned in bf16
        A = k2.to(dt)
        Z = torch.linalg.pinv(A) if pinv == "exact" else iterative_pinv(A, pinv_iters)
        if return_residual:
            with torch.no_grad():  # convergence diagnostic (docs/methods.md): 0 when Z inverts A
                eye = torch.eye(A.shape[-1], device=A.device, dtype=A.dtype)
                residual = torch.linalg.matrix_norm(eye - A @ Z)  # [B, h]
    Z = Z.to(k3.dtype)
    # (k1 Z)(k3 V) with k1 = softmax(Q K̃ᵀ s) [B, h, N, m] formed a row chunk at a time
    out = softmax_chain(q, k_l * scale, Z, k3 @ v)  # [B, h, N, d]
    return (out, residual) if return_residual else out


def nystrom_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, *,
                 num_landmarks: int = 64, pinv_iters: int = 6, conv_kernel: int = 33, pinv: str = "iterative",
                 track_residual: bool = False, **hparams) -> int:
    """MACs of one forward (docs/methods.md, with n′ = N: no padding).

    Bh·[Q K̃ᵀ Nmd + Q̃ K̃ᵀ m²d + Q̃ Kᵀ mNd + (k1 Z) Nm² + (k3 V) mNd + final Nmd + 4T m³] + conv c·BhNd,
    plus the projections. ``pinv="exact"`` is an SVD, which counts no matmul MACs (T term dropped).
    ``track_residual`` adds the residual's A Z: Bh·m³.
    """
    check_hparams("nystrom_macs", hparams, ())
    check_choice("pinv", pinv, PINVS)
    h, d, m, T = num_heads, dim // num_heads, num_landmarks, pinv_iters if pinv == "iterative" else 0
    attn = B * h * (4 * N * m * d + m * m * d + N * m * m + (4 * T + bool(track_residual)) * m ** 3)
    return projection_macs(B, N, dim) + attn + conv_kernel * B * h * N * d


class NystromAttention(QKVAttention):
    """Multi-head Nyström attention with segment-mean landmarks and a depthwise conv skip on V.

    Args:
        dim, num_heads, qkv_bias, proj_drop, device, dtype: as timm's ``Attention``.
        attn_drop: must be 0 (the three factors are never formed into an attention matrix).
        num_landmarks: m (default 64); forward raises ``ValueError`` when m > N.
        pinv_iters: iterations T of the iterative pseudo-inverse (paper: 6).
        conv_kernel: length of the depthwise (conv_kernel, 1) convolution of V along the sequence, one filter per
            head (lucidrains); odd, or 0 to turn the skip off.
        pinv: "iterative" (default) or "exact" (``torch.linalg.pinv``, for the m = N limit test).
        track_residual: after each forward, ``self.last_residual`` holds the largest pinv residual ‖I - A Z‖_F over
            batch and heads (a float; one extra m³ matmul and a host sync); otherwise it is None.
    """

    # Read by attnbench's registry (this package never imports it).
    variants = {"nystromformer": dict(defaults=dict(num_landmarks=64, pinv_iters=6, conv_kernel=33),
                                      complexity="O(N m d + T m^3)",
                                      description="Nystromformer: segment-mean landmarks, iterative pseudo-inverse, "
                                                  "conv skip",
                                      test_hparams=dict(num_landmarks=8, conv_kernel=5))}

    macs = staticmethod(nystrom_macs)  # the closed-form MACs of one forward

    @classmethod
    def not_supported_reason(cls, *, device: str, dtype: str, seq_len: int, hparams: dict,
                             hw: tuple[int, int] | None = None) -> str | None:
        """m > N: a segment would be empty (forward refuses it); None otherwise."""
        m = hparams.get("num_landmarks")
        if isinstance(m, int) and m > seq_len:
            return f"num_landmarks={m} exceeds N={seq_len} tokens (a segment would be empty; accepted: m <= N)"
        return None

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., num_landmarks: int = 64, pinv_iters: int = 6, conv_kernel: int = 33,
                 pinv: str = "iterative", track_residual: bool = False, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                         device=device, dtype=dtype, has_attn_weights=False)
        check_choice("pinv", pinv, PINVS)
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks={num_landmarks} must be >= 1")
        if pinv_iters < 0:
            raise ValueError(f"pinv_iters={pinv_iters} must be >= 0")
        if conv_kernel < 0 or (conv_kernel and conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel={conv_kernel} must be 0 (off) or odd (an even kernel would change N)")
        self.num_landmarks, self.pinv_iters, self.conv_kernel, self.pinv = num_landmarks, pinv_iters, conv_kernel, pinv
        self.track_residual, self.last_residual = bool(track_residual), None
        # V viewed as an image [B, h, N, d]: one (c, 1) filter per head, sliding along the sequence.
        self.conv = nn.Conv2d(num_heads, num_heads, (conv_kernel, 1), padding=(conv_kernel // 2, 0),
                              groups=num_heads, bias=False, device=device, dtype=dtype) if conv_kernel else None

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        N = q.shape[-2]
        if self.num_landmarks > N:
            raise ValueError(f"num_landmarks={self.num_landmarks} exceeds N={N} tokens (a segment would be empty); "
                             f"accepted: num_landmarks <= N")
        o = nystrom_attention(q, k, v, num_landmarks=self.num_landmarks, scale=self.scale, pinv=self.pinv,
                              pinv_iters=self.pinv_iters, return_residual=self.track_residual)
        o, residual = o if self.track_residual else (o, None)
        self.last_residual = None if residual is None else float(residual.max())
        if self.conv is not None:
            o = o + sequence_conv(v, self.conv.weight)  # = self.conv(v), faster
        return o

    def diagnose(self, q: Tensor, k: Tensor, v: Tensor) -> dict[str, float]:
        """``pinv_residual``: the largest ‖I - A Z‖_F over samples and heads, Z the pseudo-inverse it used."""
        _, residual = nystrom_attention(q, k, v, num_landmarks=self.num_landmarks, scale=self.scale, pinv=self.pinv,
                                        pinv_iters=self.pinv_iters, return_residual=True)
        return {"pinv_residual": float(residual.max())}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_landmarks={self.num_landmarks}, pinv={self.pinv!r}, "
                f"pinv_iters={self.pinv_iters}, conv_kernel={self.conv_kernel}")
