"""The training protocol: fresh generated data per epoch, the 'learned' rule, the early stop, per-epoch diagnostics."""
from __future__ import annotations

import hashlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attnbench.learning import (binomial_sf, chance_pct, epochs_to_target, learn_threshold_pct, learned,
                                target_pct)
from attnbench.train.config import TrainConfig, resolve_recipe
from attnbench.train.data import FreshImages, build_datasets, parse_data_spec
from attnbench.train.longrange import render_longrange
from attnbench.train.pathfinder import render_pathfinder
from attnbench.train.shapes import render_shapes, split_stream

RENDERERS = {
    "longrange": lambda n, **kw: render_longrange(n, size=32, **kw),
    "shapes": lambda n, **kw: render_shapes(n, size=16, **kw),
    "pathfinder": lambda n, **kw: render_pathfinder(n, size=16, **kw),
}


def _hashes(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(im.tobytes()).hexdigest() for im in images}


@pytest.mark.parametrize("kind", sorted(RENDERERS))
def test_fresh_images_are_a_function_of_seed_and_epoch_and_never_validation(kind):
    draw, n = RENDERERS[kind], 8 if kind == "pathfinder" else 64  # pathfinder draws slowly
    e3, y3 = draw(n, seed=1, split="train", epoch=3)
    again, y_again = draw(n, seed=1, split="train", epoch=3)
    assert np.array_equal(e3, again) and np.array_equal(y3, y_again)  # deterministic per (seed, epoch)
    e4, _ = draw(n, seed=1, split="train", epoch=4)
    other_seed, _ = draw(n, seed=2, split="train", epoch=3)
    fixed, _ = draw(n, seed=1, split="train")
    val, _ = draw(n, seed=1, split="val")
    assert not _hashes(e3) & _hashes(e4)  # another epoch: other images
    assert not _hashes(e3) & _hashes(other_seed)
    assert not _hashes(e3) & _hashes(fixed)  # not the fixed set either
    for e in (0, 1, 3, 4):
        assert not _hashes(draw(n, seed=1, split="train", epoch=e)[0]) & _hashes(val)


def test_split_streams_are_disjoint_and_bad_epochs_refused():
    assert split_stream("train") == 0 and split_stream("val") == 1 and split_stream("train", 0) == 2
    assert len({split_stream("train"), split_stream("val"), *(split_stream("train", e) for e in range(5))}) == 7
    for split, epoch in (("val", 0), ("train", -1), ("train", True), ("test", None)):
        with pytest.raises(ValueError):
            split_stream(split, epoch)


def test_the_fresh_training_set_follows_set_epoch_and_validation_stays():
    spec = parse_data_spec("longrange:32:easy:n=32:val=16")
    cfg = resolve_recipe(TrainConfig(data="longrange:32"), True)
    assert cfg.fresh is True  # the generated recipes draw fresh data
    train, val, _ = build_datasets(spec, 32, cfg)
    assert isinstance(train, FreshImages)
    first, v0 = train.images.clone(), val.images.clone()
    train.set_epoch(2)
    assert not torch.equal(train.images, first) and torch.equal(val.images, v0)
    assert torch.equal(train.images, torch.from_numpy(render_longrange(32, size=32, difficulty="easy",
                                                                       split="train", epoch=2)[0]))
    train.set_epoch(0)
    assert torch.equal(train.images, first)
    fixed, _, _ = build_datasets(spec, 32, resolve_recipe(TrainConfig(data="longrange:32", fresh=False), True))
    assert not isinstance(fixed, FreshImages) and not hasattr(fixed, "set_epoch")


def test_binomial_tail_matches_the_sum_of_terms():
    for n, p in ((10, 0.5), (25, 1 / 6), (7, 0.9)):
        for k in range(n + 2):
            exact = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))
            assert binomial_sf(k, n, p) == pytest.approx(exact, rel=1e-12, abs=1e-300)
    assert binomial_sf(0, 5, 0.3) == 1.0 and binomial_sf(6, 5, 0.3) == 0.0


def test_learned_is_a_binomial_test_against_chance_at_the_validation_size():
    assert chance_pct(2) == 50.0 and chance_pct(6) == pytest.approx(16.667, abs=1e-3)
    assert not learned(50.0, 500, 2) and not learned(53.0, 500, 2)  # chance, and within its noise
    assert learned(56.0, 500, 2) and learned(100.0, 500, 2)
    assert not learned(56.0, 50, 2)  # the same top-1 on 50 images is not evidence
    threshold = learn_threshold_pct(500, 2)
    assert 55.0 < threshold < 56.0  # 500 images, p < 0.01: chance + 5.4 points
    assert learned(threshold, 500, 2) and not learned(threshold - 0.2, 500, 2)
    assert not learned(float("nan"), 500, 2) and not learned(90.0, 0, 2)


def test_epochs_to_target_is_the_first_epoch_at_the_halfway_line():
    target = target_pct(2, 100.0)
    assert target == 75.0
    assert epochs_to_target([50, 50, 62, 91, 100], target) == 4
    assert epochs_to_target([50, 51, 50], target) is None


def _run(history: list[float], patience: int | None, total: int = 12, n_val: int = 500):
    return SimpleNamespace(cfg=SimpleNamespace(patience=patience), history=[{"top1": t} for t in history],
                           stopped_early=None, total_epochs=total, info=SimpleNamespace(n_val=n_val, num_classes=2))


