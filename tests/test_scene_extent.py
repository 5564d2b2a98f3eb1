"""Overlapping scenes give the same pixels where they overlap when they share their statistics (--statistics-from).

The default model normalises each scene by its own percentiles and records its GroupNorm moments and attention
contexts over windows its scene chooses, so a crop of a scene came out different from the scene over the same
pixels (benchmarks/scene_extent.py: p99 31-155 % of a band's std on the sample scene). With `--statistics-from` every
scene of the run takes one scene's normalisation and statistics: what is left is local, so the crop reproduces the
scene to the tile-invariance bound. Made from the bundled sample scene with the default model.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from typer.testing import CliRunner

import ddrf
from ddrf.scenes.command import app
from scenes_fixtures import SAMPLE, reordered_generic_scene

FIRST, END, EDGE = 128, 512, 96  # the crop keeps these PAN columns; compared EDGE px away from its cut edge


def cropped(target: Path) -> Path:
    """The sample scene keeping PAN columns FIRST-END of every file (georeferenced; the MTL as is)."""
    shutil.copytree(SAMPLE, target)
    for path in target.glob("*.TIF"):
        ratio = 1 if path.name.endswith("_B8.TIF") else 2
        with rasterio.open(path) as src:
            window = Window(FIRST // ratio, 0, (END - FIRST) // ratio, src.height)
            data, profile = src.read(window=window), dict(src.profile)
            profile.update(width=window.width, transform=src.window_transform(window))
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    return target


def fuse(scene: Path, out: Path, *options: str) -> np.ndarray:
    result = CliRunner().invoke(app, [str(scene), "-o", str(out), "--no-progress", "--threads", "1", *options])
    assert result.exit_code == 0, result.output
    with rasterio.open(out / f"{scene.name}.tif") as ds:
        return ds.read().astype(np.float64)


def overlap_shares(whole: np.ndarray, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per band, p99 and max of |crop - whole| over the overlap (EDGE px from the cut edge left out) / band std."""
    want = whole[:, :, FIRST + EDGE:END].reshape(len(whole), -1)
    got = crop[:, :, EDGE:].reshape(len(whole), -1)
    difference, std = np.abs(got - want), want.std(axis=1)
    return np.percentile(difference, 99, axis=1) / std, difference.max(axis=1) / std


def test_a_crop_reproduces_the_scene_with_its_statistics(tmp_path: Path) -> None:
    crop = cropped(tmp_path / "crop" / SAMPLE.name)
    whole = fuse(SAMPLE, tmp_path / "whole")
    own_p99, _ = overlap_shares(whole, fuse(crop, tmp_path / "own"))
    assert own_p99.max() > 0.1, own_p99  # each scene its own statistics: far apart (why the option exists)
    shared = fuse(crop, tmp_path / "shared", "--statistics-from", str(SAMPLE))
    p99, top = overlap_shares(whole, shared)
    assert (p99 <= 0.005).all() and (top <= 0.02).all(), (p99, top)
    report = json.loads((tmp_path / "shared" / f"{SAMPLE.name}.json").read_text())
    assert report["engine"]["statistics_from"] == str(SAMPLE)
    with rasterio.open(ddrf.fuse_scene(crop, tmp_path / "api", statistics_from=SAMPLE)) as ds:
        np.testing.assert_array_equal(ds.read(), shared)  # the Python API's statistics_from is the option's
    # a scene taking its statistics from itself is the plain run, to the bit
    np.testing.assert_array_equal(fuse(SAMPLE, tmp_path / "self", "--statistics-from", str(SAMPLE)), whole)


def test_a_statistics_scene_that_cannot_serve_is_one_usage_line(tmp_path: Path) -> None:
    no_nir = tmp_path / "no_nir" / SAMPLE.name
    shutil.copytree(SAMPLE, no_nir)
    next(no_nir.glob("*_B5.TIF")).unlink()
    for reference, options, said in (
            (tmp_path / "absent", [], "--statistics-from"),
            (no_nir, [], "--statistics-from: "),
            (SAMPLE, ["--method", "GSA"], "--statistics-from applies to the diffusion model")):
        result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--no-progress",
                                          "--statistics-from", str(reference), *options])
        assert result.exit_code == 2, result.output
        assert said in result.output and len(result.output.strip().splitlines()) == 1, result.output
        assert not (tmp_path / "out").exists()


def test_a_scene_with_other_bands_than_the_statistics_scene_fails_alone(tmp_path: Path) -> None:
    """A band-wise model takes any band count, so the statistics scene's bands are checked scene by scene."""
    files = {band: next(SAMPLE.glob(f"*_{band}.TIF")) for band in ("B8", "B2", "B3", "B4")}
    out = tmp_path / "rgb.tif"
    pair = ["--pan", str(files["B8"]), *[f"--ms={files[b]}" for b in ("B2", "B3", "B4")]]  # named by file names
    common = ["--model", "landsat_ratio2_band_wise", "--statistics-from", str(SAMPLE), "-o", str(out), "--no-progress"]
    result = CliRunner().invoke(app, [*pair, *common])
    assert result.exit_code == 1, result.output
    assert f"3 MS bands, the --statistics-from scene {SAMPLE} has 4" in result.output
    assert not out.exists()
    # --bands names every scene's bands, the statistics scene's too: three names cannot name its four, before any run
    result = CliRunner().invoke(app, [*pair, "--bands", "blue,green,red", *common])
    assert result.exit_code == 2 and "--statistics-from: " in result.output and "--bands names 3 bands" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_a_statistics_scene_that_cannot_serve_is_one_usage_line_with_a_cluster_too(tmp_path: Path) -> None:
    """With --scheduler the workers load the models, so the client checks the statistics scene against the cards
    of the models the scenes will get: the same one line, before any scene runs (before: each scene failed on its
    worker)."""
    import distributed

    no_nir = tmp_path / "no_nir" / SAMPLE.name
    shutil.copytree(SAMPLE, no_nir)
    next(no_nir.glob("*_B5.TIF")).unlink()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        for options in ([], ["--model", "landsat_ratio2"]):  # the bundled model the scene gets; one named
            result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--no-progress",
                                              "--statistics-from", str(no_nir), *options,
                                              "--scheduler", cluster.scheduler_address])
            assert result.exit_code == 2, result.output
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and "--statistics-from" in lines[0] and "B5" in lines[0], result.output
            assert not (tmp_path / "out").exists()


