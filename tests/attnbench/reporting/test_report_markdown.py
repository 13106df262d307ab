"""report.md and the terminal tables: every section, the machine line, what is measured."""
from __future__ import annotations

import json

from attnbench import reporting as R
from report_frames import frame


def test_markdown_report_has_every_section_and_the_machine_line():
    df = frame(fail={("softmax", 4096): "oom"}, iqr=0.2)
    meta = {"cpu": "Test CPU 9000", "cpu_count": 2, "torch_threads": 2, "torch": "2.14.1", "python": "3.12",
            "attnbench": "0.1.0", "command": "attnbench run"}
    md = R.render_markdown(df, [meta])
    assert md.splitlines()[2].startswith("Machine: Test CPU 9000 (2 cores, 2 torch threads)")
    for section in ("### Absolute", "### Relative to `softmax`", "### Break-even N", "## Hyper-parameters",
                    "## Cells that did not finish", "m = 49 landmarks"):
        assert section in md, section
    assert "†" in md  # iqr 20 % marks cells noisy
    # every markdown table row has the same number of cells as its header
    for block in md.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if lines:
            assert len({ln.count("|") - ln.count("\\|") for ln in lines}) == 1, block


def test_report_says_what_peak_memory_and_gmacs_measure():
    md = R.render_markdown(frame())
    note = md[:md.index("### Absolute")]
    for words in ("peak mem", "growth of peak memory", "built model and inputs", "warm-up step", "AdamW state",
                  "gradients are allocated and freed inside each step", "GMACs", "one forward pass at the cell's batch",
                  "about 3×"):
        assert words in note, words


def test_rich_tables_render():
    from rich.console import Console

    rep = R.report(frame(), write=False)
    console = Console(record=True, width=160)
    for t in R.rich_tables(rep):
        console.print(t)
    text = console.export_text()
    assert "performer" in text and "Speed-up = softmax latency / model latency" in text


def test_landmarks_note_gives_the_real_m_at_each_n():
    assert R.landmarks_note({"landmarks": 64, "sampler": "conv", "sr_ratio": 8}, [1024, 4096]) == \
        "m = 16 at N=1,024, 64 at N=4,096 landmarks (sampler conv, stride 8)"  # 32x32 / 8 -> 4x4; 64x64 -> 8x8
    assert R.landmarks_note({"sampler": "conv", "sr_ratio": 4}, [2048]) == \
        "m = 128 at N=2,048 landmarks (sampler conv, stride 4)"  # the 32x64 grid -> 8x16
    assert R.landmarks_note({"sampler": "conv", "sr_ratio": 4, "grid_policy": "pad"}, [1156]) == \
        "m = 81 at N=1,156 landmarks (sampler conv, stride 4)"  # 34x34 padded to 36x36 -> 9x9
    assert R.landmarks_note({"landmarks": 49, "sampler": "pool"}, [1024]) == \
        "m = 49 landmarks at every N, sampler pool"
    assert R.landmarks_note({"k": 256}, [1024]) == ""  # not a landmark attention: nothing said
    df = frame(models=["softmax", "soft"])
    df.loc[df.model == "soft", "hparams"] = json.dumps({"landmarks": 64, "sampler": "conv", "sr_ratio": 8})
    md = R.render_markdown(df[df.seq_len.isin([1024, 4096])])
    assert "(m = 16 at N=1,024, 64 at N=4,096 landmarks (sampler conv, stride 8))" in md
    assert "m = 64 landmarks" not in md


def test_unconverged_pseudo_inverses_are_flagged_with_the_threshold():
    import pandas as pd

    from attnbench.reporting.sections import build_sections
    from attnbench.results import ALL_COLUMNS

    base = dict(scope="layer", skeleton="layer", batch=1, dtype="fp32", device="cpu", mode="infer", status="ok",
                hparams="{}", latency_ms_median=1.0, latency_ms_iqr=0.01, peak_mem_bytes=1, macs=1, params=1)
    df = pd.DataFrame([{**base, "model": "soft", "seq_len": 1024, "pinv_residual_max": 2.5},
                       {**base, "model": "soft", "seq_len": 2048, "pinv_residual_max": 1e-6},
                       {**base, "model": "softmax", "seq_len": 1024}], columns=ALL_COLUMNS)
    sec = [s for s in build_sections(df) if s.title.startswith("Pseudo-inverses that did not converge")]
    assert len(sec) == 1
    text = " ".join(" ".join(b.items if hasattr(b, "items") else b.lines) for b in sec[0].blocks)
    assert "N=1,024" in text and "2.5" in text and "0.01" in text and "N=2,048" not in text
