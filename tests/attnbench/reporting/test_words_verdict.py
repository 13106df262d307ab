"""Words that match the statuses: the verdict, the break-even note, "about the same", the rounds column, latencies in
ms as the report writes them (compare and progress too), and a run without the baseline."""
from __future__ import annotations

import io

import pandas as pd
from report_frames import frame
from rich.console import Console
from test_report_verdict import cells, verdict

from attnbench import reporting as R
from attnbench.cli.progress import cell_figure
from attnbench.compare import fmt_num

LOAD = "load: other processes took 1.6 of 2 cores while it ran 1 thread(s), in 1 of 1 rounds"


def untrusted(df: pd.DataFrame, models: dict[str, str]) -> pd.DataFrame:
    """``df`` with the given models' cells untrusted for the given reason (the others trusted)."""
    df = df.copy()
    df["untrusted_reason"] = df["model"].map(models).astype(object)
    df["trusted"] = df["model"].map(lambda m: 0 if m in models else 1)
    return df


def test_all_cells_untrusted_on_a_busy_machine_says_so():
    df = untrusted(cells(("softmax", 10.0, 0.1, 100), ("soft", 2.0, 0.02, 300)), {"softmax": LOAD, "soft": LOAD})
    r, text = verdict(df)
    assert pd.isna(r.fastest) and r.untrusted_rules == ["load"]
    # was: "Fastest: none (no finished cell without noise)", though both finished and neither was noisy
    assert text.startswith("Fastest: not judged (all cells untrusted: the machine was busy — re-run on a quiet "
                           "machine, or with --threads 1).")
    assert "without noise" not in text and "Untrusted, not judged" not in text  # said once, not twice
    assert "Leanest: `softmax` (the baseline)" in text  # memory is measured once: still judged


def test_all_cells_untrusted_by_other_rules_name_them():
    df = untrusted(cells(("softmax", 10.0, 0.1, 100), ("soft", 2.0, 0.02, 300)),
                   {"softmax": "spread: round medians 9-12 ms scatter 20% (> 10%)", "soft": "blocks: 3 timed blocks"})
    _, text = verdict(df)
    assert text.startswith("Fastest: not judged (all cells untrusted: they failed the blocks, spread rules (see "
                           "Trust)).")


def test_all_cells_noisy_and_a_mix_say_which():
    _, text = verdict(cells(("softmax", 10.0, 5.0, 100), ("soft", 2.0, 1.0, 300)))
    assert text.startswith("Fastest: not judged (every finished cell is noisy, its IQR above 10% of its median")
    df = untrusted(cells(("softmax", 10.0, 5.0, 100), ("soft", 2.0, 0.02, 300)), {"soft": LOAD})
    _, text = verdict(df)
    assert text.startswith("Fastest: not judged (every finished cell is noisy or untrusted)")
    assert "Noisy, not judged: `softmax`. Untrusted, not judged: `soft`." in text  # a mix: the names say who


def test_break_even_says_untrusted_not_unfinished():
    ns = [1024, 2048]
    df = untrusted(frame(models=["softmax", "soft"], ns=ns), {"softmax": LOAD, "soft": LOAD})
    be = R.break_even(df).set_index(["model", "metric"])
    # was: "no N where both finished", though both finished at every N
    assert be.loc[("soft", "latency"), "note"] == \
        "not judged: untrusted at every N where both finished (1,024, 2,048; see Trust)"
    df = frame(models=["softmax", "soft"], ns=[1024, 2048, 4096])
    df["trusted"], df["untrusted_reason"] = 1, None
    df.loc[(df.model == "soft") & (df.seq_len == 4096), ["trusted", "untrusted_reason"]] = [0, LOAD]
    note = R.break_even(df).set_index(["model", "metric"]).loc[("soft", "latency"), "note"]
    assert note.endswith("; untrusted at 4,096, left out (see Trust)")


def test_ratios_near_one_are_about_the_same():
    # was: "Leanest: `x`, 1.0× less memory than `softmax`"
    _, text = verdict(cells(("softmax", 10.0, 0.1, 1000), ("x", 5.0, 0.05, 980)))
    assert "Leanest: `x`, about the same memory as `softmax`" in text and "1.0×" not in text
    _, text = verdict(cells(("softmax", 10.0, 0.01, 100), ("x", 9.7, 0.01, 500)))
    assert text.startswith("Fastest: `x`, about as fast as `softmax`.")
    assert R.fmt_times(1.049) == "about as fast" and R.fmt_times(1 / 1.049) == "about as fast"
    assert R.fmt_times(1.05) == "1.1× faster"  # from SAME on, the ratio is a figure


def test_rounds_column_never_shows_zero_rounds():
    a = R.absolute_table(frame(models=["softmax"], ns=[1024, 2048]))
    a[["latency_rounds_min", "latency_rounds_max"]] = [[1.07, 1.07], [4.1, 4.3]]
    a["rounds"] = [0, 3]
    a["rounds_excluded"] = ["[0]", "[]"]
    col = list(R.absolute_display(a)["rounds min–max (n)"])
    assert col == ["1.1 (1 set aside)", "4.1–4.3 (3)"]  # was: "1.1–1.1 (0)"
    assert not any("(0)" in c for c in col)


def test_latencies_in_ms_with_the_report_figures():
    assert fmt_num(1023.4) == "1,020" and fmt_num(0.123456) == "0.123"  # was: "1.02e+03"
    row = {"status": "ok", "latency_ms_median": 1234.5, "latency_rounds_min": 1200.0, "latency_rounds_max": 1300.0,
           "rounds": 3, "trusted": 1}
    assert cell_figure(row) == "ok 1,230 ms, rounds 1,200–1,300 (3)"  # was: "ok 1.23e+03 ms (3 rounds 1.2e+03-...)"


def test_a_run_without_the_baseline_gets_a_verdict_and_the_way_to_a_speed_up():
    df = frame(models=["soft", "performer"])
    vt = R.verdict_table(R.relative_table(df))
    assert vt.empty  # the relative table needs a baseline; the report ranks without one
    md = R.render_markdown(df)  # was: no verdict at all, and no word on why
    verdict_md = md[md.index("## Verdict"):]
    assert "- **N=4,096**: Fastest: `performer`; runner-up: `soft`, 200× slower than `performer`. Leanest: " \
           "`performer`; runner-up: `soft`, 120× more memory." in verdict_md
    hint = "add it (`--models soft,performer,softmax`) or name one (`attnbench report RUN --baseline soft`)"
    assert hint in verdict_md
    console = Console(record=True, width=80, file=io.StringIO())
    for r in R.rich_tables(R.report(df, write=False)):
        console.print(r)
    text = console.export_text()
    assert "Verdict" in text and "--models soft,performer,softmax" in text
    assert max(len(ln) for ln in text.splitlines()) <= 80
