"""One run's scenes never write one another's files, a bad --stac-catalog is refused before any scene, and a Landsat
scene fused without some of its MTL's band files says so. docs/RELIABILITY.md lists these cases.

Cheap: copies of the sample scene, GSA (no torch).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ddrf.scenes.command import SUMMARY_NAME, app
from scenes_fixtures import SAMPLE
from test_bad_inputs import assert_one_line, leftovers
from test_output_guards import write_item


def run(*args: str) -> "object":
    return CliRunner().invoke(app, [*args, "--no-progress"])


def scene(where: Path) -> Path:
    return Path(shutil.copytree(SAMPLE, where))


# ------------------------------------------------------------------ 1. outputs of two scenes collide
def test_scene_whose_report_is_another_scenes_stac_item_is_refused(tmp_path: Path) -> None:
    """Scene A's STAC Item A.item.json is scene A.item's report: refused before any work, even with --overwrite."""
    a, b = scene(tmp_path / "x" / "A"), scene(tmp_path / "x" / "A.item")
    out = tmp_path / "out"
    result = run(str(a), str(b), "-o", str(out), "--method", "GSA", "--overwrite")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "A.item.json", "would also be written by", "ddrf-run:")
    assert not out.exists()


def test_scene_whose_spread_map_is_another_scenes_raster_is_refused(tmp_path: Path) -> None:
    a, b = scene(tmp_path / "x" / "A"), scene(tmp_path / "x" / "A_spread")
    result = run(str(a), str(b), "-o", str(tmp_path / "out"), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "A_spread.tif", "would also be written by", "ddrf-run:")


def test_stac_items_whose_outputs_collide_are_refused(tmp_path: Path) -> None:
    first = write_item(tmp_path / "items" / "one.json", item_id="A")
    second = write_item(tmp_path / "items" / "two.json", item_id="A.item")
    out = tmp_path / "out"
    result = run(str(first), str(second), "-o", str(out), "--method", "GSA", "--overwrite")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "A.item.json", "would also be written by", "ddrf-run:")
    assert not list(out.glob("*.tif")) and not list(out.glob("*.json"))


def test_stac_item_whose_report_is_the_summary_is_refused(tmp_path: Path) -> None:
    item = write_item(tmp_path / "items" / "one.json", item_id=Path(SUMMARY_NAME).stem)
    result = run(str(item), "-o", str(tmp_path / "out"), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, SUMMARY_NAME, "overwrite the run summary", "ddrf-run:")


# ------------------------------------------------------------------ 2. --stac-catalog checked up front
def bad_catalog(tmp_path: Path, kind: str) -> tuple[Path, str, str]:
    """(--stac-catalog DIR, the name the line must hold, what it must say)."""
    if kind == "corrupt":
        (tmp_path / "cat").mkdir()
        (tmp_path / "cat" / "catalog.json").write_text("{bad")
        return tmp_path / "cat", "catalog.json", "not a STAC catalogue"
    if kind == "not_a_catalog":
        (tmp_path / "cat").mkdir()
        (tmp_path / "cat" / "catalog.json").write_text(json.dumps({"type": "Feature", "id": "x"}))
        return tmp_path / "cat", "catalog.json", "not a STAC catalogue"
    if kind == "parent_is_a_file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "cat", "cat", "cannot write the STAC catalogue"
    if os.geteuid() == 0:  # root writes through file modes: sysfs refuses new entries to anyone
        return Path("/sys/ddrf-catalog-test"), "ddrf-catalog-test", "cannot write the STAC catalogue"
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat").chmod(0o555)
    return tmp_path / "cat", "cat", "cannot write the STAC catalogue"


@pytest.mark.parametrize("kind", ["corrupt", "not_a_catalog", "parent_is_a_file", "read_only"])
def test_bad_stac_catalog_is_refused_before_any_scene(tmp_path: Path, kind: str) -> None:
    catalog, names, problem = bad_catalog(tmp_path, kind)
    out = tmp_path / "out"
    result = run(str(SAMPLE), "-o", str(out), "--method", "GSA", "--stac-catalog", str(catalog))
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, names, problem, "ddrf-run:")
    assert "done" not in result.output and "failed" not in result.output
    assert leftovers(out) == []


# ------------------------------------------------------------------ 3. MTL band files absent
def test_landsat_scene_without_a_band_file_says_which_and_records_it(tmp_path: Path) -> None:
    directory = scene(tmp_path / "s")
    b5 = next(directory.glob("*_B5.TIF"))
    b5.unlink()
    result = run(str(directory), "-o", str(tmp_path / "out"), "--method", "GSA")
    assert result.exit_code == 0, result.output
    assert_one_line(result.output, b5.name, r"missing.*fusing the bands present: blue, green, red$", "ddrf-run:")
    report = json.loads((tmp_path / "out" / "s.json").read_text())
    assert report["inputs"]["bands_missing"]["nir"] == str(b5)
    assert report["scene"]["band_names"] == ["blue", "green", "red"]
