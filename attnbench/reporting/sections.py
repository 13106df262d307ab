"""A report as a list of sections, each a heading and blocks (text, bullets, tables), that every renderer loops over.

:func:`build_sections` decides what a report says; :mod:`~attnbench.reporting.markdown` and
:mod:`~attnbench.reporting.terminal` only decide how it looks. A :class:`Table` marked ``terminal`` is also printed
in the terminal, under its ``title``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import pandas as pd

from attnbench.reporting.format import (NO_SPREAD_MARK, NOISE_MARK, NOISY, absolute_display,
                                        break_even_display, group_title, machine_line, relative_display)
from attnbench.reporting.load import as_list, efficiency, ensure_schema, groups, labelled, model_order, \
    parse_hparams, select, train_mask
from attnbench.reporting.paper import paper_display, paper_notes, paper_table
from attnbench.reporting.tables import BASELINES, absolute_table, baseline_note, break_even, choose_baseline, \
    relative_table

__all__ = ["Text", "Bullets", "Table", "Section", "build_sections", "MEASURES_NOTE"]

# what the numbers are, worded as attnbench.measure.{memory,flops,step} and attnbench.cell measure them
MEASURES_NOTE = (
    "What is measured: **peak mem** = growth of peak memory during one step over what was live before it: the "
    "built model and inputs, after a warm-up step (train mode: parameters and the AdamW state the warm-up step "
    "allocated are in the baseline; gradients are allocated and freed inside each step, so they count in the "
    "peak). CUDA: tensor memory from the caching allocator (`max_memory_allocated` minus what was allocated "
    "before); CPU: the process's resident high-water mark (`VmHWM`) above its resident size before the step. "
    "**GMACs** = multiply-accumulates of matmul-class ops in one forward pass at the cell's batch (fvcore, "
    "`no_grad`), the same count in both modes: a training step costs about 3×.")


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
class Table:
    """A table of display strings; ``caption`` goes above it in markdown, ``title`` above it in the terminal."""

    frame: pd.DataFrame
    caption: str = ""
    title: str = ""
    terminal: bool = False


Block = Union[Text, Bullets, Table]


@dataclass
class Section:
    """A heading (``level`` 1-3; no heading when ``title`` is empty) and its blocks."""

    title: str
    level: int = 2
    blocks: list[Block] = field(default_factory=list)


def build_sections(df: pd.DataFrame, metas: list[dict[str, Any]] | None = None, *, baseline: str | None = None,
                   runs: list[str] | None = None) -> list[Section]:
    """Every section of a report of ``df`` (efficiency and training rows), in reading order."""
    df = ensure_schema(df)
    eff = labelled(efficiency(df))
    base = choose_baseline(eff, baseline)
    out = [_header(df, eff, metas or [], runs)]
    out += _group_sections(eff, base)
    paper = paper_table(df)
    if not paper.empty:
        out.append(Section("Accuracy and cost (training rows joined on model, skeleton, N)", 2, [
            Table(paper_display(paper)), Text(paper_notes(paper), break_last=True)]))
    hp = _hparams_lines(eff)
    if hp:
        out.append(Section("Hyper-parameters", 2, [Bullets(hp)]))
    bad = eff[eff["status"] != "ok"]
    if not bad.empty:
        out.append(Section("Cells that did not finish", 2, [Bullets([
            f"`{r.model}` N={int(r.seq_len):,} {r.mode}: **{r.status}**" +
            (f" — {str(r.reason).splitlines()[0]}" if pd.notna(r.reason) and str(r.reason) else "")
            for r in bad.itertuples()])]))
    audit = _flop_audit(eff)
    if audit:
        out.append(Section("FLOP audit", 2, [Text(["fvcore left these ops uncounted (MACs are a lower bound there):"]),
                                             Bullets(audit)]))
    out.append(Section("", 2, [Text([
        f"Latency is median ± IQR, shown to the figures the IQR supports. {NOISE_MARK} IQR above {NOISY:.0%} of the "
        f"median: noisy, read with care. {NO_SPREAD_MARK} one timing block: spread unknown (raise --min-time)."])]))
    return out


def _header(df: pd.DataFrame, eff: pd.DataFrame, metas: list[dict[str, Any]], runs: list[str] | None) -> Section:
    lines = list(dict.fromkeys(machine_line(m) for m in metas)) or ["Machine: unknown (no meta.json)"]
    lines += [f"Command ({m.get('run', '')}): `{m['command']}`" for m in metas if m.get("command")]
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


def _group_sections(eff: pd.DataFrame, base: str | None) -> list[Section]:
    """Per (skeleton, batch, dtype, device, mode): the absolute table, then relative and break-even."""
    absolute = absolute_table(eff)
    rel = relative_table(eff, base)
    be = break_even(eff, base)
    out = []
    for key, g in groups(absolute):
        where = group_title(key)
        out += [Section(where, 2), Section("Absolute", 3, [Table(absolute_display(g), title=where, terminal=True)])]
        if base is None:
            out[-1].blocks.append(Text(["No softmax baseline in this run (looked for: " + ", ".join(BASELINES) +
                                        "): relative table and break-even skipped."]))
            continue
        sel = select(rel, key)
        if sel.empty:
            continue
        sel.attrs["baseline"] = base
        out.append(Section(f"Relative to `{base}` at each N{baseline_note(eff, base)}", 3, [
            Table(relative_display(sel, "speedup"),
                  caption=f"Speed-up = `{base}` latency / model latency (> 1× is faster):",
                  title=f"speed-up over {base} (> 1× is faster), {where}", terminal=True),
            Table(relative_display(sel, "mem_ratio"),
                  caption=f"Memory ratio = model peak memory / `{base}` peak memory (< 1× is leaner):",
                  title=f"memory / {base} (< 1× is leaner), {where}", terminal=True)]))
        bsel = select(be, key)
        if not bsel.empty:
            out.append(Section(f"Break-even N against `{base}` (log-log interpolation between bracketing N)", 3,
                               [Table(break_even_display(bsel))]))
    return out


def _hparams_lines(df: pd.DataFrame) -> list[str]:
    df = labelled(df)
    lines = []
    for model in model_order(df):
        vals = sorted({str(h) for h in df.loc[df["model"] == model, "hparams"] if h is not None and not pd.isna(h)})
        if not vals:
            continue
        lines.append(f"`{model}`: " + "; ".join(f"`{v}`" for v in vals))
        for v in vals:  # an attention with a landmarks hparam: say how many it used
            hp = parse_hparams(v)
            if "landmarks" in hp:
                lines[-1] += f" (m = {hp['landmarks']} landmarks, sampler {hp.get('sampler', '?')})"
    return lines


def _flop_audit(eff: pd.DataFrame) -> list[str]:
    unc = eff[eff["flops_uncounted_ops"].map(lambda v: bool(as_list(v)) if isinstance(v, (str, list)) else False)]
    return [f"`{model}`: {', '.join(sorted({op for v in g['flops_uncounted_ops'] for op in as_list(v)}))}"
            for model, g in unc.groupby("model", sort=False)]

