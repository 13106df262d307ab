"""The harness's SOFT entries are the layers they claim to be, and bad SOFT options stop a run before any cell."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from attnbench.cli import main
from attnbench.config import SweepConfig, validate
from attnbench.registry import get_attention
from soft import SoftAttention, soft_attention_macs
from soft.grid import square_grid

# N -> the stride that keeps m nearest 49 on the most nearly square grid (docs/methods.md, Landmarks)
STRIDES = {1024: 5, 2048: 7, 4096: 10}


@pytest.mark.parametrize("n", STRIDES, ids=str)
def test_soft_entry_is_the_papers_conv_layer(n):
    hw, s = square_grid(n), STRIDES[n]
    torch.manual_seed(0)
    entry_layer = get_attention("soft").build(192, 3, seq_len=n)
    hand = SoftAttention(192, 3, sampler="conv", sr_ratio=s, grid_policy="pad", conv_kernel=9, newton_iters=20,
                         ridge=0.01)
    shapes = [(k, p.shape) for k, p in entry_layer.named_parameters()]
    assert shapes == [(k, p.shape) for k, p in hand.named_parameters()]
    assert entry_layer.sampler.sr_ratio == s and entry_layer.num_landmarks(hw) in (49, 50)
    want = soft_attention_macs(1, n, 192, 3, hw, sampler="conv", sr_ratio=s, grid_policy="pad", conv_kernel=9)
    assert get_attention("soft").count_macs(1, n, 192, 3, hw=hw) == want
    hand.load_state_dict(entry_layer.state_dict())
    x = torch.randn(1, n, 192)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = entry_layer(x, hw=hw)
    assert fc.get_total_flops() == 2 * want
    with torch.no_grad():
        assert torch.equal(out, hand(x, hw=hw))


def test_soft_plus_and_soft_pool_entries():
    pp = get_attention("soft++").build(192, 3, seq_len=1024)
    assert pp.symmetric_norm and (pp.newton_variant, pp.ridge) == ("soft-norm", 0.0)
    assert pp.sampler.sr_ratio == 5 and pp.local_conv.conv.kernel_size == (9, 9)
    pool = get_attention("soft-pool").build(192, 3, seq_len=1024)
    assert type(pool.sampler).__name__ == "PoolLandmarks" and pool.local_conv.conv.kernel_size == (3, 3)
    assert pool.num_landmarks((32, 32)) == 49 and (pool.newton_variant, pool.ridge) == ("soft", 0.01)


def test_conv_sampler_without_a_stride_validates():
    # the README's example: the stride follows N, so no sr_ratio is needed
    cfg = SweepConfig(models=["soft", "softmax"], seq_lens=[1024, 2048, 4096], device="cpu",
                      hparams={"soft": {"landmarks": 64, "sampler": "conv"}})
    assert validate(cfg) == "cpu"


@pytest.mark.parametrize("pairs,needle", [
    (["soft.sr_ratio=5"], "accepted: sr_ratio in {1, 2, 4, 8, 16, 32}"),
    (["soft.newton_tol=0"], "newton_tol must be a positive finite number"),
    (["soft.newton_tol=-1e-3"], "newton_tol must be a positive finite number"),
    (["soft++.newton_tol=nan"], "newton_tol must be a positive finite number"),
    (["soft++.newton_variant=exact"], "accepted: soft, soft-norm"),
    (["soft.sampler=lsh"], "accepted: pool, conv, identity"),
], ids=["stride-does-not-tile", "tol-0", "tol-negative", "tol-nan", "variant", "sampler"])
def test_bad_soft_options_exit_2_before_any_cell(tmp_path, pairs, needle):
    model = pairs[0].split(".")[0]
    args = ["run", "-m", model, "--seq", "1024", "--device", "cpu", "--out", str(tmp_path)]
    for p in pairs:
        args += ["-p", p]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not any(tmp_path.iterdir()), "nothing may be written before the options are valid"
