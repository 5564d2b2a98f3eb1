"""Outputs never replace what they should not: an input (a STAC Item, its assets), a side file of the user's beside
a missing raster, a directory in an output's place; a scene that fails at its last rename leaves no report; doubtful
inputs (repeated band names, a file or scene given twice) are usage errors. docs/RELIABILITY.md lists these cases.

Cheap: the 64 x 64 pair of tests/test_bad_inputs.py or the sample scene, GSA, the committed tiny model (no torch).
"""
from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ddrf.files
from ddrf.scenes.command import SUMMARY_NAME, app
from scenes_fixtures import SAMPLE, TINY_MODEL
from stac_fixtures import LANDSAT_BANDS, landsat_item
from test_bad_inputs import MS_T, assert_one_line, leftovers, pair, snapshot, write_tif


def run(*args: str) -> "object":
    return CliRunner().invoke(app, [*args, "--no-progress"])


def write_item(path: Path, item_id: str = "myscene", **hrefs: Path) -> Path:
    """A Landsat-style Item over the sample scene's files (`hrefs`: band -> another file, e.g. B8=...)."""
    files = {band: next(SAMPLE.glob(f"*_{band}.TIF")) for band in LANDSAT_BANDS}
    document = landsat_item(files, str(SAMPLE), item_id)
    for band, href in hrefs.items():
        document["assets"][LANDSAT_BANDS[band]]["href"] = str(href)  # assets are keyed by common name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


# ------------------------------------------------------------------ 1. an input is never an output
def test_stac_item_in_its_output_directory_is_refused_before_any_work(tmp_path: Path) -> None:
    """`ddrf-run st/myscene.item.json -o st` would publish st/myscene.item.json over the input Item."""
    item = write_item(tmp_path / "st" / "myscene.item.json")
    before = item.read_bytes()
    result = run(str(item), "-o", str(tmp_path / "st"), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "myscene.item.json", "is an input of STAC Item", "ddrf-run:")
    assert item.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "st").iterdir()) == ["myscene.item.json"]  # no .ddrf-stac, no output


def test_stac_asset_that_is_an_output_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    """An Item whose PAN asset is OUT/<id>.tif: the band wrappers hid it from the scene's input check."""
    out = tmp_path / "out"
    out.mkdir()
    pan = Path(shutil.copy(next(SAMPLE.glob("*_B8.TIF")), out / "myscene.tif"))
    item = write_item(tmp_path / "myscene.json", B8=pan)
    inputs = snapshot(out)
    result = run(str(item), "-o", str(out), "--method", "GSA", "--overwrite")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "myscene.tif", "is an input of STAC Item", "ddrf-run:")
    assert snapshot(out) == inputs and sorted(p.name for p in out.iterdir()) == ["myscene.tif"]


def test_stac_item_id_that_is_a_path_is_refused(tmp_path: Path) -> None:
    """The id names the outputs: '../escape' would write beside the output directory."""
    item = write_item(tmp_path / "in" / "item.json", item_id="../escape")
    result = run(str(item), "-o", str(tmp_path / "out" / "sub"), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "item.json", "no plain file name", "ddrf-run:")
    assert not (tmp_path / "out").exists()


def test_stac_item_into_an_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    """The band wrappers are made under OUT before the scene runs: a failure there is a usage line, no traceback."""
    item = write_item(tmp_path / "item.json")
    (tmp_path / "file").write_text("x")
    result = run(str(item), "-o", str(tmp_path / "file" / "out"), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "file", "cannot write the output here", "ddrf-run:")


# ------------------------------------------------------------------ 2. side files are checked like the raster
SIDE_CASES = {"res.json": ["--method", "GSA"], "res.item.json": ["--method", "GSA"],
              "res_quicklook.png": ["--method", "GSA", "--quicklook"],
              "res_spread.tif": ["--model", str(TINY_MODEL), "--threads", "1", "--uncertainty", "2"]}


@pytest.mark.parametrize("name", list(SIDE_CASES))
def test_a_side_file_without_its_raster_is_the_users_and_kept(name: str, tmp_path: Path) -> None:
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "o3"
    out.mkdir()
    (out / name).write_text("mine\n")
    args = ["--pan", str(pan), "--ms", str(ms), "-o", str(out / "res.tif"), *SIDE_CASES[name]]
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, name, "exists, but res.tif does not.*--overwrite", "ddrf-run:")
    assert sorted(p.name for p in out.iterdir()) == [name] and (out / name).read_text() == "mine\n"
    result = run(*args, "--overwrite")  # asked: replaced
    assert result.exit_code == 0, result.output
    assert (out / name).read_bytes() != b"mine\n" and (out / "res.tif").is_file()