def test_early_stop_only_after_learning_and_patience_epochs_without_gain():
    from attnbench.train.loop import early_stop

    assert not early_stop(_run([50, 100, 100], 3))  # learned, best 2 epochs old
    run = _run([50, 100, 100, 100, 99], 3)
    assert early_stop(run) and "early stop after epoch 5 of 12" in run.stopped_early
    assert not early_stop(_run([50.0] * 11, 3))  # at chance: the whole budget, never an early stop
    assert not early_stop(_run([50, 100, 100, 100, 99], None))  # off
    assert not early_stop(_run([50, 100] + [100] * 10, 3))  # the budget is used up: not "early"
    assert not early_stop(_run([65, 50, 50, 50, 50], 3))  # a bump in epoch 1, back at chance: it may still jump
    assert early_stop(_run([65, 60, 58, 59], 3))  # learned and held above chance


def test_soft_diagnostics_see_the_global_share_from_landmarks_near_and_far():
    from soft import SoftAttention

    torch.manual_seed(0)
    layer = SoftAttention(32, 2, sampler="identity", conv_kernel=3, newton_iters=30).double().eval()
    with torch.no_grad():
        layer.local_conv.conv.weight.mul_(0.1)
    x = torch.randn(2, 16, 32, dtype=torch.float64)
    near = layer.diagnostics(x, (4, 4))  # every query is a landmark: the kernel term carries the output
    assert near["global_share"] > 0.9 and near["newton_residual"] < 1e-6
    assert near["landmark_norm"] == pytest.approx(near["query_norm"])

    class Far(torch.nn.Module):
        def forward(self, q_bar, hw):
            return q_bar + 20.0

        def num_landmarks(self, hw):
            return hw[0] * hw[1]

    layer.sampler = Far()
    far = layer.diagnostics(x, (4, 4))  # landmarks far from every query: K1 ~ 0, the local conv is all
    assert far["global_share"] < 1e-6 and far["kernel_mean"] < 1e-10


def test_softmax_like_entropy_is_one_for_uniform_attention_and_small_for_peaked():
    from attnbench.registry import get_attention

    x = torch.randn(2, 16, 24)
    for name in ("softmax", "performer", "softmax-tied"):
        layer = get_attention(name).build(24, 2, seq_len=16).eval()
        with torch.no_grad():
            layer.qkv.weight.zero_()
            layer.qkv.bias.zero_()
        assert layer.diagnostics(x)["entropy"] == pytest.approx(1.0, abs=1e-4), name  # q = k = 0: uniform
    peaked = get_attention("softmax").build(24, 2, seq_len=16).eval()
    with torch.no_grad():
        peaked.qkv.weight.mul_(30.0)
    assert peaked.diagnostics(x)["entropy"] < 0.3


def test_nystrom_diagnostics_report_the_pinv_residual():
    from attnbench.registry import get_attention

    x = torch.randn(2, 16, 24, dtype=torch.float64)
    exact = get_attention("nystromformer").build(24, 2, num_landmarks=4, pinv="exact").double().eval()
    assert exact.diagnostics(x)["pinv_residual"] < 1e-8
    few = get_attention("nystromformer").build(24, 2, num_landmarks=4, pinv_iters=1).double().eval()
    assert few.diagnostics(x)["pinv_residual"] > 1e-3


def test_the_harness_logs_the_mean_over_blocks_and_leaves_the_model_as_it_was():
    from attnbench.skeletons import build_skeleton
    from attnbench.train.diagnostics import attention_diagnostics

    sk = build_skeleton("vit-micro-d2", "soft", 64, num_classes=2, seed=0, drop_path_rate=0.0, in_chans=3,
                        patch_size=4)
    sk.model.train()
    images = torch.randn(3, 3, 32, 32)
    out = attention_diagnostics(sk.model, sk.attn_modules, images)
    assert sk.model.training
    per_block = []
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, a, k: seen.append((a[0], k["hw"])), with_kwargs=True)
             for m in sk.attn_modules]
    with torch.no_grad():
        sk.model.eval()(images)
    for h in hooks:
        h.remove()
    for m, (x, hw) in zip(sk.attn_modules, seen):
        per_block.append(m.diagnostics(x, hw)["global_share"])
    assert set(out) >= {"diag_global_share", "diag_newton_residual"}
    assert out["diag_global_share"] == pytest.approx(sum(per_block) / len(per_block))
    control = build_skeleton("vit-micro-d2", "no-mixing", 64, num_classes=2, seed=0, drop_path_rate=0.0,
                             in_chans=3, patch_size=4)
    assert attention_diagnostics(control.model, control.attn_modules, images) == {}  # no hook: nothing logged


def test_a_training_logs_diagnostics_and_the_protocol_columns(tmp_path):
    from attnbench.results import load_results
    from attnbench.train.loop import train

    result = train(TrainConfig(model="soft", skeleton="vit-micro", depth=1, data="longrange:16:easy:n=32:val=16",
                               epochs=2, batch_size=8, progress="plain", out=str(tmp_path), threads=1))
    log = (tmp_path / "soft" / "log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert {"diag_attn_grad_norm", "diag_global_share", "diag_newton_residual"} <= set(header) and len(log) == 3
    grad = [float(r.split(",")[header.index("diag_attn_grad_norm")]) for r in log[1:]]
    assert all(g > 0 for g in grad)
    row = load_results(tmp_path).iloc[0]
    assert row["epochs_budget"] == 2 and row["val_images"] == 16 and row["classes"] == 2 and row["fresh"] == 1
    assert row["log_dir"] == "soft"  # where a report finds this pair's log.csv
    assert row["best_top1"] == max(h["top1"] for h in result["history"])
    assert row["learned"] == int(learned(row["best_top1"], 16, 2))
