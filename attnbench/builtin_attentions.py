"""The built-in attentions: SOFT from ``soft/`` and the peers from ``baselines/``, with sweep defaults.

Where N varies (the harness's sweeps), SOFT keeps a fixed number of landmarks (m = 49, pooled), so its cost is
linear in N; the paper's stride-s conv sampler (m = N / s^2) is ``--hparam soft.sampler=conv``.
"""
from __future__ import annotations

import baselines as B
import soft as S

from attnbench.registry import AttentionEntry, register_attention

_SOFT = dict(landmarks=49, sampler="pool", newton_iters=20, conv_kernel=3)

for entry in (
    AttentionEntry("soft", S.SoftAttention, {**_SOFT}, S.soft_attention_macs, "O(N m d + m^2 d + T m^3)",
                   description="SOFT: Gaussian kernel, Nystrom landmarks, Newton-Raphson pseudo-inverse"),
    AttentionEntry("soft++", S.SoftAttention, {**_SOFT, "symmetric_norm": True}, S.soft_attention_macs,
                   "O(N m d + m^2 d + T m^3)", description="SOFT++: SOFT with symmetric normalisation D^-1/2 A+ D^-1/2"),
    AttentionEntry("softmax", B.SoftmaxAttention, {"impl": "sdpa", "backend": "auto"}, B.softmax_macs,
                   "O(N^2 d)", description="exact softmax through F.scaled_dot_product_attention (fused kernels)"),
    AttentionEntry("softmax-math", B.SoftmaxAttention, {"impl": "explicit"}, B.softmax_macs, "O(N^2 d), N^2 memory",
                   description="exact softmax, explicit materialised N x N scores (what naive code pays)"),
    AttentionEntry("softmax-xformers", B.SoftmaxAttention, {"impl": "xformers"}, B.softmax_macs, "O(N^2 d)",
                   devices=("cuda",), description="exact softmax through xformers memory_efficient_attention (CUDA)"),
    AttentionEntry("performer", B.PerformerAttention, {"nb_features": 256}, B.performer_macs, "O(N m d)",
                   description="Performer FAVOR+: positive orthogonal random features"),
    AttentionEntry("linformer", B.LinformerAttention, {"k": 256}, B.linformer_macs, "O(N k d)",
                   needs_seq_len=True, description="Linformer: learned k x N projections of K and V (fixed N)"),
    AttentionEntry("nystromformer", B.NystromAttention, {"num_landmarks": 64, "pinv_iters": 6, "conv_kernel": 33},
                   B.nystrom_macs, "O(N m d + T m^3)",
                   description="Nystromformer: segment-mean landmarks, iterative pseudo-inverse, conv skip"),
    AttentionEntry("linear", B.LinearAttention, {}, B.linear_macs, "O(N d^2)",
                   description="linear attention, elu+1 features (Katharopoulos et al.)"),
    AttentionEntry("cosformer", B.CosformerAttention, {}, B.cosformer_macs, "O(N d^2)",
                   description="cosFormer: ReLU features with cos re-weighting"),
):
    register_attention(entry)
