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


def _legend_styles(fig) -> dict[str, tuple]:
    """Legend label (without its overlap note) -> (colour, marker) as drawn."""
    handles = fig.axes[0].get_legend().legend_handles
    return {h.get_label().split(" (")[0]: (h.get_color(), h.get_marker()) for h in handles}


def test_every_figure_of_a_run_gives_a_model_the_same_colour_and_marker(monkeypatch, tmp_path):
    from attnbench.reporting import plots

    a, b = frame(), frame(mode="train")
    extra = [a[a.model == "soft"].assign(model=m) for m in ("linear", "cosformer")]
    # cosformer only in infer: without one style map for the run, linear would change colour between figures
    df = pd.concat([a, extra[0], extra[1], b, extra[0].assign(mode="train")], ignore_index=True)
    seen = []
    real = plots.draw_quantity

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        seen.append(_legend_styles(fig))
        return fig

    monkeypatch.setattr(plots, "draw_quantity", spy)
    plots.plot_all(df, tmp_path)
    assert len(seen) == 5 and any("cosformer" not in s for s in seen)
    for model in ("softmax", "soft", "performer", "linformer", "linear", "cosformer"):
        styles = {s[model] for s in seen if model in s}
        assert len(styles) == 1, (model, styles)
    assert len({s for fig in seen for s in fig.values()}) == 6  # six models, six distinct styles
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flops.png", "latency_infer.png", "latency_train.png",
                                                           "memory_infer.png", "memory_train.png"]


def test_styles_follow_the_registry_order_not_the_frame():
    from attnbench.reporting.plots import PALETTE, method_styles

    full = method_styles(["softmax", "soft", "performer", "linformer", "nystromformer", "linear"])
    assert method_styles(["performer", "soft"]) == {k: full[k] for k in ("soft", "performer")}  # core: fixed slots
    assert full["soft"].color == PALETTE[0] and full["softmax"].color == PALETTE[1]
    two = method_styles(["soft[landmarks=49]", "soft[landmarks=64]"], {"soft[landmarks=49]": "soft",
                                                                       "soft[landmarks=64]": "soft"})
    assert two["soft[landmarks=49]"] != two["soft[landmarks=64]"]  # variants of one model are told apart


def test_overlapping_lines_are_told_apart_and_the_legend_is_outside():
    from attnbench.reporting.plots import draw_quantity

    df = frame()
    df = pd.concat([df, df[df.model == "performer"].assign(model="twin")], ignore_index=True)  # same latencies
    fig = draw_quantity(df, "latency")
    labels = [h.get_label() for h in fig.axes[0].get_legend().legend_handles]
    assert "twin (overlaps performer)" in labels
    handles = {h.get_label(): h for h in fig.axes[0].get_legend().legend_handles}
    assert handles["twin (overlaps performer)"].get_linestyle() != handles["performer"].get_linestyle()
    legend = fig.axes[0].get_legend()
    assert legend.get_bbox_to_anchor().x0 > fig.axes[0].get_window_extent().x1 - 1  # right of the axes


def test_latency_has_a_band_from_its_spread():
    from attnbench.reporting.plots import draw_quantity

    assert draw_quantity(frame(iqr=0.2), "latency").axes[0].collections  # fill_between bands
    assert not draw_quantity(frame(iqr=0.2), "memory").axes[0].collections  # memory has no measured spread
