"""A report as a list of sections, each a heading and blocks (text, bullets, labelled lines, tables), that every
renderer loops over.

:func:`build_sections` decides what a report says; :mod:`~attnbench.reporting.markdown` and
:mod:`~attnbench.reporting.terminal` only decide how it looks. report.md shows every section in list order; the
terminal shows the sections with a ``terminal`` rank, sorted by it (stable): the tables first, then the legend,
then the verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

import pandas as pd

from attnbench.reporting.controls import LOCAL, LONG_RANGE, ablation_lines, local_control, local_control_display
from attnbench.reporting.curves import CURVES_PNG
from attnbench.reporting.diagnostics import diag_display, diag_ends, diag_legend, diag_words
from attnbench.reporting.format import (LEGEND, absolute_display, break_even_display, group_title, machine_line,
                                        relative_display, short_command)
from attnbench.reporting.frontier import (ACCURACY_NOTE, CELL, FRONTIER_PNG, accuracy_across_n, accuracy_display,
                                          frontier_rows, group_heading, learned_cell, training_rows)
from attnbench.reporting.load import as_list, efficiency, ensure_schema, groups, labelled, model_order, \
    parse_hparams, select, train_mask
from attnbench.reporting.logs import pair_logs
from attnbench.reporting.paper import paper_display, paper_notes, paper_table
from attnbench.reporting.peak import peak_notes
from attnbench.config import rounds_text
from attnbench.reporting.tables import BASELINES, absolute_table, baseline_note, break_even, choose_baseline, \
    ranking_table, relative_table
from attnbench.measure.probes import UNCONVERGED
from attnbench.reporting.verdict import MEM_TIE, verdict_lines, verdict_table
from attnbench.stats import CONFIDENCE, TRUST_RULES, machine_warning

__all__ = ["Text", "Bullets", "Labelled", "Table", "Section", "build_sections", "landmarks_note", "MEASURES_NOTE",
           "TABLES", "LEGEND_RANK", "VERDICT_RANK"]

TABLES, LEGEND_RANK, VERDICT_RANK = 0, 1, 2  # terminal order: tables, then the legend under them, the verdict last

# what the numbers are, worded as attnbench.measure.{memory,flops,step} and attnbench.cell measure them
MEASURES_NOTE = (
    "What is measured: **peak mem** = growth of peak memory during one step over what was live before it: the "
    "built model and inputs, after a warm-up step (train mode: parameters and the AdamW state the warm-up step "
    "allocated are in the baseline; gradients are allocated and freed inside each step, so they count in the "
    "peak). CUDA: tensor memory from the caching allocator (`max_memory_allocated` minus what was allocated "
    "before); CPU: the process's resident high-water mark (`VmHWM`) above its resident size before the step. "
    "**GMACs** = multiply-accumulates of matmul-class ops in one forward pass at the cell's batch (fvcore, "
    "`no_grad`), the same count in both modes: a training step costs about 3×. **samples/s** = batch / median "
    "latency. **% of peak** = achieved GFLOP/s (2 × GMACs per forward, 3× that for a training step, over the "
    "latency) against the matmul GFLOP/s this machine sustained when the run started (`calibration` in meta.json): "
    "low means bound by memory traffic or overheads, not by arithmetic.")


@dataclass
class Text:
    """A paragraph; ``lines`` are kept as separate lines (hard breaks), ``break_last`` also breaks after the last."""

    lines: list[str]
    break_last: bool = False


@dataclass
class Bullets:
    """A bulleted list (items are markdown)."""

    items: list[str]


@dataclass
class Labelled:
    """Lines with a short label each (``N=4,096``, text): a list in markdown, a hanging indent in the terminal."""

    rows: list[tuple[str, str]]


@dataclass
class Table:
    """A table of display strings with ``caption`` above it; ``keys`` leading columns are repeated when the terminal
    splits a wide table; ``failed`` marks rows the terminal shows in red."""

    frame: pd.DataFrame
    caption: str = ""
    keys: int = 1
    failed: list[bool] | None = None


Block = Union[Text, Bullets, Labelled, Table]


@dataclass
class Section:
    """A heading (``level`` 1-3; no heading when ``title`` is empty), its blocks, and its rank in the terminal
    (None: report.md only)."""

    title: str
    level: int = 2
    blocks: list[Block] = field(default_factory=list)
    terminal: int | None = None


def build_sections(df: pd.DataFrame, metas: list[dict[str, Any]] | None = None, *, baseline: str | None = None,
                   runs: list[str] | None = None, logs: pd.DataFrame | None = None) -> list[Section]:
    """Every section of a report of ``df`` (efficiency and training rows), in reading order; ``logs``: the training
    pairs' :func:`~attnbench.reporting.logs.pair_logs`, read from each row's ``run_dir`` when not given."""
    df = ensure_schema(df)
    eff = labelled(efficiency(df))
    base = choose_baseline(eff, baseline)
    rel = relative_table(eff, base)
    out = _busy(eff, metas or [])  # when the machine was busy, the report's first line says so
    out.append(_header(df, eff, metas or [], runs))
    out += _verdict(rel) if base else _verdict(ranking_table(eff), _no_baseline(eff)) if not eff.empty else []
    if not eff.empty:
        out.append(Section("", 2, [Text([LEGEND + " Latency is median ± IQR, shown to the figures the IQR "
                                         "supports (at least two)."])], terminal=LEGEND_RANK))
    peak = peak_notes(eff, metas or [])  # what "% of peak" is measured against, and whether it was re-based
    if peak:
        out.append(Section("", 2, [Text(peak)], terminal=LEGEND_RANK))
    out += _group_sections(eff, base, rel)
    out += _training(df, logs)
    paper = paper_table(df)
    if not paper.empty:
        out.append(Section("Accuracy and cost of each trained seed (training rows joined on model, skeleton, N)", 2,
                           [Table(paper_display(paper)), Text(paper_notes(paper), break_last=True)]))
    hp = _hparams_lines(eff)
    if hp:
        out.append(Section("Hyper-parameters", 2, [Bullets(hp)]))
    bad = _failures(eff)
    if bad:
        out.append(Section("Cells that did not finish", 2, [Bullets(bad)], terminal=TABLES))
    unconverged = _unconverged(eff)
    if unconverged:
        out.append(Section("Pseudo-inverses that did not converge", 2, [
            Text([f"`pinv_residual_max` = largest ‖I − A·M‖_F of the iterative pseudo-inverse (SOFT's Newton–Raphson, "
                  f"Nyström's pinv) in one forward; above {UNCONVERGED:g} the \"inverse\" is off by more than "
                  f"{UNCONVERGED:.0%}, so the method computed something other than its equation:"]),
            Bullets(unconverged)], terminal=TABLES))
    out += _trust(eff, metas or [])
    audit = _flop_audit(eff)
    if audit:
        out.append(Section("FLOP audit", 2, [Text(["fvcore left these ops uncounted (MACs are a lower bound there):"]),
                                             Bullets(audit)]))
    return out


def _training(df: pd.DataFrame, logs: pd.DataFrame | None) -> list[Section]:
    """What the training rows say: what each seed learned, the local control, the ablations, the diagnostics."""
    train = training_rows(df)
    if train.empty:
        return []
    logs = pair_logs(train) if logs is None else logs
    acc = accuracy_across_n(df, logs=logs)
    main, ablations = acc[~acc["ablation"].astype(bool)], acc[acc["ablation"].astype(bool)]
    out = []
    if not main.empty:
        out.append(Section("Accuracy: what each seed learned", 2, _comparisons(main) + [
            Text([ACCURACY_NOTE + _plots_note(acc, logs)])], terminal=TABLES))
    pairs = local_control(main)
    if not pairs.empty:
        out.append(Section(f"Local control: {LOCAL} beside {LONG_RANGE}", 2, [
            Text([f"The same methods at the same N on a local task (`{LOCAL}`: the class of a shape) and on a "
                  f"long-range one (`{LONG_RANGE}`: whether two far marks match). A method that learns the first but "
                  "not the second trains, but does not mix globally at that N; one that learns neither does not "
                  "train in this setting."]), Table(local_control_display(pairs))], terminal=TABLES))
    if not ablations.empty:
        out.append(Section("Ablations", 2, [
            Text(["Variants that are not a paper's layer, each testing one ingredient; kept out of the comparison "
                  "above and never on the frontier:"]),
            Bullets(ablation_lines(list(dict.fromkeys(ablations["model_base"]))))] +
            _comparisons(ablations, frontier=False)))
    return out + _diagnostics(acc, logs)


def _comparisons(acc: pd.DataFrame, *, frontier: bool = True) -> list[Block]:
    """Per comparison (skeleton, task, N): its heading, what it is measured against, and its methods' table."""
    blocks: list[Block] = []
    for _, g in acc.groupby(CELL, sort=False):
        title, detail = group_heading(g)
        blocks += [Text([title]), Text([detail]), Table(accuracy_display(g, frontier=frontier))]
    return blocks