def test_scenes_not_picked_before_the_run_take_the_statistics_scene(tmp_path: Path) -> None:
    """With more scenes than are picked a model before the run (or with --watch) every bundled model is loaded; the
    statistics scene need fit only one of them (before: the ratio-4 models' misfit stopped the run)."""
    from ddrf.scenes.command import PICKED_BEFORE_THE_RUN

    scenes = []
    for k in range(PICKED_BEFORE_THE_RUN + 1):
        scenes.append(str(shutil.copytree(SAMPLE, tmp_path / f"s{k}")))
    result = CliRunner().invoke(app, [*scenes, "-o", str(tmp_path / "out"), "--dry-run",
                                      "--statistics-from", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "ratio 4" not in result.output


def test_the_statistics_scene_is_named_by_the_runs_bands(tmp_path: Path) -> None:
    """--bands names the --statistics-from scene's bands as it names the scenes': a scene taking its statistics
    from itself is then its plain run to the bit. Before, the statistics scene took the assumed names (blue first),
    so the blue band was normalised by the red band's percentiles: a silently wrong product."""
    scene, order = reordered_generic_scene(tmp_path / "generic"), ("--bands", "red,green,blue,nir")
    plain = fuse(scene, tmp_path / "plain", *order)
    np.testing.assert_array_equal(fuse(scene, tmp_path / "self", *order, "--statistics-from", str(scene)), plain)
    # the Python API names them the same way
    api = ddrf.fuse_scene(scene, tmp_path / "api", bands="red,green,blue,nir", statistics_from=scene)
    with rasterio.open(api) as ds:
        np.testing.assert_array_equal(ds.read(), plain)
    item = tmp_path / "plain" / "generic.item.json"  # a STAC Item names its own bands: refused, nothing written
    with pytest.raises(ValueError, match="a STAC Item names its bands"):
        ddrf.fuse_scene(item, tmp_path / "item", bands=["red", "green", "blue", "nir"])
    assert not (tmp_path / "item").exists()
    with pytest.raises(ValueError, match="bands 'red,red,blue,nir' names red more than once"):  # as --bands checks
        ddrf.fuse_scene(scene, tmp_path / "twice", bands="red,red,blue,nir")
    assert not (tmp_path / "twice").exists()


def test_a_statistics_source_that_is_no_scene_directory_says_what_it_takes(tmp_path: Path) -> None:
    """--statistics-from ITEM.json, or the PAN of a --pan/--ms run: one usage line saying it takes a scene directory
    and how to make one of those files (before: `--statistics-from: X: not a directory`, also for a path that does
    not exist)."""
    from stac_fixtures import landsat_item

    files = {band: next(SAMPLE.glob(f"*_{band}.TIF")) for band in ("B2", "B3", "B4", "B5", "B8")}
    item = tmp_path / "item.json"
    item.write_text(json.dumps(landsat_item(files, str(SAMPLE))))
    for reference, said in ((item, "a file, not a scene directory"),
                            (files["B8"], "a file, not a scene directory"),
                            (tmp_path / "absent", "no such directory")):
        result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--no-progress",
                                          "--statistics-from", str(reference)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"ddrf-run: --statistics-from {reference}: {said}"), result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_statistics_scene_with_a_constant_band_is_one_usage_line(tmp_path: Path) -> None:
    """A reference crop of one MS pixel: each band is one value, whose percentiles scale every scene of the run by a
    millionth of its magnitude (before: every output value clipped, 45-72 % of each band to 0 and the rest to 65535,
    exit 0)."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    for name, side in (("pan", 2), ("ms", 1)):
        with rasterio.open(next(SAMPLE.glob("*_B8.TIF" if name == "pan" else "*_B2.TIF"))) as src:
            window = Window(0, 0, side, side)
            profile = {**src.profile, "height": side, "width": side, "transform": src.window_transform(window)}
            bands = 1 if name == "pan" else 4
            with rasterio.open(tiny / f"{name}.tif", "w", **{**profile, "count": bands}) as dst:
                dst.write(np.repeat(src.read(1, window=window)[None], bands, axis=0) + np.arange(bands)[:, None, None])
    result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--no-progress", "--statistics-from",
                                      str(tiny), "--bands", "blue,green,red,nir"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"ddrf-run: --statistics-from {tiny}: {tiny / 'ms.tif'}: band 1 (blue) constant "
                                    "(every valid pixel is "), result.output
    assert "no statistics to give the other scenes" in result.output and not (tmp_path / "out").exists()
