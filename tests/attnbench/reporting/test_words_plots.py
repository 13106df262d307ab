"""Plots show trust: an untrusted or noisy timed cell is drawn hollow or half-filled, the line into it dotted, and the
legend says what that means; a clean line stays clean, and memory (measured once) is never marked."""
from __future__ import annotations

import pandas as pd
from matplotlib.colors import to_hex
from report_frames import COSTS, frame

from attnbench.reporting.plots import draw_quantity, method_styles

MARKED_N, NOISY_N = 4096, 1024


def marked_frame() -> pd.DataFrame:
    """softmax untrusted at 4,096 (load), soft noisy at 1,024 (IQR 30 % of the median); the rest clean."""
    df = frame(models=["softmax", "soft", "performer"])
    df["trusted"], df["untrusted_reason"] = 1, None
    at = (df.model == "softmax") & (df.seq_len == MARKED_N)
    df.loc[at, ["trusted", "untrusted_reason"]] = [0, "load: other processes took 1.8 of 2 cores"]
    noisy = (df.model == "soft") & (df.seq_len == NOISY_N)
    df.loc[noisy, "latency_ms_iqr"] = df.loc[noisy, "latency_ms_median"] * 0.3
    return df


def points(fig, color: str) -> list:
    """The marker artists of one model's colour: (x values, face colour, fill style) per artist."""
    return [(list(ln.get_xdata()), ln.get_markerfacecolor(), ln.get_fillstyle()) for ln in fig.axes[0].get_lines()
            if ln.get_marker() not in (None, "None", "", "x") and to_hex(ln.get_color()) == to_hex(color)
            and ln.get_linestyle() == "None"]


def test_untrusted_and_noisy_cells_are_marked_in_the_latency_plot_and_the_legend():
    fig = draw_quantity(marked_frame(), "latency")
    styles = method_styles(["softmax", "soft", "performer"])
    labels = [h.get_label() for h in fig.axes[0].get_legend().legend_handles]
    assert "untrusted §: hollow, dotted; not judged" in labels  # was: drawn like any other point, no word
    assert "noisy †: half-filled, dotted; IQR > 10% of median" in labels
    soft_max = points(fig, styles["softmax"].color)
    hollow = [x for x, face, _ in soft_max if face == "white"]
    assert hollow == [[MARKED_N]]  # the untrusted cell alone
    assert all(to_hex(face) == to_hex(styles["softmax"].color) for x, face, _ in soft_max if x != [MARKED_N])
    assert [x for x, _, fill in points(fig, styles["soft"].color) if fill == "left"] == [[NOISY_N]]
    dotted = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == ":" and
              to_hex(ln.get_color()) == to_hex(styles["softmax"].color)]
    assert dotted and MARKED_N in list(dotted[0].get_xdata())
    solid = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "-" and
             to_hex(ln.get_color()) == to_hex(styles["softmax"].color)]
    y = list(solid[0].get_ydata())
    assert pd.isna(y[-1]) and y[0] == COSTS["softmax"][0](256)  # the solid line stops before the untrusted point


def test_a_clean_plot_and_a_memory_plot_carry_no_trust_marks():
    for fig in (draw_quantity(frame(), "latency"), draw_quantity(marked_frame(), "memory")):
        labels = [h.get_label() for h in fig.axes[0].get_legend().legend_handles]
        assert not any("untrusted" in lb or "noisy" in lb for lb in labels)
        assert not any(ln.get_linestyle() == ":" for ln in fig.axes[0].get_lines())
        assert not any(ln.get_markerfacecolor() == "white" for ln in fig.axes[0].get_lines())