def test_scene_directories_a_stray_report_fails_its_scene_only(tmp_path: Path) -> None:
    """Batch semantics: a scene whose raster exists is already done (skipped); one with only a side file of the
    user's fails with one line; the other scenes run."""
    scenes = [str(shutil.copytree(SAMPLE, tmp_path / name)) for name in ("a", "b")]
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.json").write_text("my notes\n")
    for done, skipped in ((1, 0), (0, 1)):  # the rerun skips a, and still refuses b
        result = run(*scenes, "-o", str(out), "--method", "GSA")
        assert result.exit_code == 1, result.output
        assert_one_line(result.output, "b.json", "exists, but b.tif does not", "ddrf-run:")
        counts = json.loads((out / SUMMARY_NAME).read_text())["counts"]
        assert (counts["done"], counts["skipped"], counts["failed"]) == (done, skipped, 1)
    assert (out / "b.json").read_text() == "my notes\n" and not (out / "b.tif").exists()
    assert (out / "a.tif").is_file() and (out / "a.item.json").is_file()


# ------------------------------------------------------------------ 3. a directory in an output's place
def test_output_tif_that_is_a_directory_is_refused_before_any_work(tmp_path: Path) -> None:
    pan, ms = pair(tmp_path / "in")
    (tmp_path / "o5" / "isdir.tif").mkdir(parents=True)
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "o5" / "isdir.tif"), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "isdir.tif", "is a directory", "ddrf-run:")
    assert " window of" not in result.output and "windows of" not in result.output  # refused before the plan
    assert sorted(p.name for p in (tmp_path / "o5").iterdir()) == ["isdir.tif"]


def test_scene_output_that_is_a_directory_fails_the_scene_with_no_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / f"{SAMPLE.name}.tif").mkdir(parents=True)
    result = run(str(SAMPLE), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, f"{SAMPLE.name}.tif", "is a directory", "ddrf-run:")
    assert " window of" not in result.output and "windows of" not in result.output
    assert {p.name for p in out.iterdir()} == {SUMMARY_NAME, f"{SAMPLE.name}.tif"}