def _plots_note(acc: pd.DataFrame, logs: pd.DataFrame) -> str:
    plots = ([f"`{FRONTIER_PNG}` (final top-1 against latency and memory)"] if len(frontier_rows(acc)) > 1 else []) \
        + ([f"`{CURVES_PNG}` (validation top-1 per epoch: each seed, and the mean)"] if not logs.empty else [])
    return f" Plots: {' and '.join(plots)}." if plots else ""


def _diagnostics(acc: pd.DataFrame, logs: pd.DataFrame) -> list[Section]:
    """The attention's diagnostics: in words for each method that did not learn on every seed, and at the last
    epoch for every method (none without diag_* columns in the logs)."""
    ends = diag_ends(logs)
    if ends.empty:
        return []
    by_method = ends.set_index(CELL + ["model"])
    words = []
    for _, r in acc[acc["learned_status"].isin(["none", "mixed"])].iterrows():
        key = tuple(r[CELL + ["model"]])
        said = diag_words(by_method.loc[key]) if key in by_method.index else ""
        words.append(f"`{r['model']}`, {r['task']} N={int(r['seq_len']):,} ({learned_cell(r)} seeds learned): "
                     + (said or "no diagnostics logged") + ".")
    blocks: list[Block] = [Text(["What the methods that did not learn on every seed did (first and last epoch, "
                                 "mean over seeds):"]), Bullets(words)] if words else []
    blocks += [Table(diag_display(ends), keys=3, caption="Every method at its last epoch (mean over seeds; "
                                                         "diagnostics of the attention, mean over its blocks):"),
               Bullets(diag_legend(ends))]
    return [Section("Diagnostics", 2, blocks)]


