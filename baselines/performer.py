"""Performer / FAVOR+ (Choromanski et al., arXiv 2009.14794): softmax attention through positive orthogonal
random features, linear in N.

Checked against google-research ``performer/fast_attention/jax/fast_attention.py`` (feature map, stabiliser,
eps after the exp) and lucidrains ``performer-pytorch`` (d^-¼ pre-scaling, redraw every 1000 training calls,
denominator Q′·ΣK′). Differences, on purpose:

- the key stabiliser is one max per (batch, head), over features and sequence, the query stabiliser one max per
  row; both cancel in the ratio (a per-key max does not: docs/methods.md, Performer);
- the stabilisers are detached: they cancel, so their gradient is zero up to the eps bias;
- the features are computed in float32 (float64 stays float64) with autocast off: exp overflows in fp16
  (xformers #96);
- the projection is redrawn every ``redraw_interval`` training forward calls from a seeded ``torch.Generator``,
  never in eval, so evaluation is deterministic.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from baselines._common import QKVAttention, check_choice, check_hparams, projection_macs

__all__ = ["PerformerAttention", "gaussian_orthogonal_random_matrix", "softmax_kernel", "favor_attention",
           "performer_macs"]


def gaussian_orthogonal_random_matrix(m: int, d: int, *, scaling: int = 0, orthogonal: bool = True,
                                      generator: torch.Generator | None = None) -> Tensor:
    """The projection W ``[m, d]`` of FAVOR+ (paper §2.4, ORF).

    Stacks ⌈m/d⌉ blocks, each the transposed Q factor of the QR of a d x d Gaussian, and truncates the last; rows
    within a block are exactly orthogonal.

    Args:
        m: number of features (rows).
        d: head width (columns).
        scaling: 0: row norms of fresh Gaussian rows (χ_d), so each row is marginally N(0, I_d);
            1: every row has norm √d.
        orthogonal: False draws iid Gaussian rows (the unstructured estimator), for comparison.
        generator: the CPU generator that makes the draw reproducible.

    Returns:
        float32 ``[m, d]`` on the CPU.
    """
    check_choice("ortho_scaling", scaling, (0, 1))
    if not orthogonal:
        return torch.randn(m, d, generator=generator)
    blocks = []
    for _ in range(math.ceil(m / d)):
        g = torch.randn(d, d, generator=generator)
        qf, r = torch.linalg.qr(g)
        # Fix the QR sign ambiguity so the block is Haar-distributed, not biased by LAPACK's convention.
        qf = qf * torch.sign(torch.diagonal(r)).unsqueeze(0)
        blocks.append(qf.T)
    w = torch.cat(blocks)[:m]  # [m, d], rows unit norm
    if scaling == 0:
        norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)
    else:
        norms = torch.full((m, 1), math.sqrt(d))
    return w * norms


def softmax_kernel(x: Tensor, projection: Tensor, *, is_query: bool, eps: float = 1e-6) -> Tensor:
    """Positive random features φ(x) = m^-½ (exp(W x̂ − ‖x̂‖²/2 − c) + eps), x̂ = x·d^-¼ (paper Lemma 1).

    The stabiliser c is the max of W x̂ over features per row for queries and over features *and* sequence per
    (batch, head) for keys: a per-row factor for queries and a per-(batch, head) factor for keys both cancel in
    D⁻¹ Q′(K′ᵀ V) (eps aside).

    Args:
        x: ``[B, h, N, d]`` queries or keys.
        projection: W ``[m, d]``.
        is_query: choose the query (per-row) or key (per-(batch, head)) stabiliser.
        eps: added after the exp, as google-research does (keeps the denominator positive; a small bias).

    Returns:
        ``[B, h, N, m]``.
    """
    d, m = int(x.shape[-1]), int(projection.shape[0])  # int(): plain numbers under jit.trace too
    x = x * d ** -0.25  # fold 1/√d into q and k
    wx = x @ projection.t()  # [B, h, N, m]
    half_norm = (x * x).sum(dim=-1, keepdim=True) / 2  # ‖x̂‖²/2, [B, h, N, 1]
    dims = (-1,) if is_query else (-2, -1)
    c = wx.detach().amax(dim=dims, keepdim=True)
    return m ** -0.5 * (torch.exp(wx - half_norm - c) + eps)


def favor_attention(q: Tensor, k: Tensor, v: Tensor, projection: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Non-causal FAVOR+: D⁻¹ Q′(K′ᵀ V), D = diag(Q′ K′ᵀ 1_N) (paper eq. 5), in O(N m d).

    Args:
        q, k, v: ``[B, h, N, d]``.
        projection: W ``[m, d]``.
        eps: see :func:`softmax_kernel`.

    Returns:
        ``[B, h, N, d]``.
    """
    q_f = softmax_kernel(q, projection, is_query=True, eps=eps)  # Q′ [B, h, N, m]
    k_f = softmax_kernel(k, projection, is_query=False, eps=eps)  # K′ [B, h, N, m]
    kv = k_f.transpose(-2, -1) @ v  # K′ᵀ V [B, h, m, d]
    num = q_f @ kv  # [B, h, N, d]
    den = q_f @ k_f.sum(dim=-2).unsqueeze(-1)  # Q′ (K′ᵀ 1_N) [B, h, N, 1]
    return num / den


