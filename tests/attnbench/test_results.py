"""The results file: a row torn by a crash mid-write is dropped with a warning, and the next row lands cleanly."""
from __future__ import annotations

import warnings

import pytest

from attnbench.results import append_row, load_results


def _row(n: int) -> dict:
    return dict(model="soft", scope="layer", skeleton="layer", seq_len=n, batch=1, dtype="fp32", device="cpu",
                mode="infer", status="ok", hparams={"landmarks": 49})


def test_torn_last_row_is_dropped_and_the_next_append_is_clean(tmp_path):
    append_row(tmp_path, _row(1024))
    append_row(tmp_path, _row(2048))
    path = tmp_path / "results.csv"
    path.write_bytes(path.read_bytes() + b'soft,layer,layer,4096,1,fp32,cpu,infer,ok,,,,,"[')  # crash mid-row
    with pytest.warns(UserWarning, match="torn last row"):
        assert load_results(tmp_path).seq_len.tolist() == [1024, 2048]
    with warnings.catch_warnings(record=True) as again:  # the same torn row is reported once, not per read
        warnings.simplefilter("always")
        append_row(tmp_path, _row(8192))
    assert not [w for w in again if "torn last row" in str(w.message)]
    assert load_results(tmp_path).seq_len.tolist() == [1024, 2048, 8192]
    assert path.read_bytes().endswith(b"\n")


def test_a_corrupt_middle_is_still_an_error(tmp_path):
    append_row(tmp_path, _row(1024))
    path = tmp_path / "results.csv"
    path.write_text(path.read_text() + 'soft,"unterminated\n')
    with pytest.raises(ValueError, match="corrupt results file"):
        load_results(tmp_path)