def _busy(eff: pd.DataFrame, metas: list[dict[str, Any]]) -> list[Section]:
    """A warning section (no heading: the report's first line) when the machine was busy while cells were timed."""
    cores = next((m["machine"].get("cores") for m in metas if isinstance(m.get("machine"), dict)), None)
    cores = cores or next((m.get("cpu_count") for m in metas if m.get("cpu_count")), None)
    text = machine_warning(eff.to_dict("records"), cores)
    return [Section("", 2, [Text([f"**Warning:** {text}"])], terminal=TABLES)] if text else []


def _trust(eff: pd.DataFrame, metas: list[dict[str, Any]]) -> list[Section]:
    """How latencies were measured in rounds, the trust rules, and the cells that failed them (runs with rounds)."""
    timed = eff[(eff["status"] == "ok") & pd.to_numeric(eff["rounds"], errors="coerce").notna()]
    if timed.empty:
        return []
    configs = [m["config"] for m in metas if isinstance(m.get("config"), dict) and m["config"].get("repeats")]
    rounds = ", ".join(dict.fromkeys(rounds_text(c["repeats"], c.get("max_rounds"), c.get("target_ci"))
                                     for c in configs)) or "rounds"  # a fixed count, or auto's range
    text = (f"Each cell was timed in {rounds} (`--repeats`): in a round, the methods of one N ran back to back in an "
            "order that rotates between rounds, round 1 in a fresh process that also measured memory and FLOPs. A "
            "cell's latency is the median of its rounds' medians (the spread: rounds min–max, and ± the median "
            "within-round IQR). A speed-up is the median of the per-round ratios (paired: both cells saw the same "
            f"machine), with an exact order-statistic interval for the median ({CONFIDENCE:.0%} where the pairs "
            "allow; 3 rounds give min–max, 75 %; 6 or more reach 95 %). A round in which other processes took more "
            "than the cores the cell left free is set aside. A cell is untrusted (§) when:")
    blocks: list[Block] = [Text([text]), Bullets([f"**{k}**: {v}" for k, v in TRUST_RULES.items()]),
                           Text(["Untrusted cells are re-measured up to `--max-retries` extra rounds; still untrusted, "
                                 "they are shown but left out of speed-ups, break-even and the verdict. Memory ratios "
                                 "are kept: peak memory is measured once, in a fresh process, and does not depend on "
                                 "the machine's load."])]
    bad = timed[timed["trusted"] == 0]
    if not bad.empty:
        blocks += [Text([f"Untrusted cells ({len(bad)} of {len(timed)}):"]),
                   Bullets([f"`{r.model}` N={int(r.seq_len):,} {r.mode}: {r.untrusted_reason}"
                            for r in bad.itertuples()])]
    return [Section("Trust: rounds, pairs and rules", 2, blocks, terminal=TABLES if not bad.empty else None)]


