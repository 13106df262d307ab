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

from baselines._common import (DIAGNOSTICS_MAX_N, QKVAttention, check_choice, check_hparams, custom_backward_applies,
                               diagnostic_samples, entropy_ratio, keeps, projection_macs, tiles)

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


def _exp_features(x: Tensor, w_scaled_t: Tensor, half_s2: float, c: Tensor | None) -> tuple[Tensor, Tensor]:
    """E = exp(W x̂ − ‖x̂‖²/2 − c) for the rows x ``[B, h, n, d]``, in place in the one buffer the matmul makes.

    ``w_scaled_t`` is (W·d^-¼)ᵀ ``[d, m]`` (the x̂ = x·d^-¼ pre-scaling folded into W), ``half_s2`` = d^-½ / 2. ``c``
    None takes the per-row max of W x̂ (queries); a given ``c`` ``[B, h, 1, 1]`` is used as is (keys). Returns
    (E ``[B, h, n, m]``, c).
    """
    z = x @ w_scaled_t  # W x̂
    if c is None:
        c = z.amax(dim=-1, keepdim=True)
    shift = (x * x).sum(dim=-1, keepdim=True).mul_(half_s2).add_(c)  # ‖x̂‖²/2 + c, [B, h, n, 1]
    return z.sub_(shift).exp_(), c


def softmax_kernel(x: Tensor, projection: Tensor, *, is_query: bool, eps: float = 1e-6) -> Tensor:
    """Positive random features φ(x) = m^-½ (exp(W x̂ − ‖x̂‖²/2 − c) + eps), x̂ = x·d^-¼ (paper Lemma 1).

    The stabiliser c is the max of W x̂ over features per row for queries and over features *and* sequence per
    (batch, head) for keys: a per-row factor for queries and a per-(batch, head) factor for keys both cancel in
    D⁻¹ Q′(K′ᵀ V) (eps aside). :func:`favor_attention` never forms φ whole; this is the explicit form.

    Args:
        x: ``[B, h, N, d]`` queries or keys.
        projection: W ``[m, d]``.
        is_query: choose the query (per-row) or key (per-(batch, head)) stabiliser.
        eps: added after the exp, as google-research does (keeps the denominator positive; a small bias).

    Returns:
        ``[B, h, N, m]``.
    """
    d, m = int(x.shape[-1]), int(projection.shape[0])  # int(): plain numbers under jit.trace too
    w_t = (projection * d ** -0.25).t()
    c = None if is_query else (x @ w_t).amax(dim=(-2, -1), keepdim=True)
    e, _ = _exp_features(x, w_t, d ** -0.5 / 2, c)
    return e.add_(eps).mul_(m ** -0.5)


