"""Progress of `attnbench run`: plain lines with an ETA when stderr is not a terminal, the running cell on one."""
from __future__ import annotations

import io
import re
from types import SimpleNamespace

from rich.console import Console

from attnbench.cli.progress import Eta, cell_figure, fmt_duration, run_with_progress

CELLS = [SimpleNamespace(model=m, seq_len=1024, mode="infer") for m in ("softmax", "soft")]
ROWS = [{"model": "softmax", "seq_len": 1024, "mode": "infer", "status": "ok", "latency_ms_median": 6.71,
         "latency_rounds_min": 6.5, "latency_rounds_max": 7.0, "rounds": 3, "trusted": 1},
        {"model": "soft", "seq_len": 1024, "mode": "infer", "status": "timeout", "reason": "exceeded the 1 s timeout"}]


def fake_sweep(config, run_dir, *, on_cell, on_start, resume, retry_failed):
    """Two cells in one group, three rounds each (six cell-rounds), then both rows."""
    for r in range(3):
        for i, spec in enumerate(CELLS):
            on_start(spec, r, 2 * r + i, 6)
    for i, (spec, row) in enumerate(zip(CELLS, ROWS)):
        on_cell(spec, row, i + 1, 2)
    return "df"


def test_plain_lines_when_not_a_terminal() -> None:
    lines: list[str] = []
    console = Console(file=io.StringIO(), force_terminal=False)
    out = run_with_progress(fake_sweep, None, None, resume=False, retry_failed=False, console=console,
                            echo=lines.append)
    assert out == "df" and console.file.getvalue() == ""  # no bar drawn into a log
    cells = [i for i, ln in enumerate(lines) if ln.startswith("[")]  # a cell wider than the page wraps
    assert len(cells) == 2 and all(len(ln) <= 80 for ln in lines)
    assert lines[0] == "[1/2] softmax N=1024 infer: ok 6.71 ms, rounds 6.5–7.0 (3)"
    assert lines[1].startswith("    elapsed 0:00, ETA ")  # the times whole, on a line of their own
    assert lines[cells[1]].startswith("[2/2] soft N=1024 infer: timeout: exceeded the 1 s timeout")
    assert all("\x1b" not in ln for ln in lines)


def test_the_bar_shows_the_running_cell_on_a_terminal() -> None:
    seen: list[str] = []
    console = Console(file=io.StringIO(), force_terminal=True, width=120)

    def sweep(config, run_dir, *, on_cell, on_start, resume, retry_failed):
        on_start(CELLS[1], 1, 3, 6)
        seen.append(console.file.getvalue())
        return fake_sweep(config, run_dir, on_cell=on_cell, on_start=on_start, resume=resume,
                          retry_failed=retry_failed)

    run_with_progress(sweep, None, None, resume=False, retry_failed=False, console=console, echo=seen.append)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", console.file.getvalue())  # without the terminal's codes
    assert "soft N=1024 infer (round" in text and "ETA" in text
    assert "soft N=1024 infer: timeout" in text  # a failed cell is printed above the bar


def test_eta_and_figures() -> None:
    now = [100.0]
    eta = Eta(clock=lambda: now[0])
    assert eta.left() is None
    now[0] = 130.0
    eta.update(3, 9)  # 30 s for 3 cell-rounds: 60 s for the 6 left
    assert eta.left() == 60.0 and fmt_duration(eta.left()) == "1:00" and fmt_duration(3725) == "1:02:05"
    assert fmt_duration(None) == "?"
    assert cell_figure({"status": "ok", "latency_ms_median": 5.0, "trusted": 0,
                        "untrusted_reason": "spread: 30%"}) == "ok 5.00 ms, untrusted (spread)"
