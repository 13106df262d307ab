"""The terminal view: fits 80 columns without cutting or wrapping a cell, tables first, the verdict last."""
from __future__ import annotations

import io

import pandas as pd
from report_frames import frame, variants_frame
from rich.console import Console

from attnbench import reporting as R

LONG = "a-user-attention-with-a-long-name"


def render(df: pd.DataFrame, width: int, *, wide: bool = False) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    for r in R.rich_tables(R.report(df, write=False), wide=wide):
        console.print(r)
    return console.export_text()


def wide_frame() -> pd.DataFrame:
    """Eight N (a wide relative table), a long model name, a failed cell."""
    ns = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
    df = frame(ns=ns, iqr=0.2, fail={("softmax", 32768): "oom"})
    df.loc[df.model == "linformer", "model"] = LONG
    return df


def test_80_columns_no_cut_names_and_no_wrapped_cells():
    text = render(wide_frame(), 80)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert "…" not in text
    for name in ("softmax", "soft", "performer", LONG):  # every name whole, in every chunk of the absolute table
        assert sum(ln.startswith(name + " ") for ln in lines) >= 8, name
    # a cell is never wrapped: each latency cell of the absolute table stays on its model's line
    assert all(" ± " in ln for ln in lines if ln.startswith("performer ") and "×" not in ln and "±" in ln)
    headers = [ln for ln in lines if ln.startswith("model ")]
    assert len(headers) > 3  # the absolute and relative tables were split, each part repeating the model column
    assert "32,768" in text and "N=32,768" in text


def test_wide_prints_every_table_whole():
    text = render(wide_frame(), 240, wide=True)
    headers = [ln for ln in text.splitlines() if ln.startswith("model ")]
    assert len(headers) == 3  # absolute, speed-up, memory ratio: one table each
    assert "N=256" in headers[1] and "N=32,768" in headers[1]


def test_order_tables_then_failures_then_legend_then_verdict():
    text = render(wide_frame(), 80)
    at = [text.index(s) for s in ("Absolute", "Speed-up = softmax latency / model latency", "Cells that did not finish",
                                  "† IQR above", "Verdict")]
    assert at == sorted(at)
    assert "N=256" in text[at[-1]:] and "Fastest:" in text[at[-1]:]
    assert "`" not in text and "**" not in text  # markdown marks are not printed


def test_names_with_brackets_are_not_rich_markup():
    text = render(variants_frame(), 120)
    assert "soft[landmarks=64]" in text and "softmax[impl=sdpa]" in text