def test_a_failed_final_rename_leaves_no_report_claiming_done(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The raster is renamed last; when that rename fails, the report already renamed must go too."""
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out"
    rename = ddrf.files.publish

    def failing(temp: Path, final: Path) -> None:
        if Path(final).name == "x.tif":
            raise OSError(errno.EIO, "Input/output error", str(temp))
        rename(temp, final)

    monkeypatch.setattr(ddrf.files, "publish", failing)
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--method", "GSA")
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, "x.tif", "Input/output error", "ddrf-run:")
    assert ".ddrf-part" not in result.output  # the final name, not the temporary
    assert leftovers(out) == []


def test_publish_all_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a.json", tmp_path / "a.tif"
    second.mkdir()  # the last rename fails: a file cannot replace a directory
    pending = [(ddrf.files.stage_bytes(first, b"{}"), first), (ddrf.files.stage_bytes(second, b"tif"), second)]
    with pytest.raises(OSError) as caught:
        ddrf.files.publish_all(pending)
    assert caught.value.filename == str(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"] and second.is_dir()


# ------------------------------------------------------------------ 4. doubtful inputs
def doubtful(tmp: Path) -> dict[str, tuple[list[str], str, str]]:
    pan, ms = pair(tmp / "in")
    pm = ["--pan", str(pan), "--ms", str(ms), "-o", str(tmp / "out" / "x.tif"), "--method", "GSA"]
    (tmp / "link").symlink_to(SAMPLE)
    item = write_item(tmp / "item.json")
    nir = write_tif(tmp / "in" / "nir.tif", np.full((32, 32), 9000), MS_T)  # one band: twice it fused as two
    return {
        "bands_repeated": ([*pm, "--bands", "red,Red,green,blue"], "--bands", "names red more than once"),
        "bands_empty": ([*pm, "--bands", ""], "--bands", "names no band"),
        "bands_empty_name": ([*pm, "--bands", "red,,green,blue"], "--bands", "has an empty name"),
        "ms_twice": (["--pan", str(pan), "--ms", str(nir), "--ms", f"{tmp}/in/../in/nir.tif", *pm[4:]], "nir.tif",
                     "given twice as --ms"),
        "pan_as_ms": (["--pan", str(pan), "--ms", str(pan), "-o", str(tmp / "out" / "x.tif"), "--method", "GSA"],
                      "pan.tif", "as both --pan and --ms"),
        "scene_twice": ([str(SAMPLE), str(tmp / "link"), "-o", str(tmp / "out"), "--method", "GSA"], SAMPLE.name,
                        "same scene directory is given twice"),
        "item_twice": ([str(item), f"{tmp}/./item.json", "-o", str(tmp / "out"), "--method", "GSA"],
                       "item.json", "same STAC Item is given twice"),
    }


@pytest.mark.parametrize("case", ["bands_repeated", "bands_empty", "bands_empty_name", "ms_twice", "pan_as_ms",
                                  "scene_twice", "item_twice"])
def test_doubtful_inputs_are_usage_errors(case: str, tmp_path: Path) -> None:
    args, names, problem = doubtful(tmp_path)[case]
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, names, problem, "ddrf-run:")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ a hard link to an input; a raster not ddrf's
def test_an_output_that_is_a_hard_link_to_an_input_is_refused(tmp_path: Path) -> None:
    """A symlink to the MS was refused as an input; a hard link (the same file under another name) was skipped as a
    'finished output' and given a STAC Item calling the MS pansharpened."""
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.tif").hardlink_to(ms)
    before = ms.read_bytes()
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif"), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "x.tif", "is an input", "ddrf-run:")
    assert ms.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["x.tif"]


def test_a_raster_at_the_output_that_ddrf_did_not_write_is_not_skipped_as_finished(tmp_path: Path) -> None:
    """A file of the user's at OUT.tif (no ddrf report beside it naming it): one line, exit 1, nothing written; with
    --overwrite it is replaced. A finished ddrf output is still skipped."""
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    target = Path(shutil.copy(pan, out / "x.tif"))
    args = ["--pan", str(pan), "--ms", str(ms), "-o", str(target), "--method", "GSA"]
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, "x.tif", "is no ddrf-run output", "ddrf-run:")
    assert target.read_bytes() == pan.read_bytes() and sorted(p.name for p in out.iterdir()) == ["x.tif"]
    assert run(*args, "--overwrite").exit_code == 0
    again = run(*args)
    assert again.exit_code == 0 and "finished output exists" in again.output


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_the_source_file_behind_a_vrt_input_is_never_an_output(tmp_path: Path, overwrite: list[str]) -> None:
    """`--ms ms.vrt -o data.tif` where data.tif is the VRT's source: refused as 'no ddrf-run output ... pass
    --overwrite', and with --overwrite the MS data was replaced by the fused output (exit 0)."""
    import rasterio.shutil

    pan, ms = pair(tmp_path / "in")
    data = Path(shutil.copy(ms, tmp_path / "in" / "ms_data.tif"))
    vrt = tmp_path / "in" / "ms.vrt"
    rasterio.shutil.copy(str(data), str(vrt), driver="VRT")
    before = data.read_bytes()
    result = run("--pan", str(pan), "--ms", str(vrt), "-o", str(data), "--method", "GSA", *overwrite)
    assert result.exit_code == 1, result.output
    assert_one_line(result.output, "ms_data.tif", "is an input of scene", "ddrf-run:")
    assert data.read_bytes() == before
    assert sorted(p.name for p in data.parent.iterdir()) == sorted(["ms.vrt", "ms_data.tif", pan.name, ms.name])


def test_overwrite_removes_the_side_files_of_the_output_it_replaces(tmp_path: Path) -> None:
    """A rerun with --overwrite and no --uncertainty/--quicklook left the old run's spread map and quicklook beside
    the new raster, where they pass for its own."""
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out" / "x.tif"
    model = ["--model", str(TINY_MODEL), "--threads", "1"]
    first = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), *model, "--uncertainty", "2", "--quicklook")
    assert first.exit_code == 0, first.output
    mine = out.with_name("x_notes.txt")
    mine.write_text("the user's")
    assert {"x_spread.tif", "x_quicklook.png"} <= {p.name for p in out.parent.iterdir()}
    again = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), *model, "--overwrite")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.item.json", "x.json", "x.tif", "x_notes.txt"]


