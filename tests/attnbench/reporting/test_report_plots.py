"""Plots: one PNG per quantity and mode, failed cells drawn, nothing drawn from nothing."""
from __future__ import annotations

import pandas as pd

from attnbench.reporting.plots import plot_all, plot_quantity
from report_frames import frame  # synthetic frames with known costs

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_all_writes_one_png_per_quantity_and_mode(tmp_path):
    df = pd.concat([frame(), frame(mode="train")], ignore_index=True)
    files = plot_all(df, tmp_path)
    assert sorted(p.name for p in files) == ["flops.png", "latency_infer.png", "latency_train.png",
                                             "memory_infer.png", "memory_train.png"]
    for p in files:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000


def test_failed_cells_are_drawn(tmp_path):
    clean = plot_quantity(frame(), "latency", tmp_path / "clean.png", title="t")
    failed = plot_quantity(frame(fail={("softmax", 4096): "oom"}), "latency", tmp_path / "failed.png", title="t")
    assert clean.read_bytes() != failed.read_bytes()
    allfail = frame(models=["softmax", "soft"], fail={("soft", n): "timeout" for n in (256, 512, 1024, 2048, 4096)})
    assert plot_quantity(allfail, "memory", tmp_path / "allfail.png") is not None


def test_several_combinations_get_suffixes_and_empty_draws_nothing(tmp_path):
    a, b = frame(), frame()
    b["skeleton"] = "vit-tiny"
    names = {p.name for p in plot_all(pd.concat([a, b], ignore_index=True), tmp_path)}
    assert "latency_infer_layer-b1-fp32-cpu.png" in names and "flops_vit-tiny-b1-fp32-cpu.png" in names
    nothing = frame(models=["soft"], fail={("soft", n): "error" for n in (256, 512, 1024, 2048, 4096)})
    assert plot_quantity(nothing, "latency", tmp_path / "none.png") is None
    assert plot_all(frame().iloc[:0], tmp_path / "x") == []