def _favor_forward(q: Tensor, k: Tensor, v: Tensor, w_t: Tensor, eps: float
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple[list[Tensor], list[Tensor]] | None]:
    """D⁻¹ Q′(K′ᵀ V) tile by tile; returns (out, den, [K′ᵀV | K′ᵀ1] ``[B, h, m, d+1]``, key stabiliser c_k,
    the tiles' (E_K, E_Q) when :func:`keeps` says so (kept for the backward), else None).

    With E = exp(·) and φ = m^-½ (E + eps): the m^-½ cancels between numerator and denominator, and the eps term
    enters as rank-one corrections, (E + eps·1 1ᵀ) A = E A + eps·1 (1ᵀ A), so that E + eps is never formed.
    The key stabiliser (one max per (batch, head) over the whole sequence) is kept online: a (batch, head)'s sums
    are rescaled by exp(c_old − c_new) when a later tile raises its max. ``out`` is a ``[B, h, N, d]`` view of a
    ``[B, N, h, d]`` buffer, so that merging the heads afterwards is free.
    """
    B, h, N, d = (int(s) for s in q.shape)
    m = int(w_t.shape[1])
    half_s2 = d ** -0.5 / 2
    ts = tiles(B, h, N, m)
    keep = keeps(B, h, N, m)
    kept_k: list[tuple[Tensor, Tensor]] = []  # (E_K, the stabiliser it was made with) per tile, when kept
    kept_q: list[Tensor] = []
    kv_aug = q.new_empty(B, h, m, d + 1)  # [Σ E_K V | Σ E_K], then [K′ᵀV | K′ᵀ1] / m^-½
    c_k = q.new_empty(B, h, 1, 1)
    for t in ts:
        bh = t[:2]
        z = k[t] @ w_t
        c = z.amax(dim=(-2, -1), keepdim=True)
        first = t[2].start == 0  # a (batch, head)'s tiles come in row order
        if not first:
            c = torch.maximum(c_k[bh], c)
            kv_aug[bh].mul_((c_k[bh] - c).exp_())  # earlier tiles' features to the new max
        c_k[bh].copy_(c)
        shift = (k[t] * k[t]).sum(dim=-1, keepdim=True).mul_(half_s2).add_(c)
        e = z.sub_(shift).exp_()  # E_K rows of the tile, [b, h, n, m]
        if keep:
            kept_k.append((e, c))
        part = torch.cat([e.transpose(-2, -1) @ v[t], e.sum(dim=-2).unsqueeze(-1)], dim=-1)
        kv_aug[bh].copy_(part) if first else kv_aug[bh].add_(part)
    if eps:
        kv_aug[..., :d].add_(v.sum(dim=-2, keepdim=True), alpha=eps)  # Σ_n (E_n + eps) v_n
        kv_aug[..., d:].add_(eps * N)
    q_corr = kv_aug.sum(dim=-2, keepdim=True).mul_(eps) if eps else None  # eps·1ᵀ kv_aug, [B, h, 1, d+1]
    out = q.new_empty(B, N, h, d).transpose(1, 2)
    den = q.new_empty(B, h, N, 1)
    for t in ts:
        bh = t[:2]
        e, _ = _exp_features(q[t], w_t, half_s2, None)
        if keep:
            kept_q.append(e)
        o = e @ kv_aug[bh]  # [Q′K′ᵀV | Q′K′ᵀ1] rows of the tile
        if q_corr is not None:
            o.add_(q_corr[bh])
        den[t] = o[..., d:]
        out[t] = o[..., :d] / o[..., d:]  # not div(out=): a traced forward may carry gradients
    if not keep:
        return out, den, kv_aug, c_k, None
    rescale = any(t[2].start for t in ts)  # a (batch, head) had more than one tile: E_K to its final stabiliser
    return out, den, kv_aug, c_k, ([e.mul_((c - c_k[t[:2]]).exp_()) if rescale else e
                                    for t, (e, c) in zip(ts, kept_k)], kept_q)