def _unconverged(eff: pd.DataFrame) -> list[str]:
    res = pd.to_numeric(eff.get("pinv_residual_max", pd.Series(dtype=float)), errors="coerce")
    bad = eff[res > UNCONVERGED]
    return [f"`{r.model}` N={int(r.seq_len):,} {r.mode}: residual {float(r.pinv_residual_max):.2g}"
            for r in bad.itertuples()]


def _header(df: pd.DataFrame, eff: pd.DataFrame, metas: list[dict[str, Any]], runs: list[str] | None) -> Section:
    from attnbench.machine import differences  # torch-free

    lines = list(dict.fromkeys(machine_line(m) for m in metas)) or ["Machine: unknown (no meta.json)"]
    diff = [f"{m.get('run', '?')}: {'; '.join(d)}" for m in metas[1:] if (d := differences(metas[0], m))]
    if diff:
        lines.insert(0, f"**Warning:** the runs come from different machines (against {metas[0].get('run', '?')}: "
                        f"{' | '.join(diff)}); their latencies are not comparable.")
    lines += [f"Command ({m.get('run', '')}): `{short_command(m['command'])}`" for m in metas if m.get("command")]
    if runs:
        lines.append(f"Runs: {', '.join(runs)}")
    n_ok = int((eff["status"] == "ok").sum())
    is_train = train_mask(df)
    lines.append(f"Cells: {len(eff)} ({n_ok} ok)" + (f"; training rows: {int(is_train.sum())}" if is_train.any()
                                                     else ""))
    blocks: list[Block] = [Text(lines)]
    if not eff.empty:
        blocks.append(Text([MEASURES_NOTE]))
    return Section("attnbench report", 1, blocks)


def _no_baseline(eff: pd.DataFrame) -> str:
    """What a run without a baseline lacks, and the one change that gets it."""
    models = list(dict.fromkeys(eff["model_base"].astype(str)))
    return (f"No softmax baseline in this run (looked for: {', '.join(BASELINES)}), so no speed-ups: add it "
            f"(`--models {','.join(models)},{BASELINES[0]}`) or name one (`attnbench report RUN --baseline "
            f"{models[0]}`).")


def _verdict(rel: pd.DataFrame, no_baseline: str = "") -> list[Section]:
    """The verdict section: per group, one line per N; without a baseline (``no_baseline`` says so), the methods
    ranked against the fastest."""
    vt = verdict_table(rel)
    if vt.empty:
        return []
    base = rel.attrs.get("baseline")
    against = f"speed-up over `{base}`, interval from the latencies' quartiles or the paired rounds" if base else \
        "by median latency, the runner-up against it"
    blocks: list[Block] = [Text([
        f"At each N, the fastest method ({against}) and the leanest (peak memory). Methods whose intervals overlap "
        f"are tied; memories within {MEM_TIE:.0%} are tied. A noisy (†) or untrusted (§) cell is never judged."
        + (f" {no_baseline}" if no_baseline else "")])]
    for key, g in groups(vt):
        blocks += [Text([f"**{group_title(key)}**"]), Labelled(verdict_lines(g))]
    return [Section("Verdict", 2, blocks, terminal=VERDICT_RANK)]


def _group_sections(eff: pd.DataFrame, base: str | None, rel: pd.DataFrame) -> list[Section]:
    """Per (skeleton, batch, dtype, device, mode): the absolute table, then relative and break-even."""
    absolute = absolute_table(eff)
    be = break_even(eff, base)
    out = []
    for key, g in groups(absolute):
        out += [Section(group_title(key), 2, terminal=TABLES),
                Section("Absolute", 3, [Table(absolute_display(g), keys=2, failed=list(g["status"] != "ok"))],
                        terminal=TABLES)]
        if base is None:
            out[-1].blocks.append(Text(["No softmax baseline in this run: no relative table or break-even (the "
                                        "verdict says how to get them)."]))
            continue
        sel = select(rel, key)
        if sel.empty:
            continue
        sel.attrs["baseline"] = base
        out.append(Section(f"Relative to `{base}` at each N{baseline_note(eff, base)}", 3, [
            Table(relative_display(sel, "speedup"),
                  caption=f"Speed-up = `{base}` latency / model latency (> 1× is faster), with its interval "
                          "(paired rounds: see Trust; else the latencies' quartiles):"),
            Table(relative_display(sel, "mem_ratio"),
                  caption=f"Memory ratio = model peak memory / `{base}` peak memory (< 1× is leaner; one "
                          "measurement each, in a fresh process):")],
            terminal=TABLES))
        bsel = select(be, key)
        if not bsel.empty:
            out.append(Section(f"Break-even N against `{base}` (log-log interpolation between bracketing N)", 3,
                               [Table(break_even_display(bsel))]))
    return out


