"""The machine's calibrated peak and each row's share of it."""
from __future__ import annotations

import math

from attnbench.measure.calibrate import calibrate, flops_per_step
from attnbench.results import COLUMN_SPECS, append_row, load_results


def test_calibration_gives_positive_finite_figures() -> None:
    cal = calibrate("cpu", threads=1, seconds=0.05)
    assert "reason" not in cal, cal
    figures = [*cal["matmul_gflops"].values(), cal["copy_gbps"]]
    assert set(cal["matmul_gflops"]) == {"fp32", "bf16"} and all(math.isfinite(v) and v > 0 for v in figures)
    assert cal["threads"] == 1


def test_a_device_that_cannot_be_probed_gives_a_reason_not_a_crash() -> None:
    cal = calibrate("meta")
    assert cal["matmul_gflops"] == {} and "no calibration for device type 'meta'" in cal["reason"]


def test_the_share_of_peak_is_derived_from_the_final_row(tmp_path) -> None:
    assert COLUMN_SPECS["peak_share"].derive is not None
    base = dict(model="m", scope="layer", skeleton="layer", seq_len=1024, batch=1, dtype="fp32", device="cpu",
                status="ok", macs=3e9, peak_gflops=100.0)
    append_row(tmp_path, {**base, "mode": "infer", "latency_ms_median": 120.0})
    append_row(tmp_path, {**base, "mode": "train", "latency_ms_median": 120.0})
    append_row(tmp_path, {**base, "mode": "infer", "latency_ms_median": None, "status": "timeout"})
    df = load_results(tmp_path)
    infer, train, failed = df.to_dict("records")
    assert math.isclose(infer["achieved_gflops"], 2 * 3e9 / 0.120 / 1e9)  # 50 GFLOP/s
    assert math.isclose(infer["peak_share"], 0.5)
    assert math.isclose(train["achieved_gflops"], flops_per_step(3e9, "train") / 0.120 / 1e9)
    assert math.isclose(train["peak_share"], 1.5)
    assert math.isnan(failed["achieved_gflops"]) and math.isnan(failed["peak_share"])


def test_a_sweep_records_its_calibration_and_resume_keeps_the_first(tmp_path, cell_runner) -> None:
    from attnbench.config import SweepConfig
    from attnbench.results import read_meta
    from attnbench.sweep import run_sweep

    cfg = SweepConfig(models=["attnbench.measure.testing:ExplicitSoftmax"], seq_lens=[16], device="cpu",
                      min_time=0.01, repeats=1, threads=1)
    df = run_sweep(cfg, tmp_path, runner=cell_runner)
    first = read_meta(tmp_path)["calibration"]
    assert first["matmul_gflops"]["fp32"] > 0 and df["peak_gflops"].iloc[0] == first["matmul_gflops"]["fp32"]
    run_sweep(cfg, tmp_path, resume=True, runner=cell_runner)
    meta = read_meta(tmp_path)
    assert meta["calibration"] == first and meta["resumed"][0]["calibration"]["matmul_gflops"]["fp32"] > 0


def test_a_group_on_fewer_cores_is_compared_with_the_peak_of_its_threads(tmp_path, cell_runner, monkeypatch) -> None:
    import attnbench.measure.calibrate as cal
    import attnbench.sweep as sweep
    from attnbench.config import SweepConfig

    peaks = {None: 200.0, 1: 50.0}  # the run's (all cores) and one thread's
    monkeypatch.setattr(cal, "calibrate_cached", lambda device, threads=None, dtype="fp32": {
        "device": device, "threads": threads, "matmul_gflops": {"fp32": peaks[threads], "bf16": 1.0}})
    monkeypatch.setattr(sweep, "group_threads", lambda config: 1)  # one idle core when the group starts
    cfg = SweepConfig(models=["attnbench.measure.testing:ExplicitSoftmax"], seq_lens=[16], device="cpu",
                      min_time=0.01, repeats=1)
    df = sweep.run_sweep(cfg, tmp_path, runner=cell_runner)
    assert df["num_threads"].tolist() == [1] and df["peak_gflops"].tolist() == [50.0]
    from attnbench.results import read_meta

    assert read_meta(tmp_path)["calibration"]["matmul_gflops"]["fp32"] == 200.0  # the run's stays in meta.json
