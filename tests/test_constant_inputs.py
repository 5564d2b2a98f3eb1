"""A constant input is fused, but said: a PAN whose every valid pixel has one value (all zeros from a failed download,
a fill-only file) leaves the output the upsampled MS with no PAN detail, and a dead (constant) MS band an output band
with nothing of that band in it. Both look plausible, so ddrf-run says one line naming the file, records it in the
scene's report (inputs.warnings) and goes on. Checked on the preview the engine reads anyway (Scene.preview keeps
it). docs/RELIABILITY.md lists these cases."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from ddrf.scenes.scene import Scene
from test_bad_inputs import MS_T, pair, run, write_tif


def constant_pan(folder: Path, value: float) -> tuple[Path, Path]:
    pan, ms = pair(folder)
    write_tif(pan, np.full((64, 64), value))
    return pan, ms


def constant_ms_band(folder: Path) -> tuple[Path, Path]:
    pan, ms = pair(folder)
    with rasterio.open(ms) as src:
        data = src.read()
    data[2] = 7000  # band 3 (red, assumed order) dead
    write_tif(ms, data, MS_T)
    return pan, ms


def warning_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "constant (every valid pixel is" in line]


CASES = {
    "all-zero PAN": (lambda d: constant_pan(d, 0), "pan.tif", r"pan\.tif: constant \(every valid pixel is 0\); "
                     r"the output has no PAN detail: check the file"),
    "constant PAN": (lambda d: constant_pan(d, 1234), "pan.tif", r"pan\.tif: constant \(every valid pixel is 1234\)"),
    "constant MS band": (constant_ms_band, "ms.tif", r"ms\.tif: band 3 \(red\) constant \(every valid pixel is "
                         r"7000\); the output's red band has no MS content: check the file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_constant_input_is_said_recorded_and_fused(case: str, tmp_path: Path) -> None:
    build, named, problem = CASES[case]
    pan, ms = build(tmp_path / "in")
    out = tmp_path / "out" / "x.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 0, result.output
    lines = warning_lines(result.output)
    assert len(lines) == 1, result.output
    assert lines[0].startswith("ddrf-run: ") and str(tmp_path / "in" / named) in lines[0]
    assert re.search(problem, lines[0]), lines[0]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["status"] == "done"
    assert len(report["inputs"]["warnings"]) == 1 and lines[0].endswith(report["inputs"]["warnings"][0])
    with rasterio.open(out) as src:
        assert src.read().shape == (4, 64, 64)


def test_a_normal_pair_says_nothing(tmp_path: Path) -> None:
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out" / "x.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 0, result.output
    assert warning_lines(result.output) == [] and "constant" not in result.output
    assert json.loads(out.with_suffix(".json").read_text())["inputs"]["warnings"] == []
    assert out.is_file()


def test_a_constant_pan_is_said_with_the_default_model(tmp_path: Path) -> None:
    """The bundled model reads the preview for its statistics; the check reuses it."""
    pan, ms = constant_pan(tmp_path / "in", 0)
    out = tmp_path / "out" / "x.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--threads", "1")
    assert result.exit_code == 0, result.output
    assert any(str(pan) in line for line in warning_lines(result.output)), result.output
    assert json.loads(out.with_suffix(".json").read_text())["inputs"]["warnings"], result.output
    assert out.is_file()


def test_the_preview_is_read_once_per_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pan, ms = pair(tmp_path / "in")
    scene = Scene.from_paths(pan, ms)
    reads = []
    original = Scene._read_preview
    monkeypatch.setattr(Scene, "_read_preview", lambda self, side: reads.append(side) or original(self, side))
    assert scene.preview() is scene.preview()
    assert reads == [1024]


@pytest.mark.parametrize("cols", [16, 31])
def test_an_ms_covering_part_of_the_pan_is_said_and_recorded(cols: int, tmp_path: Path) -> None:
    """An MS over the left part of the PAN: the fused overlap, nodata on the rest, and one line saying how much is
    covered (31 of 32 MS columns is one MS pixel short of the edge: said nothing, as the alignment's slack)."""
    pan, ms = pair(tmp_path / "in")
    with rasterio.open(ms) as src:
        write_tif(ms, src.read()[:, :, :cols], MS_T)
    out = tmp_path / "out" / "x.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "the MS covers" in line]
    warnings = json.loads(out.with_suffix(".json").read_text())["inputs"]["warnings"]
    with rasterio.open(out) as dst:
        fused, nodata = dst.read(), dst.nodata
    if cols == 31:
        assert lines == [] and warnings == []
        return
    assert lines == [f"ddrf-run: {ms}: the MS covers 50.0 % of the PAN pan.tif (rows 0-63 of 64, columns 0-31 of "
                     "64); the output is nodata elsewhere"], result.output
    assert warnings == [lines[0].removeprefix("ddrf-run: ")]
    assert (fused[:, :, 32:] == nodata).all() and (fused[:, :, :32] != nodata).all()


def test_a_cubes_dead_bands_are_one_line_with_every_band_in_the_json_log(tmp_path: Path) -> None:
    """A 12-band cube with 6 dead bands (0 everywhere, no nodata tag), as Hyperion delivers tens: one line for the
    file naming the runs of bands, one report warning, and the JSON log record lists each band."""
    dead = [1, 2, 3, 6, 8, 9]
    pan, ms = pair(tmp_path / "in", bands=12)
    with rasterio.open(ms) as src:
        data = src.read()
    data[[band - 1 for band in dead]] = 0
    write_tif(ms, data, MS_T)
    out = tmp_path / "out" / "x.tif"
    args = ("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "GSA")
    result = run(*args)
    assert result.exit_code == 0, result.output
    lines = warning_lines(result.output)
    assert lines == [f"ddrf-run: {ms}: bands 1-3, 6, 8-9 constant (every valid pixel is 0); those 6 bands of the "
                     "output have no MS content: check the file"], result.output
    assert json.loads(out.with_suffix(".json").read_text())["inputs"]["warnings"] == [lines[0][len("ddrf-run: "):]]
    result = run(*args, "--overwrite", "--log-format", "json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    said = [r for r in records if "constant (every valid pixel is" in r.get("message", "")]
    assert len(said) == 1 and said[0]["message"] == lines[0][len("ddrf-run: "):]
    assert [(b["file"], b["band"], b["value"]) for b in said[0]["constant_bands"]] == [(str(ms), b, 0) for b in dead]
