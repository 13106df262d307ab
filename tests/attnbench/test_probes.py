"""Measured quantities as probes: the schema derives from them, and a cell runs them in phase order."""
from __future__ import annotations

import pytest

from attnbench.cell import CellSpec, run_cell
from attnbench.measure.probes import PHASES, PROBES, probes_in_run_order
from attnbench.results import ALL_COLUMNS, COLUMN_SPECS, NUMERIC_COLUMNS, new_row
from attnbench.schema import KEY_COLUMNS


def test_every_probe_column_is_in_the_schema_once() -> None:
    names = [c.name for p in PROBES for c in p.columns]
    assert len(names) == len(set(names))
    assert set(names) <= set(ALL_COLUMNS) and len(ALL_COLUMNS) == len(set(ALL_COLUMNS))
    assert {"peak_mem_bytes", "latency_ms_median", "macs"} <= set(NUMERIC_COLUMNS)
    assert set(KEY_COLUMNS) <= set(ALL_COLUMNS)


def test_run_order_follows_phases_memory_before_flops_and_timing_last() -> None:
    order = [p.phase for p in probes_in_run_order()]
    assert order == sorted(order, key=PHASES.index)
    names = [p.name for p in probes_in_run_order()]
    assert names.index("peak_memory") < names.index("flops") < names.index("latency")
    assert {p.phase for p in probes_in_run_order()[names.index("latency"):]} == {"timing"}  # timing last


def test_units_and_plots_come_from_the_columns() -> None:
    assert COLUMN_SPECS["peak_mem_bytes"].unit == "bytes" and COLUMN_SPECS["latency_ms_median"].unit == "ms"
    stems = {c.plot.stem for c in COLUMN_SPECS.values() if c.plot}
    assert stems == {"memory", "latency", "flops"}


def test_rows_reject_unknown_columns() -> None:
    assert new_row(model="soft", top1=50.0)["top1"] == 50.0
    try:
        new_row(model="soft", latency_s=1.0)
    except ValueError as e:
        assert "latency_s" in str(e)
    else:
        raise AssertionError("an unknown column was accepted")


def test_run_cell_writes_every_probe_column_in_process() -> None:
    row = run_cell(CellSpec("attnbench.measure.testing:ExplicitSoftmax", "layer", 16, min_time=0.01))
    assert row["status"] == "ok", row
    for p in PROBES:
        for c in p.columns:  # derived columns are filled when the row is written (results.append_row)
            assert (c.name in row) != (c.derive is not None), (p.name, c.name)
    assert row["attn_macs"] == row["attn_macs_formula"] > 0 and row["latency_ms_median"] > 0


def test_a_failing_probe_names_its_phase(monkeypatch) -> None:  # an error says where it happened
    import attnbench.measure.probes as probes

    flops = next(p for p in PROBES if p.name == "flops")

    def boom(ctx):
        raise RuntimeError("tracer broke")
    patched = [probes.Probe("flops", "flops", flops.columns, boom) if p is flops else p for p in PROBES]
    monkeypatch.setattr(probes, "PROBES", patched)
    row = run_cell(CellSpec("attnbench.measure.testing:ExplicitSoftmax", "layer", 16, min_time=0.01))
    assert row["status"] == "error" and row["reason"] == "flops: RuntimeError: tracer broke"


def test_pinv_residual_is_measured_for_iterative_inverses_only() -> None:
    soft = run_cell(CellSpec("soft", "layer", 64, min_time=0.01, hparams={"sampler": "identity", "newton_iters": 0}))
    conv = run_cell(CellSpec("soft", "layer", 64, min_time=0.01, hparams={"sampler": "identity"}))
    plain = run_cell(CellSpec("attnbench.measure.testing:ExplicitSoftmax", "layer", 16, min_time=0.01))
    assert soft["status"] == conv["status"] == plain["status"] == "ok"
    # zero Newton steps leave the start value alpha*A^T: far from an inverse; 20 steps on the same A do better
    assert soft["pinv_residual_max"] > 10 * conv["pinv_residual_max"]
    assert plain["pinv_residual_max"] is None


@pytest.mark.parametrize("skeleton", ["layer", "vit-tiny-d1"])
@pytest.mark.parametrize("cut", ["tokens", "channels"])
def test_an_attention_returning_the_wrong_shape_is_an_error_row(cut: str, skeleton: str) -> None:
    row = run_cell(CellSpec("attnbench.measure.testing:WrongShape", skeleton, 16, min_time=0.01,
                            hparams={"cut": cut}))
    assert row["status"] == "error", row
    assert "does not match its input" in row["reason"] and "[1, 16, 192]" in row["reason"]
    assert row.get("latency_ms_median") is None
