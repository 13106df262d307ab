"""The calibrated peak is a ceiling: the best block, taken while the machine is idle, beside the theoretical peak;
a report never prints a share of it above 100 %."""
from __future__ import annotations

import itertools
import subprocess
import sys
import types

import pandas as pd
import pytest

import attnbench.measure.calibrate as cal
from attnbench.results import ALL_COLUMNS


class FakeClock:
    """Every second call ends a block: the blocks last ``durations`` in turn (cycled), whatever ran in them."""

    def __init__(self, durations: list[float]) -> None:
        self.durations, self.now, self.ending = itertools.cycle(durations), 0.0, False

    def __call__(self) -> float:
        if self.ending:
            self.now += next(self.durations)
        self.ending = not self.ending
        return self.now


def test_calibration_is_the_best_block_not_the_median(monkeypatch) -> None:
    monkeypatch.setattr(cal, "_disturbed", lambda share, threads: False)  # a quiet machine
    # one slow block (a page fault, a neighbour), then fast ones: any 3 blocks in a row have median 0.2 s, best 0.1
    out = cal.calibrate("cpu", threads=1, seconds=0.0, dtypes=("fp32",), clock=FakeClock([0.5, 0.1, 0.2]))
    assert "reason" not in out, out
    # the first product already took >= 20 ms, so n = 256; the batched shape has the same FLOPs
    assert out["matmul_gflops"]["fp32"] == pytest.approx(2 * 256**3 / 0.1 / 1e9)
    assert set(out["shapes"]["fp32"]) == {"mm 256x256x256", "bmm 8x128x128x128"}
    assert all(s["blocks"] == cal.MIN_BLOCKS and not s["disturbed"] for s in out["shapes"]["fp32"].values())
    assert out["copy_gbps"] == pytest.approx(2 * 64 * 2**20 / 0.1 / 1e9)
    assert out["disturbed"] is False and out["method"].startswith("best of")


def test_a_disturbed_figure_is_tried_again_and_flagged(monkeypatch) -> None:
    monkeypatch.setattr(cal, "_disturbed", lambda share, threads: True)  # other processes took the cores
    monkeypatch.setattr(cal, "_idle_now", lambda threads: True)  # ... and look idle between attempts
    out = cal.calibrate("cpu", threads=1, seconds=0.0, dtypes=("fp32",), clock=FakeClock([0.1]))
    figure = out["shapes"]["fp32"]["mm 256x256x256"]
    assert figure["attempts"] == cal.ATTEMPTS and figure["blocks"] == cal.ATTEMPTS * cal.MIN_BLOCKS
    assert figure["disturbed"] and out["disturbed"]
    monkeypatch.setattr(cal, "_idle_now", lambda threads: False)  # still busy: a retry would be disturbed too
    out = cal.calibrate("cpu", threads=1, seconds=0.0, dtypes=("fp32",), clock=FakeClock([0.1]))
    assert out["shapes"]["fp32"]["mm 256x256x256"]["attempts"] == 1 and out["disturbed"]


def test_calibrate_cached_measures_once_per_device_threads_and_dtype(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(cal, "calibrate", lambda device, threads, dtypes: calls.append((device, threads, dtypes))
                        or {"matmul_gflops": {dtypes[0]: 1.0}})
    cal._cached.cache_clear()
    try:
        for dtype in ("fp32", "bf16", "fp32"):
            cal.calibrate_cached("cpu", 1, dtype)
        assert calls == [("cpu", 1, ("fp32",)), ("cpu", 1, ("bf16",))]
    finally:
        cal._cached.cache_clear()


@pytest.mark.parametrize("identity, dtype, per_cycle", [
    ({"cpu_vendor": "AuthenticAMD", "cpu_family": 25, "cpu_model": 1, "cpu_isa": ["avx", "fma", "avx2"]}, "fp32", 32),
    ({"cpu_vendor": "AuthenticAMD", "cpu_family": 25, "cpu_model": 1, "cpu_isa": ["avx", "fma", "avx2"]}, "bf16", 32),
    ({"cpu_vendor": "AuthenticAMD", "cpu_family": 23, "cpu_model": 1, "cpu_isa": ["avx", "fma", "avx2"]}, "fp32", 16),
    ({"cpu_vendor": "AuthenticAMD", "cpu_family": 25, "cpu_model": 0x11, "cpu_isa": ["fma", "avx2", "avx512f"]},
     "fp32", 32),  # Zen 4: AVX-512 on 256-bit pipes
    ({"cpu_vendor": "GenuineIntel", "cpu_family": 6, "cpu_isa": ["fma", "avx2", "avx512f", "avx512_bf16"]}, "fp32", 64),
    ({"cpu_vendor": "GenuineIntel", "cpu_family": 6, "cpu_isa": ["fma", "avx2", "avx512f", "avx512_bf16"]}, "bf16",
     128),
    ({"cpu_vendor": "GenuineIntel", "cpu_family": 6, "cpu_isa": ["avx512f", "amx_tile", "amx_bf16"]}, "bf16", 2048),
    ({"cpu_vendor": "GenuineIntel", "cpu_family": 6, "cpu_isa": ["sse4_2", "avx"]}, "fp32", 16),
    ({"cpu_isa": ["asimd"]}, "fp32", None),  # not derivable: no figure rather than a wrong one
])
def test_theoretical_flop_per_cycle_from_the_isa(identity, dtype, per_cycle) -> None:
    got = cal.cpu_flop_per_cycle(identity, dtype)
    assert (got and got[0]) == per_cycle


def test_theoretical_peak_of_a_cpu_and_of_a_gpu(monkeypatch) -> None:
    import torch

    from attnbench import machine

    monkeypatch.setattr(machine, "cpu_identity", lambda: {"cpu_vendor": "AuthenticAMD", "cpu_family": 25,
                                                          "cpu_model": 1, "cpu_isa": ["avx", "fma", "avx2"]})
    monkeypatch.setattr(machine, "cpu_max_ghz", lambda: (2.45, "cpu MHz"))
    monkeypatch.setattr(machine, "physical_cores", lambda: 2)
    t = cal.theoretical_gflops("cpu", 4, "fp32")  # 4 threads on 2 cores: the FMA pipes of 2
    assert t["gflops"] == pytest.approx(2 * 32 * 2.45) and "2 core(s) x 32 flop/cycle" in t["basis"]
    h100 = types.SimpleNamespace(major=9, minor=0, multi_processor_count=132, clock_rate=1_980_000)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: h100)
    assert cal.theoretical_gflops("cuda:0", 1, "bf16")["gflops"] == pytest.approx(132 * 4096 * 1.98)
    h100.major = 12  # a capability the table does not hold: omitted
    assert cal.theoretical_gflops("cuda:0", 1, "bf16") is None


