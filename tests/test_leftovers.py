"""What a failed or killed run leaves behind: a failed STAC Item scene removes its band wrappers (OUT/.ddrf-stac/<id>/),
and a run killed between renaming a scene's report and its raster (renamed last) is redone by the next run without
--overwrite, while a complete output, or a file that is not that run's report, is still never replaced.

Cheap: the 64 x 64 pair of tests/test_bad_inputs.py or the sample scene, GSA (no torch).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

import ddrf.files
import ddrf.scenes.jobs
from ddrf.scenes.command import SUMMARY_NAME
from ddrf.files import STAC_WORK_DIR as WORK_DIR
from test_bad_inputs import assert_one_line, leftovers, pair
from test_output_guards import run, write_item


# ------------------------------------------------------------------ 1. a failed Item scene's band wrappers
def test_a_failed_item_scene_removes_its_band_wrappers(tmp_path: Path) -> None:
    """The scene fails (a file of the user's where its report goes): OUT/.ddrf-stac/bad/ and then the empty
    .ddrf-stac go; the user's file stays."""
    item = write_item(tmp_path / "items" / "bad.json", item_id="bad")
    out = tmp_path / "out"
    out.mkdir()
    (out / "bad.json").write_text("my notes\n")
    result = run(str(item), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, "bad.json", "exists, but bad.tif does not", "ddrf-run:")
    assert sorted(p.name for p in out.iterdir()) == ["bad.json", SUMMARY_NAME]
    assert (out / "bad.json").read_text() == "my notes\n"


def test_a_failed_item_scene_leaves_other_wrappers_alone(tmp_path: Path) -> None:
    """Beside a done Item (its wrappers kept: its report names them) and an earlier run's folder, only the failed
    Item's own folder goes."""
    good = write_item(tmp_path / "items" / "good.json", item_id="good")
    bad = write_item(tmp_path / "items" / "bad.json", item_id="bad")
    out = tmp_path / "out"
    (out / WORK_DIR / "earlier").mkdir(parents=True)
    (out / WORK_DIR / "earlier" / "pan.vrt").write_text("<VRTDataset/>")
    (out / "bad.json").write_text("my notes\n")
    result = run(str(good), str(bad), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 1, result.output
    counts = json.loads((out / SUMMARY_NAME).read_text())["counts"]
    assert (counts["done"], counts["failed"]) == (1, 1)
    assert sorted(p.name for p in (out / WORK_DIR).iterdir()) == ["earlier", "good"]
    assert (out / WORK_DIR / "earlier" / "pan.vrt").read_text() == "<VRTDataset/>"
    wrappers = sorted(p.name for p in (out / WORK_DIR / "good").iterdir())
    assert "pan.vrt" in wrappers and len(wrappers) == 5  # PAN and the four MS bands
    report = json.loads((out / "good.json").read_text())
    assert Path(report["inputs"]["pan"]).is_file()


# ------------------------------------------------------------------ 2. killed between the renames
class Killed(BaseException):
    """The process dying: nothing after it runs, no except clause of the scene's sees it."""


def die_before_the_last_rename(pending: list[tuple[Path, Path]]) -> None:
    """publish_all as a kill would leave it: the renames in the real order, all but the last done, and that one's
    temporary left."""
    for temp, final in pending[:-1]:
        ddrf.files.publish(temp, final)
    raise Killed


def test_a_run_killed_between_its_renames_is_redone_without_overwrite(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out"
    args = ["--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--method", "GSA", "--quicklook"]
    monkeypatch.setattr(ddrf.scenes.jobs, "publish_all", die_before_the_last_rename)
    with pytest.raises(Killed):
        run(*args)
    monkeypatch.undo()
    # the raster is renamed last: the report and quicklook came, the raster did not
    assert sorted(leftovers(out)) == sorted(["x.json", "x_quicklook.png", *(p.name for p in out.glob(".x.tif.*"))])
    assert not (out / "x.tif").exists() and list(out.glob(".x.tif.*.ddrf-part"))

    result = run(*args)  # no --overwrite
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "interrupted run" in line]
    assert len(lines) == 1, result.output
    assert_one_line(result.output, str(out / "x.json"), r"interrupted run .*x\.tif.*fusing the scene again",
                    "ddrf-run:")
    assert sorted(leftovers(out)) == ["x.item.json", "x.json", "x.tif", "x_quicklook.png"]  # no temporary either
    assert json.loads((out / "x.json").read_text())["status"] == "done"

    before = (out / "x.tif").stat().st_mtime_ns
    result = run(*args)  # now complete: kept, not redone
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "interrupted run" not in result.output
    assert (out / "x.tif").stat().st_mtime_ns == before


def test_an_overwrite_killed_between_its_renames_never_leaves_a_new_report_beside_the_old_raster(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--overwrite over a finished output, killed before its raster's rename: the old raster and Item are gone (the
    scene is unfinished, not finished with a report of another run), and the next run without --overwrite redoes
    it into a consistent set."""
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out"
    args = ["--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--method", "GSA"]
    assert run(*args).exit_code == 0
    old_report = json.loads((out / "x.json").read_text())
    monkeypatch.setattr(ddrf.scenes.jobs, "publish_all", die_before_the_last_rename)
    with pytest.raises(Killed):
        run(*args, "--overwrite", "--method", "BDSD-PC")  # another method: a report that differs from the old one
    monkeypatch.undo()
    assert not (out / "x.tif").exists() and not (out / "x.item.json").exists()
    assert json.loads((out / "x.json").read_text())["engine"] != old_report["engine"]

    result = run(*args, "--method", "BDSD-PC")  # no --overwrite
    assert result.exit_code == 0 and "interrupted run" in result.output, result.output
    assert sorted(leftovers(out)) == ["x.item.json", "x.json", "x.tif"]
    report = json.loads((out / "x.json").read_text())
    assert report["status"] == "done" and report["engine"] != old_report["engine"]


def another_rasters_report(out: Path, tmp_path: Path) -> None:
    pan, ms = pair(tmp_path / "in2")
    assert run("--pan", str(pan), "--ms", str(ms), "-o", str(out / "y.tif"), "--method", "GSA").exit_code == 0
    shutil.copy(out / "y.json", out / "x.json")


def raster_removed_after_it_was_published(out: Path, tmp_path: Path) -> None:
    """A raster that came is not gone by a kill: its STAC Item (written after it) says it was published."""
    pan, ms = pair(tmp_path / "in2")
    assert run("--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--method", "GSA").exit_code == 0
    (out / "x.tif").unlink()


def report_of_another_shape(out: Path, tmp_path: Path) -> None:
    out.mkdir(parents=True)
    (out / "x.json").write_text(json.dumps({"report_version": 1, "status": "done", "outputs": {"raster": 5}}))


@pytest.mark.parametrize("make", [another_rasters_report, raster_removed_after_it_was_published,
                                  report_of_another_shape])
def test_a_report_that_no_kill_left_is_still_refused(make: Callable[[Path, Path], None], tmp_path: Path) -> None:
    out = tmp_path / "out"
    make(out, tmp_path)
    before = (out / "x.json").read_bytes()
    pan, ms = pair(tmp_path / "in")
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--method", "GSA")
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, "x.json", "exists, but x.tif does not.*--overwrite", "ddrf-run:")
    assert "interrupted run" not in result.output
    assert (out / "x.json").read_bytes() == before and not (out / "x.tif").exists()


def test_the_api_leaves_no_band_wrappers_after_a_failed_item_scene(tmp_path: Path) -> None:
    """ddrf.fuse_scene on an Item whose scene fails: the one-line ValueError, and no .ddrf-stac left, as ddrf-run."""
    import ddrf

    item = write_item(tmp_path / "items" / "bad.json", item_id="bad")
    out = tmp_path / "out"
    out.mkdir()
    (out / "bad.json").write_text("my notes\n")
    with pytest.raises(ValueError, match="exists, but bad.tif does not"):
        ddrf.fuse_scene(item, out, method="GSA")
    assert sorted(p.name for p in out.iterdir()) == ["bad.json"]
