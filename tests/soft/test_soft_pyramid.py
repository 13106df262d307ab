"""The SOFT pyramid: timm registry, swappable attention, params and FLOPs vs the official README."""
from __future__ import annotations

import pytest
import timm
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

import soft  # noqa: F401  (registers soft_* in timm)
from soft import SoftAttention, SoftPyramid, soft_attention_mac_breakdown

# README: params (M), FLOPs (G) at 224²
PAPER = {"tiny": (13, 1.9), "small": (24, 3.3), "medium": (45, 7.2), "large": (64, 11.0), "huge": (87, 16.3)}


def _soft_layers(model):
    return [m for m in model.modules() if isinstance(m, SoftAttention)]


def measure(size: str) -> dict[str, float]:
    """Params and fvcore MACs at 224², plus the README's convention (fvcore blind to the official Newton
    Function and CUDA distance op: our count minus those parts)."""
    model = timm.create_model(f"soft_{size}").eval()
    fa = FlopCountAnalysis(model, torch.randn(1, 3, 224, 224))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    with torch.no_grad():
        total = fa.total()
    hidden = 0
    for layer, (n, s, k) in zip(_soft_layers(model), _layer_grids(model)):
        parts = soft_attention_mac_breakdown(1, n, layer.dim, layer.num_heads, sampler="conv", sr_ratio=s,
                                             conv_kernel=k)
        hidden += parts["newton"] + parts["kernels"]
    return dict(params=sum(p.numel() for p in model.parameters()) / 1e6, macs=total / 1e9,
                macs_readme=(total - hidden) / 1e9)


def _layer_grids(model):
    for i, stage in enumerate(model.stages[:3]):
        for _ in stage:
            yield (56 >> i) ** 2, (8, 4, 2)[i], (9, 5, 3)[i]


def _check(size: str) -> None:
    got, (params, flops) = measure(size), PAPER[size]
    print(size, got)
    assert abs(got["params"] / params - 1) <= 0.03, f"{size}: {got['params']:.2f} M params vs {params} M"
    assert abs(got["macs_readme"] / flops - 1) <= 0.05, f"{size}: {got['macs_readme']:.2f} GMACs vs {flops} G"
    assert got["macs"] > got["macs_readme"]  # our count includes the Newton iterations


def test_tiny_params_and_flops_match_readme():
    _check("tiny")


@pytest.mark.heavy
@pytest.mark.parametrize("size", ["small", "medium", "large", "huge"])
def test_larger_sizes_params_and_flops_match_readme(size):
    _check(size)


def test_tiny_forward_shapes_and_stage_landmarks():
    model = timm.create_model("soft_tiny", num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 10)
    layers = _soft_layers(model)
    assert [l.num_landmarks(((56 >> i),) * 2) for i, l in zip([0, 1, 1, 2, 2, 2], layers)] == [49] * 6
    assert isinstance(model.stages[3][0].attn, nn.Module) and not _soft_layers(model.stages[3])


def test_other_resolution_resizes_position_embeddings():
    model = timm.create_model("soft_tiny", num_classes=0).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 512)  # 256 = 8·32: conv landmarks tile exactly


class _Recorder(nn.Module):
    """A peer attention: records its constructor kwargs and the hw it is called with."""

    def __init__(self, dim, num_heads, **kwargs):
        super().__init__()
        self.init = dict(dim=dim, num_heads=num_heads, **kwargs)
        self.hw = None

    def forward(self, x, hw=None):
        self.hw = hw
        return x


def test_other_attention_gets_only_dim_heads_bias_and_its_kwargs():
    model = SoftPyramid(num_classes=0, attn_layer=_Recorder, attn_kwargs=[{"foo": 1}, {}, {"bar": 3}]).eval()
    recs = [m for m in model.modules() if isinstance(m, _Recorder)]
    assert recs[0].init == dict(dim=64, num_heads=2, qkv_bias=True, foo=1)
    assert recs[1].init == dict(dim=128, num_heads=4, qkv_bias=True)
    assert recs[-1].init == dict(dim=320, num_heads=10, qkv_bias=True, bar=3)
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert [r.hw for r in recs] == [(56, 56), (28, 28), (28, 28), (14, 14), (14, 14), (14, 14)]


def test_soft_attn_kwargs_merge_over_stage_defaults():
    model = timm.create_model("soft_tiny", attn_kwargs=[dict(sampler="pool", landmarks=49), {},
                                                        dict(symmetric_norm=True)])
    layers = _soft_layers(model)
    assert layers[0].sampler.__class__.__name__ == "PoolLandmarks" and layers[0].local_conv.conv.kernel_size == (9, 9)
    assert layers[1].sampler.sr_ratio == 4 and layers[1].local_conv.conv.kernel_size == (5, 5)
    assert layers[-1].symmetric_norm and layers[-1].sampler.sr_ratio == 2


@pytest.mark.parametrize("kw,err,match", [
    (dict(attn_kwargs=[{}]), ValueError, "3 dicts"),
    (dict(attn_kwargs=[{"landmark": 3}, {}, {}]), TypeError, "landmark"),
    (dict(pretrained=True), ValueError, "pretrained"),
], ids=["attn-kwargs-length", "unknown-attn-kwarg", "pretrained"])
def test_bad_arguments_raise(kw, err, match):
    with pytest.raises(err, match=match):
        timm.create_model("soft_tiny", **kw)


def test_official_code_small_is_registered_beside_the_readme_small():
    readme, code = timm.create_model("soft_small"), timm.create_model("soft_small_d20")
    assert [len(s) for s in readme.stages] == [1, 3, 7, 4] and [len(s) for s in code.stages] == [1, 3, 20, 4]
    assert round(sum(p.numel() for p in readme.parameters()) / 1e6, 1) == 24.1
    assert round(sum(p.numel() for p in code.parameters()) / 1e6, 1) == 38.9