def _rows(achieved: dict[str, float], peak: float) -> pd.DataFrame:
    rows = [dict(model=m, scope="layer", skeleton="layer", seq_len=1024, batch=1, dtype="fp32", device="cpu",
                 mode="infer", status="ok", hparams="{}", params=1, macs=1e9, peak_mem_bytes=1.0, num_threads=2,
                 latency_ms_median=2e3 / g, latency_ms_iqr=0.01, throughput_per_s=1.0, achieved_gflops=g,
                 peak_gflops=peak, peak_share=g / peak) for m, g in achieved.items()]
    return pd.DataFrame(rows, columns=ALL_COLUMNS)


META = {"calibration": {"device": "cpu", "threads": 2, "method": "best of >= 5 blocks",
                        "matmul_gflops": {"fp32": 70.7},
                        "theoretical_gflops": {"fp32": {"gflops": 156.5, "basis": "2 core(s) x 32 flop/cycle"}}}}


def test_a_share_above_the_calibration_is_re_based_and_said_once() -> None:
    from attnbench.reporting import report
    from attnbench.reporting.format import absolute_display
    from attnbench.reporting import rich_tables

    df = _rows({"softmax": 99.0, "soft": 35.0, "performer": 70.0}, peak=70.7)  # softmax: 140 % of the calibration
    rep = report(df, meta=[META], write=False, plots=False)
    shares = rep.absolute.set_index("model")["peak_share"]
    assert shares.max() == pytest.approx(1.0) and shares["softmax"] == pytest.approx(1.0)
    assert shares["soft"] == pytest.approx(35 / 99)  # re-based on the best rate observed, not on 70.7
    shown = absolute_display(rep.absolute)["% of peak"]
    assert all(float(v.rstrip("%")) <= 100 for v in shown)
    assert rep.markdown.count("% of peak re-based") == 1
    assert "1 cell(s) ran faster than the calibrated matmul peak (up to 140% of it)" in rep.markdown
    assert "99 GFLOP/s, `softmax` N=1,024 infer = 100%" in rep.markdown
    assert "fp32 70.7 GFLOP/s sustained, 45% of the theoretical 156 GFLOP/s" in rep.markdown  # beside the theory
    assert "% of peak re-based" in _terminal(rich_tables(rep))  # the terminal says it too


def _terminal(renderables: list) -> str:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, record=True)
    for r in renderables:
        console.print(r)
    return " ".join(console.export_text().split())


def test_shares_below_the_calibration_are_left_as_measured() -> None:
    from attnbench.reporting import report

    rep = report(_rows({"softmax": 35.0, "soft": 7.0}, peak=70.0), meta=[META], write=False, plots=False)
    assert rep.absolute.set_index("model")["peak_share"].to_dict() == pytest.approx({"softmax": 0.5, "soft": 0.1})
    assert "re-based" not in rep.markdown


def test_calibrating_never_imports_cpp_extension_whose_import_warns_about_cuda_home() -> None:
    code = ("import sys\nimport attnbench.measure.calibrate as c\nc.MAX_N = {'cpu': 256}\n"
            "c.calibrate('cpu', threads=1, seconds=0.0, dtypes=('fp32',))\n"
            "print('torch.utils.cpp_extension' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False" and "No CUDA runtime" not in out.stderr