def test_a_finished_output_of_other_inputs_or_settings_is_not_skipped_as_finished(tmp_path: Path) -> None:
    """A finished output was skipped whatever this run asked (another scene, method, seed, samples): exit 0 with
    other pixels than asked for, and a run summary recording settings never applied. Now one line says what
    differs; the same run is still skipped."""
    pan, ms = pair(tmp_path / "in")
    other_pan = Path(shutil.copy(pan, tmp_path / "in" / "other_pan.tif"))
    out = tmp_path / "out" / "x.tif"
    first = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "GSA")
    assert first.exit_code == 0, first.output
    before = out.read_bytes()
    for args, differs in ((["--pan", str(pan), "--ms", str(ms), "--method", "GSA"], None),
                          (["--pan", str(other_pan), "--ms", str(ms), "--method", "GSA"], "inputs"),
                          (["--pan", str(pan), "--ms", str(ms), "--method", "BT-H"], "method (GSA, asked BT-H)"),
                          (["--pan", str(pan), "--ms", str(ms), "--model", str(TINY_MODEL)], "method (GSA, asked a"),
                          (["--pan", str(pan), "--ms", str(ms), "--method", "GSA", "--quicklook"], "no quicklook")):
        result = run(*args, "-o", str(out))
        if differs is None:
            assert result.exit_code == 0 and "finished output exists" in result.output, result.output
        else:
            assert result.exit_code == 1, result.output
            assert_one_line(result.output, "x.tif", re.escape(differs), "ddrf-run:")
        assert out.read_bytes() == before
    model = ["--pan", str(pan), "--ms", str(ms), "--model", str(TINY_MODEL), "--threads", "1", "-o",
             str(tmp_path / "m" / "x.tif")]
    assert run(*model).exit_code == 0
    again = run(*model, "--seed", "9")
    assert again.exit_code == 1 and "seed (0, asked 9)" in again.output, again.output


def test_a_scene_named_catalog_cannot_overwrite_the_stac_catalogue(tmp_path: Path) -> None:
    """A scene folder named `catalog` fused into the --stac-catalog folder: its report replaced catalog.json (the
    links lost, every later run refused), and the scene, reported failed, left its files. A usage error now."""
    out = tmp_path / "out"
    first = run(str(SAMPLE), "-o", str(out), "--method", "GSA", "--stac-catalog", str(out))
    assert first.exit_code == 0, first.output
    catalogue = (out / "catalog.json").read_bytes()
    scene = Path(shutil.copytree(SAMPLE, tmp_path / "in" / "catalog"))
    result = run(str(scene), "-o", str(out), "--method", "GSA", "--stac-catalog", str(out), "--overwrite")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "catalog", "would overwrite the STAC catalogue", "ddrf-run:")
    assert (out / "catalog.json").read_bytes() == catalogue and not (out / "catalog.tif").exists()


def test_a_finished_output_of_inputs_changed_since_is_not_skipped(tmp_path: Path) -> None:
    """A band file replaced at the same path (a fixed re-delivery) left the old output 'finished' with exit 0."""
    import os

    scene = Path(shutil.copytree(SAMPLE, tmp_path / "scene"))
    out = tmp_path / "out"
    assert run(str(scene), "-o", str(out), "--method", "GSA").exit_code == 0
    again = run(str(scene), "-o", str(out), "--method", "GSA")
    assert again.exit_code == 0 and "finished output exists" in again.output, again.output
    band = next(scene.glob("*_B4.TIF"))
    os.utime(band, ns=(band.stat().st_atime_ns, band.stat().st_mtime_ns + 10**9))  # rewritten a second later
    changed = run(str(scene), "-o", str(out), "--method", "GSA")
    assert changed.exit_code == 1, changed.output
    assert_one_line(changed.output, "scene.tif", re.escape(f"input contents ({band.name} changed since)"), "ddrf-run:")


def test_a_finished_output_of_a_model_folder_changed_since_is_not_skipped(tmp_path: Path) -> None:
    """The model folder re-exported or refitted (its card.json, which records every graph's sha256, rewritten) after
    the output was made: the rerun was skipped as finished and the Item, written then, took the new card's sha256.
    The report now keeps the card's sha256 as loaded; the Item takes it from there; a changed card is refused."""
    import hashlib

    model = Path(shutil.copytree(TINY_MODEL, tmp_path / "model"))
    card = model / "card.json"
    sha = hashlib.sha256(card.read_bytes()).hexdigest()
    pan, ms = pair(tmp_path / "in")
    out = tmp_path / "out" / "x.tif"
    args = ["--pan", str(pan), "--ms", str(ms), "-o", str(out), "--model", str(model), "--threads", "1"]
    assert run(*args).exit_code == 0
    assert json.loads(out.with_suffix(".json").read_text())["engine"]["card_sha256"] == sha
    card.write_text(card.read_text() + "\n")  # another card of the same graphs (a refitted spread, say)
    (tmp_path / "out" / "x.item.json").unlink()
    again = run(*args)
    assert again.exit_code == 1, again.output
    assert_one_line(again.output, "x.tif", re.escape("model card (card.json changed since:"), "ddrf-run:")
    assert not (tmp_path / "out" / "x.item.json").exists()
    from ddrf.scenes.stac_out import processing_properties  # an Item written from the report names the card used

    report = json.loads(out.with_suffix(".json").read_text())
    assert processing_properties(report)["ddrf:model_card_sha256"] == sha


