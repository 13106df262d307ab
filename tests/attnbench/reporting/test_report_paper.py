"""The accuracy-and-cost table: training rows joined with the efficiency row of the model they trained."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from attnbench import reporting as R
from attnbench.results import ALL_COLUMNS
from report_frames import frame, soft_train_and_efficiency_rows


def test_paper_table_joins_training_rows_on_model_skeleton_n():
    eff = frame(models=["softmax", "soft"], ns=[196])
    eff["skeleton"] = "vit-tiny"
    train = pd.DataFrame([dict(model=m, skeleton="vit-tiny", seq_len=196, mode="train", status="ok", top1=t1,
                               top5=t5, epochs=300, dataset="imagenet", params=123_456, macs=196e3) for m, t1, t5 in
                          (("softmax", 72.2, 91.1), ("soft", 79.3, 94.6))], columns=ALL_COLUMNS)
    stopped = pd.DataFrame([dict(model="soft", scope="train", skeleton="vit-tiny", seq_len=196, mode="train",
                                 status="skipped", reason="stopped after epoch 3 of 300")], columns=ALL_COLUMNS)
    train = pd.concat([train, stopped], ignore_index=True)
    assert len(R.absolute_table(pd.concat([eff, train], ignore_index=True))) == len(eff)  # not efficiency cells
    p = R.paper_table(pd.concat([eff, train], ignore_index=True))
    assert list(p.model) == ["soft", "softmax"]  # best top-1 first
    assert p.set_index("model").loc["soft", "gmacs"] == pytest.approx(196e3 / 1e9)
    assert p.set_index("model").loc["softmax", "top5"] == 91.1
    md = R.render_markdown(pd.concat([eff, train], ignore_index=True))
    assert "## Accuracy and cost" in md and "79.3" in md


def test_paper_table_uses_the_trained_models_own_params_and_a_chosen_efficiency_row():
    eff, train = soft_train_and_efficiency_rows()
    for order in (eff, eff.iloc[::-1]):  # the choice does not depend on row order
        p = R.paper_table(pd.concat([order, train], ignore_index=True)).iloc[0]
        assert p.params_m == pytest.approx(5.7) and p.gmacs == pytest.approx(1.2)  # the training row's own
        # infer first, then the smallest batch, then fp32
        assert (p.eff_mode, p.eff_batch, p.eff_dtype) == ("infer", 1, "fp32")
        assert p.peak_mem_mib == pytest.approx(4) and p.latency_ms_median == 2.0 and p.throughput_per_s == 500.0
        assert p.params_differ and p.eff_params_m == pytest.approx(0.123456)
    md = R.render_markdown(pd.concat([eff, train], ignore_index=True))
    section = md[md.index("## Accuracy and cost"):]
    assert "samples/s" in section and " 500 * |" in section and " 4.00 * |" in section
    assert "Efficiency setting of those columns: batch 1, fp32, cpu, infer mode." in section
    assert "`*` efficiency row measured a model with different params (classifier head, patch size or hparams)" \
        in section
    # why the params/GMACs of this table are not those of the efficiency rows
    assert "classifier head (1,000 classes; training uses the dataset's)" in section
    same = train.assign(params=123_456)  # the same model: no mark
    p = R.paper_table(pd.concat([eff, same], ignore_index=True)).iloc[0]
    assert not p.params_differ
    assert "*" not in R.paper_display(R.paper_table(pd.concat([eff, same], ignore_index=True))).to_string()


def test_paper_table_prefers_the_efficiency_row_with_the_trained_hparams():
    eff, train = soft_train_and_efficiency_rows()
    other = eff.iloc[[3]].assign(hparams=json.dumps({"landmarks": 64}), peak_mem_bytes=9 * 2**20)
    p = R.paper_table(pd.concat([other, eff, train.assign(hparams=json.dumps({"landmarks": 49}))],
                                ignore_index=True)).iloc[0]
    assert p.peak_mem_mib == pytest.approx(4)
    p = R.paper_table(pd.concat([eff, other, train.assign(hparams=json.dumps({"landmarks": 64}))],
                                ignore_index=True)).iloc[0]
    assert p.peak_mem_mib == pytest.approx(9)