def landmarks_note(hparams: dict[str, Any], seq_lens: list[int]) -> str:
    """How many landmarks an attention with a ``sampler``/``landmarks`` hparam used at each N: fixed for the pooled
    sampler, the conv sampler's (H/s)(W/s) on the token grid (its stride given, or chosen for N), N for the
    identity; ``""`` for an attention without landmarks."""
    sampler = hparams.get("sampler")
    if sampler in (None, "pool"):
        return f"m = {hparams['landmarks']} landmarks at every N, sampler {sampler or '?'}" \
            if "landmarks" in hparams else ""
    if sampler == "identity":
        return "m = N landmarks (every token), sampler identity"
    if sampler != "conv":
        return f"sampler {sampler}"
    # the sampler's own rule on the grid the layer was built for; imported here because importing soft loads
    # torch, which a report without a conv sampler never needs
    from soft.grid import square_grid, strided_grid
    from soft.landmarks import resolve_conv_stride

    found = []
    for n in seq_lens:
        try:
            s, policy = resolve_conv_stride(hparams.get("sr_ratio"), hparams.get("grid_policy"),
                                            hparams.get("landmarks", 49), n)
            found.append((n, math.prod(strided_grid(square_grid(n), s, policy)), s))
        except ValueError:  # a cell that could not have been built: nothing to say about it
            continue
    if not found:
        return "sampler conv"
    strides = sorted({s for _, _, s in found})
    if len(strides) == 1:
        return "m = " + ", ".join(f"{m:,} at N={n:,}" for n, m, _ in found) + \
            f" landmarks (sampler conv, stride {strides[0]})"
    return "m = " + ", ".join(f"{m:,} at N={n:,} (stride {s})" for n, m, s in found) + " landmarks (sampler conv)"


def _hparams_lines(df: pd.DataFrame) -> list[str]:
    """One line per model: its hparams values and, where they name landmarks, how many it used at each N (not in
    the pyramid, whose stages set their own)."""
    df = labelled(df)
    lines = []
    for model in model_order(df):
        rows = df[df["model"] == model]
        vals = sorted({str(h) for h in rows["hparams"] if h is not None and not pd.isna(h)})
        if not vals:
            continue
        notes = []
        for v in vals:
            at = rows[(rows["hparams"].astype(str) == v) & (rows["scope"] != "pyramid")]
            note = landmarks_note(parse_hparams(v), sorted({int(n) for n in at["seq_len"].dropna()}))
            notes += [note] if note and not at.empty else []
        lines.append(f"`{model}`: " + "; ".join(f"`{v}`" for v in vals) + "".join(f" ({n})" for n in notes))
    return lines


def _spans(ns: list[int]) -> str:
    return ", ".join(f"{n:,}" for n in sorted(set(ns)))


def _failures(eff: pd.DataFrame) -> list[str]:
    """The cells that did not finish, one line per (model, status, reason): the modes and N it happened at."""
    bad = eff[eff["status"] != "ok"]
    lines = []
    reason = bad["reason"].map(lambda r: str(r).splitlines()[0] if pd.notna(r) and str(r) else "")
    for (model, status, why), g in bad.assign(_why=reason).groupby(["model", "status", "_why"], sort=False):
        modes = ", ".join(dict.fromkeys(g["mode"].astype(str)))
        lines.append(f"`{model}` {modes}, N = {_spans([int(n) for n in g['seq_len']])}: **{status}**" +
                     (f" — {why}" if why else ""))
    return lines


def _flop_audit(eff: pd.DataFrame) -> list[str]:
    if eff.empty:  # a report of training rows alone (an empty boolean mask would select columns below)
        return []
    unc = eff[eff["flops_uncounted_ops"].map(lambda v: bool(as_list(v)) if isinstance(v, (str, list)) else False)]
    return [f"`{model}`: {', '.join(sorted({op for v in g['flops_uncounted_ops'] for op in as_list(v)}))}"
            for model, g in unc.groupby("model", sort=False)]
