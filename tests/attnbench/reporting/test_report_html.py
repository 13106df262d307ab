"""report.html: the report's sections and figures in one self-contained file; --format chooses the documents."""
from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

import attnbench
from attnbench.cli import main
from attnbench.reporting.html import inline
from attnbench.results import append_row
from report_frames import frame


def _run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    for row in frame().to_dict("records"):
        append_row(d, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
    return d


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_html_holds_every_section_and_embeds_every_figure(tmp_path):
    rep = attnbench.report(_run_dir(tmp_path))
    page = (tmp_path / "run" / "report.html").read_text()
    p = _Tags()
    p.feed(page)
    text = "".join(p.text)
    for s in rep.sections:
        if s.title:
            assert re.sub(r"[`*]", "", s.title) in text, s.title
    imgs = [a["src"] for t, a in p.tags if t == "img"]
    pngs = [f for f in rep.files if f.suffix == ".png"]
    assert len(imgs) == len(pngs) > 0 and all(src.startswith("data:image/png;base64,") for src in imgs)
    # self-contained: nothing fetched from elsewhere
    assert not [a for t, a in p.tags if t in ("script", "link") or (t == "img" and "://" in a.get("src", ""))]
    tables = sum(1 for t, _ in p.tags if t == "table")
    assert tables == sum(1 for s in rep.sections for b in s.blocks if type(b).__name__ == "Table")


def test_inline_markdown_is_escaped_then_marked_up():
    assert inline("**fast** `soft` <b>&") == "<strong>fast</strong> <code>soft</code> &lt;b&gt;&amp;"


def test_report_format_chooses_the_documents(tmp_path):
    d = _run_dir(tmp_path)
    r = CliRunner().invoke(main, ["report", str(d), "--no-plots", "--format", "html", "--out", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["report.html"]
    with pytest.raises(ValueError, match="accepted: md, html"):
        attnbench.report(d, out=tmp_path / "x", formats="pdf")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("fmt", ["pdf", "md,", "", "html,docx"])
def test_bad_format_is_one_line_exit_2_and_writes_nothing(tmp_path, fmt):
    d = _run_dir(tmp_path)
    before = sorted(p.name for p in d.iterdir())
    r = CliRunner().invoke(main, ["report", str(d), "--format", fmt])
    if fmt == "md,":  # an empty item is dropped: md alone
        assert r.exit_code == 0, r.output
        return
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [r.stderr.strip()]
    assert "--format" in r.stderr and "accepted: md, html" in r.stderr
    assert sorted(p.name for p in d.iterdir()) == before


def test_unwritable_html_path_is_one_line_exit_2(tmp_path):
    d = _run_dir(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = CliRunner().invoke(main, ["report", str(d), "--format", "html", "--out", str(blocker / "sub")])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "cannot write" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
