"""The one-line error contract shared by every entry point."""
from __future__ import annotations

import pytest

from vsr_accel.core.errors import DataError, one_line, report_user_errors


def test_one_line_unfolds_a_dataloader_worker_error():
    # What torch's ExceptionWrapper.reraise builds for an error raised in a worker.
    folded = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                       '  File "x.py", line 1, in f\n'
                       "vsr_accel.core.errors.DataError: data/a/00000001.png: cannot decode image")
    assert one_line(folded) == "data/a/00000001.png: cannot decode image"
    assert one_line(DataError("data/b: folder not found")) == "data/b: folder not found"


def test_report_user_errors_prints_one_line_and_returns_2(capsys):
    def fail() -> int:
        raise DataError("data/b: folder not found")

    assert report_user_errors(fail, debug=False) == 2
    assert capsys.readouterr().err == "error: data/b: folder not found\n"
    with pytest.raises(DataError):
        report_user_errors(fail, debug=True)
    assert report_user_errors(lambda: 0, debug=False) == 0