def test_a_rerun_without_steps_over_an_output_made_with_other_steps_is_not_skipped(tmp_path: Path) -> None:
    """--steps 3, then the same run without --steps (the card's default, 2): other pixels, but skipped as finished
    (an option left out was not compared). Now the card's default is what is asked."""
    pan, ms = pair(tmp_path / "in")
    args = ["--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "out" / "x.tif"), "--model", str(TINY_MODEL),
            "--threads", "1"]
    assert run(*args, "--steps", "3").exit_code == 0
    assert run(*args, "--steps", "3").exit_code == 0  # the same run: skipped
    again = run(*args)
    assert again.exit_code == 1, again.output
    assert_one_line(again.output, "x.tif", re.escape("steps (3, asked 2)"), "ddrf-run:")


def test_a_rerun_naming_the_bands_or_sensor_otherwise_is_not_skipped(tmp_path: Path) -> None:
    """--bands or --sensor change which band is which (the model's inputs, a method's MTF gains, the output's band
    names): a finished output made with other names was skipped as finished. Names that agree still skip."""
    pan, ms = pair(tmp_path / "in")  # no band descriptions: blue, green, red, nir assumed
    args = ["--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "out" / "x.tif"), "--method", "GSA"]
    assert run(*args).exit_code == 0
    same = run(*args, "--bands", "blue,green,red,nir")
    assert same.exit_code == 0 and "finished output exists" in same.output, same.output
    renamed = run(*args, "--bands", "red,green,blue,nir")
    assert renamed.exit_code == 1, renamed.output
    assert_one_line(renamed.output, "x.tif", re.escape(f"band names ({ms.name} band 1: blue, asked red; "
                                                       f"{ms.name} band 3: red, asked blue)"), "ddrf-run:")
    sensor = run(*args, "--sensor", "QB")
    assert sensor.exit_code == 1 and "sensor (generic, asked QB)" in sensor.output, sensor.output


def test_two_runs_into_one_folder_at_once_keep_both_run_summaries(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ddrf-run processes on one -o (two cron jobs, different scenes): the second to finish replaced the first's
    run summary, so the first run's record was lost. Run A here starts and finishes while run B fuses its scene;
    B's summary is the top level (as before), A's is kept in `concurrent_runs`, and an older run's is dropped."""
    import ddrf.scenes.runner as runner

    scene_a, scene_b = (shutil.copytree(SAMPLE, tmp_path / name) for name in ("a", "b"))
    out = tmp_path / "out"
    out.mkdir()
    older = {"finished": "2000-01-01T00:00:00+00:00", "scenes": [{"name": "old", "status": "done"}]}
    (out / SUMMARY_NAME).write_text(json.dumps(older))
    real, inner = runner.run_job, []

    def run_a_meanwhile(job: object, *args: object, **kwargs: object) -> object:
        if job.name == "b":  # type: ignore[attr-defined]
            inner.append(run(str(scene_a), "-o", str(out), "--method", "Brovey"))
        return real(job, *args, **kwargs)

    monkeypatch.setattr(runner, "run_job", run_a_meanwhile)
    result = run(str(scene_b), "-o", str(out), "--method", "Brovey")
    assert result.exit_code == 0 and inner[0].exit_code == 0, (result.output, inner[0].output)
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert [(e["name"], e["status"]) for e in summary["scenes"]] == [("b", "done")]
    assert summary["counts"]["done"] == 1 and summary["started"] <= summary["finished"]
    kept = summary["concurrent_runs"]
    assert [[(e["name"], e["status"]) for e in r["scenes"]] for r in kept] == [[("a", "done")]]
    assert kept[0]["finished"] >= summary["started"] and "concurrent_runs" not in kept[0]
    assert not [p.name for p in out.iterdir() if p.name.endswith(ddrf.files.LOCK_SUFFIX)]