def performer_macs(B: int, N: int, dim: int, num_heads: int, hw: tuple[int, int] | None = None, *,
                   nb_features: int = 256, **hparams) -> int:
    """MACs of one forward: projections + feature maps 2BhNmd + K′ᵀV BhNmd + Q′(·) BhNmd + denominator BhNm.

    = 4BND² + 4BNmD + BhNm (lucidrains' count; docs/methods.md, Performer).
    """
    check_hparams("performer_macs", hparams, ("redraw_interval", "seed", "eps", "ortho_scaling", "orthogonal"))
    m = nb_features
    return projection_macs(B, N, dim) + 4 * B * N * m * dim + B * num_heads * N * m


class PerformerAttention(QKVAttention):
    """Multi-head FAVOR+ attention with positive orthogonal random features.

    Args:
        dim, num_heads, qkv_bias, proj_drop, device, dtype: as timm's ``Attention``.
        attn_drop: must be 0 (there is no attention matrix to drop).
        nb_features: m, the number of random features (paper default 256).
        redraw_interval: redraw the projection before every ``redraw_interval``-th training forward call since
            the last draw (lucidrains' 1000); None never redraws. Eval mode never redraws.
        seed: seeds the module's ``torch.Generator`` every draw comes from; None (default) takes it from torch's
            global RNG at construction, so that each layer of a model draws its own features (reproducibly under
            ``torch.manual_seed``) instead of every layer sharing one W.
        eps: added to every feature after the exp (google-research's 1e-6; 0 for an unbiased estimator).
        ortho_scaling: 0: row norms χ_d (as Gaussian rows); 1: every row norm √d.
        orthogonal: orthogonal blocks (ORF, default) or iid Gaussian rows.

    The projection W ``[m, d]`` is a registered buffer, so ``.to()`` and ``state_dict`` carry it. Draw i is a pure
    function of (seed, i), and (seed, draws so far, training calls since the last draw) is an int64 buffer too, so
    a resumed run redraws exactly when, and what, an uninterrupted one would.
    """

    # Read by attnbench's registry (this package never imports it).
    variants = {"performer": dict(defaults=dict(nb_features=256), complexity="O(N m d)",
                                  description="Performer FAVOR+: positive orthogonal random features",
                                  test_hparams=dict(nb_features=32))}

    macs = staticmethod(performer_macs)  # the closed-form MACs of one forward

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., nb_features: int = 256, redraw_interval: int | None = 1000,
                 seed: int | None = None,
                 eps: float = 1e-6, ortho_scaling: int = 0, orthogonal: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                         device=device, dtype=dtype, has_attn_weights=False)
        if nb_features < 1:
            raise ValueError(f"nb_features={nb_features} must be >= 1")
        if redraw_interval is not None and redraw_interval < 1:
            raise ValueError(f"redraw_interval={redraw_interval} must be >= 1 or None (never redraw)")
        if eps < 0:
            raise ValueError(f"eps={eps} must be >= 0")
        check_choice("ortho_scaling", ortho_scaling, (0, 1))
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.nb_features, self.redraw_interval, self.seed, self.eps = nb_features, redraw_interval, seed, eps
        self.ortho_scaling, self.orthogonal = ortho_scaling, orthogonal
        self.draws, self.calls_since_redraw = 0, 0  # python mirrors of feature_state: no device sync per call
        self.register_buffer("feature_state", torch.tensor([seed, 0, 0], dtype=torch.int64, device=device))
        self.register_buffer("projection", self._draw(0).to(device=device), persistent=True)

    def _draw(self, i: int) -> Tensor:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + i) % 2**63)
        return gaussian_orthogonal_random_matrix(self.nb_features, self.head_dim, scaling=self.ortho_scaling,
                                                 orthogonal=self.orthogonal, generator=g)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.seed, self.draws, self.calls_since_redraw = (int(v) for v in self.feature_state.tolist())

    @torch.no_grad()
    def redraw_projection(self) -> None:
        """Draw the next W of this module's seeded sequence, in place (keeps device and dtype)."""
        self.draws += 1
        self.projection.copy_(self._draw(self.draws))
        self.calls_since_redraw = 0
        self.feature_state[1:] = torch.tensor([self.draws, 0])

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.training and self.redraw_interval is not None:
            if self.calls_since_redraw >= self.redraw_interval:
                self.redraw_projection()
            self.calls_since_redraw += 1
            self.feature_state[2] += 1
        out_dtype = v.dtype
        # exp features overflow in half precision: float32 (float64 kept), with autocast off.
        dt = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(device_type=q.device.type, enabled=False):
            o = favor_attention(q.to(dt), k.to(dt), v.to(dt), self.projection.to(dt), eps=self.eps)
        return o.to(out_dtype)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, nb_features={self.nb_features}, redraw_interval={self.redraw_interval}, "
                f"seed={self.seed}, eps={self.eps}")
