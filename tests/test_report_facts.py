"""What a scene's JSON report records of the run itself: the batch the engine was given (a call never spans two row
strips of windows, so a --batch above one strip's windows is not what ran; a float output's valid pixels:
tests/test_output_types.py). GSA on the sample scene keeps it cheap (no torch)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from ddrf.scenes import streaming
from test_output_types import BANDS, run, sample_pair


def test_the_report_records_the_batch_that_ran_and_the_one_asked(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    original = streaming.read_batches

    def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:  # the real batches, their sizes noted on the way
        for batch in original(*args, **kwargs):
            sizes.append(len(batch.windows))
            yield batch

    monkeypatch.setattr(streaming, "read_batches", counted)
    pan, ms = sample_pair(tmp_path / "in", lambda a: a)
    out = tmp_path / "out.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--bands", ",".join(BANDS), "--method", "GSA",
                 "--tile", "128", "--batch", "64")
    assert result.exit_code == 0, result.output
    tiling = json.loads(out.with_suffix(".json").read_text())["tiling"]
    assert sizes and max(sizes) < 64  # the scene's row strips hold fewer windows than asked
    assert tiling["batch"] == max(sizes) and tiling["batch_asked"] == 64

