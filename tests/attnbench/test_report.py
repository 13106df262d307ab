"""Reports on synthetic frames whose answers are known in closed form."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

import attnbench
from attnbench import report as R
from attnbench.results import ALL_COLUMNS, append_row, write_meta

NS = [256, 512, 1024, 2048, 4096]
# latency (ms) and memory (bytes) as power laws: log-log interpolation between bracketing N is then exact
COSTS = {
    "softmax": (lambda n: 1e-6 * n * n, lambda n: 4.0 * n * n),
    "soft": (lambda n: 2e-3 * n, lambda n: 12_000.0 * n),  # latency break-even 2000, memory 3000
    "performer": (lambda n: 1e-5 * n, lambda n: 100.0 * n),  # cheaper everywhere
    "linformer": (lambda n: 1.0 * n, lambda n: 1e5 * n),  # dearer everywhere up to 4096 in latency
}


def frame(models=COSTS, ns=NS, fail=None, iqr=0.01, mode="infer") -> pd.DataFrame:
    fail = fail or {}
    rows = []
    for model in models:
        lat, mem = COSTS[model]
        for n in ns:
            status = fail.get((model, n), "ok")
            ok = status == "ok"
            rows.append(dict(model=model, scope="layer", skeleton="layer", seq_len=n, batch=1, dtype="fp32",
                             device="cpu", mode=mode, status=status, reason=None if ok else f"{status} at {n}",
                             params=123_456, macs=1000 * n, peak_mem_bytes=mem(n) if ok else None,
                             latency_ms_median=lat(n) if ok else None, latency_ms_iqr=lat(n) * iqr if ok else None,
                             throughput_per_s=1000 / lat(n) if ok else None,
                             hparams=json.dumps({"landmarks": 49, "sampler": "pool"}) if model == "soft" else "{}"))
    return pd.DataFrame(rows, columns=ALL_COLUMNS)


def test_relative_table_is_baseline_over_model():
    rel = R.relative_table(frame())
    assert rel.attrs["baseline"] == "softmax"
    r = rel[(rel.model == "soft") & (rel.seq_len == 1024)].iloc[0]
    assert r.speedup == pytest.approx(1e-6 * 1024 ** 2 / (2e-3 * 1024))
    assert r.mem_ratio == pytest.approx(12_000 * 1024 / (4 * 1024 ** 2))
    assert (rel[rel.model == "softmax"].speedup == 1).all()


def test_break_even_interpolates_log_log_between_bracketing_points():
    be = R.break_even(frame()).set_index(["model", "metric"])
    assert be.loc[("soft", "latency"), "n"] == pytest.approx(2000, rel=1e-9)
    assert "1,024 and 2,048" in be.loc[("soft", "latency"), "note"]
    assert be.loc[("soft", "memory"), "n"] == pytest.approx(3000, rel=1e-9)
    assert be.loc[("performer", "latency"), "n"] is None or math.isnan(be.loc[("performer", "latency"), "n"])
    assert "cheaper at every N" in be.loc[("performer", "latency"), "note"]
    assert "not bracketed" in be.loc[("linformer", "latency"), "note"]
    assert "softmax" not in be.index.get_level_values("model")


def test_break_even_ignores_failed_cells_and_names_baseline_failures():
    df = frame(fail={("softmax", 4096): "oom", ("soft", 2048): "timeout"})
    be = R.break_even(df).set_index(["model", "metric"])
    # without N=2048 for soft the bracket is 1024..4096, but softmax has no 4096: not bracketed among finished cells
    assert "not bracketed" in be.loc[("soft", "latency"), "note"]
    assert "softmax oom at 4,096" in be.loc[("soft", "latency"), "note"]


def test_baseline_falls_back_and_can_be_absent():
    df = frame()
    df.loc[df.model == "softmax", "model"] = "softmax-math"
    assert R.choose_baseline(df) == "softmax-math"
    assert R.relative_table(df).attrs["baseline"] == "softmax-math"
    no_base = frame(models=["soft", "performer"])
    assert R.choose_baseline(no_base) is None
    assert R.relative_table(no_base).empty and R.break_even(no_base).empty
    md = R.render_markdown(no_base)
    assert "No softmax baseline" in md
    with pytest.raises(ValueError, match="baseline 'nope' has no rows"):
        R.choose_baseline(df, "nope")


@pytest.mark.parametrize("median, iqr, expected", [
    (12.345, 0.3, "12.3 ± 0.3"),
    (12.345, 0.04, "12.35 ± 0.04"),
    (12.345, 2.0, "12 ± 2 †"),
    (0.01234, 0.0001, "0.0123 ± 0.0001"),
    (1234.5, 0.001, "1,234 ± 0"),  # never more than 4 significant figures
    (5.0, 20.0, "5 ± 20 †"),  # the IQR exceeds the value: one figure, marked noisy
    (356.04, 0.0, "356 ‡"),  # one timing block: spread unknown
])
def test_latency_shows_only_the_figures_the_iqr_supports(median, iqr, expected):
    assert R.fmt_latency(median, iqr) == expected


def test_fmt_sig():
    assert R.fmt_sig(123456) == "123,000"
    assert R.fmt_sig(0.0012345) == "0.00123"
    assert R.fmt_sig(float("nan")) == "—"
    assert R.fmt_sig(0) == "0"


def test_absolute_table_units_and_failed_cells():
    df = frame(fail={("softmax", 4096): "oom"})
    a = R.absolute_table(df)
    r = a[(a.model == "soft") & (a.seq_len == 1024)].iloc[0]
    assert r.peak_mem_mib == pytest.approx(12_000 * 1024 / 2 ** 20)
    assert r.gmacs == pytest.approx(1000 * 1024 / 1e9)
    assert a.model.iloc[0] == "softmax"  # the baseline first
    disp = R.absolute_display(a)
    bad = disp[(disp.model == "softmax") & (disp.N == "4,096")].iloc[0]
    assert bad["status"] == "oom: oom at 4096" and bad["latency (ms)"] == "—"


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


def test_to_markdown_escapes_pipes_and_aligns_numbers():
    md = R.to_markdown(pd.DataFrame({"a": ["x|y", "z"], "n": ["1,024", "—"]}))
    lines = md.splitlines()
    assert lines[0].startswith("| a") and "x\\|y" in lines[2]
    assert lines[1].endswith(":|")  # numeric column right-aligned


def test_report_api_on_run_dirs_joins_shards_and_writes(tmp_path):
    df = frame()
    for i, part in enumerate((df.iloc[::2], df.iloc[1::2])):
        d = tmp_path / f"s{i}"
        d.mkdir()
        for row in part.to_dict("records"):
            append_row(d, {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
        write_meta(d, {"cpu": f"cpu{i}", "cpu_count": 2})
    rep = attnbench.report([tmp_path / "s0", tmp_path / "s1"], out=tmp_path / "joined")  # the callable module
    assert isinstance(rep, R.Report)
    assert len(rep.results) == len(df)
    assert set(zip(rep.results.model, rep.results.seq_len)) == set(zip(df.model, df.seq_len))
    assert (tmp_path / "joined" / "report.md").exists()
    assert {p.name for p in rep.files} >= {"report.md", "memory_infer.png", "latency_infer.png", "flops.png"}
    assert "cpu0" in rep.markdown and "cpu1" in rep.markdown


def test_load_runs_rejects_missing_and_corrupt(tmp_path):
    with pytest.raises(ValueError, match="not a run directory"):
        R.load_runs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results.csv"):
        R.load_runs(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.csv").write_text("model,seq_len,status\nsoft,1024,exploded\n")
    with pytest.raises(ValueError, match="corrupt results file"):
        R.load_runs(bad)


def test_rich_tables_render():
    from rich.console import Console

    rep = R.report(frame(), write=False)
    console = Console(record=True, width=160)
    for t in R.rich_tables(rep):
        console.print(t)
    text = console.export_text()
    assert "performer" in text and "speed-up over softmax" in text


def _soft_train_and_efficiency_rows():
    """One trained soft (5.7 M params, 1.2 GMACs) and four efficiency rows of a smaller soft at the same key."""
    base = dict(model="soft", scope="layer", skeleton="vit-tiny", seq_len=196, device="cpu", status="ok",
                params=123_456, macs=7e6, latency_ms_iqr=0.01, hparams=json.dumps({"landmarks": 49}))
    eff = pd.DataFrame([
        {**base, "mode": "train", "batch": 1, "dtype": "fp32", "peak_mem_bytes": 1 * 2**20, "latency_ms_median": 9.0,
         "throughput_per_s": 111.0},
        {**base, "mode": "infer", "batch": 8, "dtype": "fp32", "peak_mem_bytes": 2 * 2**20, "latency_ms_median": 8.0,
         "throughput_per_s": 1000.0},
        {**base, "mode": "infer", "batch": 1, "dtype": "bf16", "peak_mem_bytes": 3 * 2**20, "latency_ms_median": 7.0,
         "throughput_per_s": 142.0},
        {**base, "mode": "infer", "batch": 1, "dtype": "fp32", "peak_mem_bytes": 4 * 2**20, "latency_ms_median": 2.0,
         "throughput_per_s": 500.0},
    ], columns=ALL_COLUMNS)
    train = pd.DataFrame([dict(model="soft", scope="train", skeleton="vit-tiny", seq_len=196, batch=1024, mode="train",
                               dtype="bf16", device="cuda", status="ok", top1=79.3, top5=94.6, epochs=300,
                               dataset="imagenet", params=5_700_000, macs=1.2e9, hparams="{}")], columns=ALL_COLUMNS)
    return eff, train


def test_paper_table_uses_the_trained_models_own_params_and_a_chosen_efficiency_row():
    eff, train = _soft_train_and_efficiency_rows()
    for order in (eff, eff.iloc[::-1]):  # the choice does not depend on row order
        p = R.paper_table(pd.concat([order, train], ignore_index=True)).iloc[0]
        assert p.params_m == pytest.approx(5.7) and p.gmacs == pytest.approx(1.2)  # the training row's own
        # infer first, then the smallest batch, then fp32
        assert (p.eff_mode, p.eff_batch, p.eff_dtype) == ("infer", 1, "fp32")
        assert p.peak_mem_mib == pytest.approx(4) and p.latency_ms_median == 2.0 and p.throughput_per_s == 500.0
        assert p.params_differ and p.eff_params_m == pytest.approx(0.123456)
    md = R.render_markdown(pd.concat([eff, train], ignore_index=True))
    section = md[md.index("## Accuracy and cost"):]
    assert "throughput (/s)" in section and " 500 * |" in section and " 4.00 * |" in section
    assert "Efficiency setting of those columns: batch 1, fp32, cpu, infer mode." in section
    assert "`*` efficiency row measured a model with different params (patch/classes/hparams)." in section
    same = train.assign(params=123_456)  # the same model: no mark
    p = R.paper_table(pd.concat([eff, same], ignore_index=True)).iloc[0]
    assert not p.params_differ
    assert "*" not in R.paper_display(R.paper_table(pd.concat([eff, same], ignore_index=True))).to_string()


def test_paper_table_prefers_the_efficiency_row_with_the_trained_hparams():
    eff, train = _soft_train_and_efficiency_rows()
    other = eff.iloc[[3]].assign(hparams=json.dumps({"landmarks": 64}), peak_mem_bytes=9 * 2**20)
    p = R.paper_table(pd.concat([other, eff, train.assign(hparams=json.dumps({"landmarks": 49}))],
                                ignore_index=True)).iloc[0]
    assert p.peak_mem_mib == pytest.approx(4)
    p = R.paper_table(pd.concat([eff, other, train.assign(hparams=json.dumps({"landmarks": 64}))],
                                ignore_index=True)).iloc[0]
    assert p.peak_mem_mib == pytest.approx(9)


def test_report_says_what_peak_memory_and_gmacs_measure():
    md = R.render_markdown(frame())
    note = md[:md.index("### Absolute")]
    for words in ("peak mem", "growth of peak memory", "built model and inputs", "warm-up step", "AdamW state",
                  "gradients are allocated and freed inside each step", "GMACs", "one forward pass at the cell's batch",
                  "about 3×"):
        assert words in note, words


def _variants_frame() -> pd.DataFrame:
    """softmax and soft, each in two hparams variants (the second soft twice as slow, the second softmax 4x slower)."""
    df = frame(models=["softmax", "soft"])
    df.loc[df.model == "softmax", "hparams"] = json.dumps({"impl": "sdpa"})
    slow_soft = df[df.model == "soft"].assign(hparams=json.dumps({"landmarks": 64, "sampler": "pool"}))
    slow_soft["latency_ms_median"] *= 2
    slow_soft["latency_ms_iqr"] *= 2
    math_softmax = df[df.model == "softmax"].assign(hparams=json.dumps({"impl": "math"}))
    math_softmax["latency_ms_median"] *= 4
    return pd.concat([df, slow_soft, math_softmax], ignore_index=True)


def test_hparams_variants_are_separate_models_everywhere():
    df = _variants_frame()
    labels = set(R.variant_labels(df))
    assert labels == {"softmax[impl=sdpa]", "softmax[impl=math]", "soft[landmarks=49]", "soft[landmarks=64]"}
    assert set(R.variant_labels(frame())) == set(COSTS)  # one hparams value per model: plain names
    rel = R.relative_table(df)
    assert len(rel) == len(df)  # no row duplicated by the join
    assert rel.attrs["baseline"] == "softmax[impl=sdpa]"  # the first softmax variant in the frame
    at = rel.set_index(["model", "seq_len"])
    assert at.loc[("soft[landmarks=64]", 1024), "speedup"] == pytest.approx(1e-6 * 1024 / (2 * 2e-3))
    assert at.loc[("softmax[impl=math]", 1024), "speedup"] == pytest.approx(0.25)
    be = R.break_even(df).set_index(["model", "metric"])
    assert be.loc[("soft[landmarks=49]", "latency"), "n"] == pytest.approx(2000, rel=1e-9)
    assert be.loc[("soft[landmarks=64]", "latency"), "n"] == pytest.approx(4000, rel=1e-9)
    assert len(R.absolute_table(df)) == len(df)
    assert R.choose_baseline(df, "softmax") == "softmax[impl=sdpa]"
    assert R.choose_baseline(df, "softmax[impl=math]") == "softmax[impl=math]"
    md = R.render_markdown(df)
    assert "### Relative to `softmax[impl=sdpa]` at each N (`softmax` has 2 hparams variants here; the first in " \
           "the frame's order is the baseline)" in md
    assert "| soft[landmarks=64]" in md and "m = 64 landmarks" in md