class _Favor(torch.autograd.Function):
    """FAVOR+ with a backward that recomputes the features tile by tile instead of storing them.

    The generic backward keeps every [B, h, N, m] temporary of the forward (four of them); this one stores only
    ``[B, h, N, d]`` tensors and recomputes E_Q and E_K per tile, in cache (2 N m d more MACs, no big buffers),
    except at small N (:func:`keeps`), where it keeps them.
    The projection is a fixed random draw and gets no gradient.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, w_t: Tensor, eps: float) -> Tensor:
        out, den, kv_aug, c_k, ctx.kept = _favor_forward(q, k, v, w_t, eps)
        ctx.save_for_backward(q, k, v, w_t, out, den, kv_aug, c_k)
        ctx.eps = eps
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        q, k, v, w_t, out, den, kv_aug, c_k = ctx.saved_tensors
        eps = ctx.eps
        B, h, N, d = (int(s) for s in q.shape)
        half_s2 = d ** -0.5 / 2
        ts = tiles(B, h, N, int(w_t.shape[1]))
        w_aug = torch.cat([w_t.t(), torch.ones_like(w_t[:1].t())], dim=1)  # [W·d^-¼ | 1], [m, d+1]
        # [B, N, h, d] buffers: each reaches its Linear as a [B, N, C] view
        dq, dk, dv = (q.new_empty(B, N, h, d).transpose(1, 2) for _ in range(3))
        kept, ctx.kept = ctx.kept, None  # the tiles' (E_K, E_Q) at small N; recomputed otherwise
        dkv_aug = torch.zeros_like(kv_aug)
        do_sum = q.new_zeros(B, h, 1, d + 1)
        for j, t in enumerate(ts):  # queries: o = E_Q kv_aug (+ eps 1 1ᵀ kv_aug), out = o[:d] / o[d]
            bh = t[:2]
            gt, dent = g[t], den[t]
            do = gt.new_empty(*gt.shape[:-1], d + 1)
            torch.div(gt, dent, out=do[..., :d])  # ∂/∂num = g / den
            torch.sum(do[..., :d] * out[t], dim=-1, keepdim=True, out=do[..., d:]).neg_()  # ∂/∂den
            e = kept[1][j] if kept else _exp_features(q[t], w_t, half_s2, None)[0]
            de = do @ kv_aug[bh].transpose(-2, -1)  # ∂/∂E_Q rows of the tile
            dkv_aug[bh].add_(e.transpose(-2, -1) @ do)
            if eps:
                do_sum[bh].add_(do.sum(dim=-2, keepdim=True))
            r = de.mul_(e) @ w_aug  # [∂z W·d^-¼ | Σ_m ∂z], ∂z = ∂E ⊙ E
            torch.addcmul(r[..., :d], r[..., d:], q[t], value=-2 * half_s2, out=dq[t])
        if eps:
            dkv_aug.add_(do_sum, alpha=eps)  # the eps·1 1ᵀ part of Q′
        dkv, dksum = dkv_aug[..., :d], dkv_aug[..., d:].transpose(-2, -1)  # [B, h, m, d], [B, h, 1, m]
        dv_corr = dkv.sum(dim=-2, keepdim=True).mul_(eps) if eps else None
        for j, t in enumerate(ts):  # keys: kv_aug = Σ_n (E_K,n + eps) [v_n | 1]
            bh = t[:2]
            e = kept[0][j] if kept else _exp_features(k[t], w_t, half_s2, c_k[bh])[0]
            de = (v[t] @ dkv[bh].transpose(-2, -1)).add_(dksum[bh])  # ∂/∂E_K rows of the tile
            torch.matmul(e, dkv[bh], out=dv[t])
            if dv_corr is not None:
                dv[t].add_(dv_corr[bh])
            r = de.mul_(e) @ w_aug
            torch.addcmul(r[..., :d], r[..., d:], k[t], value=-2 * half_s2, out=dk[t])
        return dq, dk, dv, None, None


def favor_attention(q: Tensor, k: Tensor, v: Tensor, projection: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Non-causal FAVOR+: D⁻¹ Q′(K′ᵀ V), D = diag(Q′ K′ᵀ 1_N) (paper eq. 5), in O(N m d), Q′ = φ(Q), K′ = φ(K).

    Computed in tiles without forming Q′ or K′ whole (see :func:`_favor_forward`); with gradients it runs
    as one autograd Function whose backward recomputes the features per tile (at large N). The projection gets no
    gradient.

    Args:
        q, k, v: ``[B, h, N, d]``.
        projection: W ``[m, d]``.
        eps: see :func:`softmax_kernel`.

    Returns:
        ``[B, h, N, d]``.
    """
    w_t = (projection.detach() * int(q.shape[-1]) ** -0.25).t()  # fold x̂ = x·d^-¼ into W
    if custom_backward_applies(q, k, v):
        return _Favor.apply(q, k, v, w_t, eps)
    return _favor_forward(q, k, v, w_t, eps)[0]


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

    def diagnose(self, q: Tensor, k: Tensor, v: Tensor) -> dict[str, float]:
        """``entropy``: of the implied map D⁻¹ Q′ K′ᵀ (rows sum to 1, entries positive) over log N."""
        B, h, N, _ = q.shape
        if N > DIAGNOSTICS_MAX_N:
            return {}
        q, k = q[:diagnostic_samples(B, h, N)], k[:diagnostic_samples(B, h, N)]
        proj = self.projection.to(torch.promote_types(q.dtype, torch.float32))
        A = softmax_kernel(q.to(proj.dtype), proj, is_query=True, eps=self.eps) @ softmax_kernel(
            k.to(proj.dtype), proj, is_query=False, eps=self.eps).transpose(-2, -1)
        return {"entropy": entropy_ratio(A / A.sum(-1, keepdim=True))}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, nb_features={self.nb_features}, redraw_interval={self.redraw_interval}, "
                f"seed={self.seed}, eps={self.eps}")
