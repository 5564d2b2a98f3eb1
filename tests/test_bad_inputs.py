"""Bad input, table-driven: every case ends with the expected exit code, one line naming the file (or option) and
the problem, no traceback, inputs untouched, and nothing partial left (no raster, report, temporary or lock file; the
run summary may record the failure). docs/RELIABILITY.md lists these cases by id.

Cheap: small synthetic rasters, the committed tiny model (no torch), classical methods where the engine does not
matter.
"""
from __future__ import annotations

import fcntl
import hashlib
import re
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.transform import from_origin
from typer.testing import CliRunner

from ddrf.scenes.command import SUMMARY_NAME, app
from scenes_fixtures import SAMPLE, TINY_MODEL, maxar_tiled_product

ROOT = Path(__file__).parents[1]
NAMING = Path(__file__).parent / "data" / "scenes" / "naming"
PAN_T, MS_T = from_origin(500000, 4000000, 15, 15), from_origin(500000, 4000000, 30, 30)


def write_tif(path: Path, data: np.ndarray, transform: Affine | None = PAN_T, dtype: str = "uint16",
              crs: str | None = "EPSG:32616", nodata: float | None = None) -> Path:
    data = data if data.ndim == 3 else data[None]
    kw = {"crs": crs, "transform": transform} if transform is not None else {}
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=dtype, nodata=nodata, **kw) as dst:
        dst.write(data.astype(dtype))
    return path


def pair(folder: Path, bands: int = 4, size: int = 64, ms_transform: Affine = MS_T, ms_crs: str = "EPSG:32616",
         pan_dtype: str = "uint16", ms_dtype: str = "uint16") -> tuple[Path, Path]:
    """A PAN (size x size) and an MS (size/2, `bands` bands) of smooth random DN."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    top = 255 if pan_dtype == "uint8" else 20000
    pan = write_tif(folder / "pan.tif", rng.uniform(top * 0.2, top * 0.8, (size, size)), dtype=pan_dtype)
    ms = write_tif(folder / "ms.tif", rng.uniform(4000, 16000, (bands, size // 2, size // 2)), ms_transform,
                   ms_dtype, ms_crs)
    return pan, ms


@dataclass
class Case:
    """args builder -> (argv, the file or option the message must name, the problem (regex), exit code)."""

    id: str
    build: Callable[[Path, Path], tuple[list[str], str, str, int]]


def model_copy(tmp: Path) -> Path:
    return Path(shutil.copytree(TINY_MODEL, tmp / "model"))


def with_model(tmp: Path, *args: str) -> list[str]:
    return [*args, "--model", str(model_copy(tmp)), "--threads", "1"]


def pm(tmp: Path, out: Path, **kw) -> list[str]:
    pan, ms = pair(tmp / "in", **kw)
    return ["--pan", str(pan), "--ms", str(ms), "-o", str(out / "x.tif")]


def replace_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ the cases
def c_empty_dir(tmp, out):
    (tmp / "empty").mkdir()
    return [str(tmp / "empty"), "-o", str(out), "--method", "Brovey"], "empty", "no raster files", 1


def c_missing_dir(tmp, out):
    return [str(tmp / "nowhere"), "-o", str(out), "--method", "Brovey"], "nowhere", "no such directory", 1


def c_pan_missing(tmp, out):
    _, ms = pair(tmp / "in")
    return ["--pan", str(tmp / "in" / "gone.tif"), "--ms", str(ms), "-o", str(out / "x.tif"), "--method", "Brovey"], \
        "gone.tif", "file missing", 1


def c_ms_missing(tmp, out):
    pan, _ = pair(tmp / "in")
    return ["--pan", str(pan), "--ms", str(tmp / "in" / "gone.tif"), "-o", str(out / "x.tif"), "--method", "Brovey"], \
        "gone.tif", "file missing", 1


def c_zero_byte_pan(tmp, out):
    args = pm(tmp, out) + ["--method", "Brovey"]
    replace_file(tmp / "in" / "pan.tif", b"")
    return args, "pan.tif", "not a readable raster|unreadable", 1


def c_truncated_ms(tmp, out):
    args = pm(tmp, out) + ["--method", "Brovey"]
    ms = tmp / "in" / "ms.tif"
    replace_file(ms, ms.read_bytes()[: ms.stat().st_size // 2])
    return args, "ms.tif", "unreadable|truncated|not a readable", 1


def c_text_as_tif(tmp, out):
    args = pm(tmp, out) + ["--method", "Brovey"]
    replace_file(tmp / "in" / "ms.tif", b"this is not a GeoTIFF\n" * 10)
    return args, "ms.tif", "not a readable raster|unreadable", 1


def c_crs_mismatch(tmp, out):
    return pm(tmp, out, ms_crs="EPSG:32617") + ["--method", "Brovey"], "ms.tif", "CRS", 1


def c_crs_mismatch_compound(tmp, out):
    """A compound CRS (with heights) against a plain one: one short line, not the two WKTs (1,100 characters)."""
    return (pm(tmp, out, ms_crs="EPSG:32616+5773") + ["--method", "Brovey"], "ms.tif",
            r"CRS 'WGS 84 / UTM zone 16N \+ EGM96 height' differs from PAN pan.tif CRS EPSG:32616$", 1)


def c_crs_mismatch_same_name(tmp, out):  # two custom CRSs: "CRS 'unknown' differs from PAN CRS 'unknown'" before
    tmerc = "+proj=tmerc +lat_0=0 +lon_0={} +k=0.9996 +x_0=500000 +y_0=0 +datum=WGS84 +units=m +no_defs"
    args = pm(tmp, out, ms_crs=tmerc.format(-86)) + ["--method", "Brovey"]
    write_tif(tmp / "in" / "pan.tif", np.full((64, 64), 5000), crs=tmerc.format(-85))
    return args, "ms.tif", r"CRS \+proj=tmerc \+lat_0=0 \+lon_0=-86 .* differs from PAN pan.tif CRS \+proj=tmerc " \
                           r"\+lat_0=0 \+lon_0=-85 ", 1


def c_negative_seed(tmp, out):
    return pm(tmp, out) + ["--method", "Brovey", "--seed", "-1"], "--seed", "Invalid value", 2


def c_ratio_3_vs_model_2(tmp, out):
    args = pm(tmp, out, ms_transform=from_origin(500000, 4000000, 45, 45))
    return with_model(tmp, *args), "pan.tif", "ratio 3 but the model fuses ratio 2", 1


def c_fractional_ratio(tmp, out):
    return pm(tmp, out, ms_transform=from_origin(500000, 4000000, 22.5, 22.5)) + ["--method", "Brovey"], \
        "ms.tif", "not one integer", 1


def c_near_integer_ratio(tmp, out):  # a resampled MS, 30.00003 m pixels: "ratio 2 x 2, not one integer" before
    return pm(tmp, out, ms_transform=from_origin(500000, 4000000, 30.00003, 30.00003)) + ["--method", "Brovey"], \
        "ms.tif", r"pixel size 30\.00003 x 30\.00003 over PAN pixel size 15 x 15 is ratio 2\.000002 x 2\.000002, not", 1


def c_no_overlap(tmp, out):
    return pm(tmp, out, ms_transform=from_origin(900000, 3000000, 30, 30)) + ["--method", "Brovey"], \
        "ms.tif", "does not overlap", 1


def c_pan_two_bands(tmp, out):
    args = pm(tmp, out) + ["--method", "Brovey"]
    write_tif(tmp / "in" / "pan.tif", np.full((2, 64, 64), 5000))
    return args, "pan.tif", "PAN file has 2 bands", 1


def c_not_georeferenced(tmp, out):
    args = pm(tmp, out) + ["--method", "Brovey"]
    write_tif(tmp / "in" / "pan.tif", np.full((64, 64), 5000), transform=None, crs=None)
    return args, "pan.tif", "not georeferenced", 1


def c_gcp_only(tmp, out):  # georeferenced by ground control points, no geotransform: "not georeferenced" before
    from rasterio.control import GroundControlPoint

    args = pm(tmp, out) + ["--method", "Brovey"]
    pan = write_tif(tmp / "in" / "pan.tif", np.full((64, 64), 5000), transform=None, crs=None)
    with rasterio.open(pan, "r+") as dst:
        dst.gcps = ([GroundControlPoint(row=r, col=c, x=500000 + 15 * c, y=4000000 - 15 * r)
                     for r, c in ((0, 0), (0, 64), (64, 0), (64, 64))], "EPSG:32616")
    return args, "pan.tif", "ground control points only, no geotransform: not on a map grid; warp it", 1


def c_rpc_with_a_crs_tag(tmp, out):  # sensor geometry + RPCs + their ground CRS: "rotated or not north-up" before
    from rasterio.rpc import RPC

    args = pm(tmp, out) + ["--method", "Brovey"]
    pan = write_tif(tmp / "in" / "pan.tif", np.full((64, 64), 5000), transform=Affine.identity(), crs="EPSG:4326")
    with rasterio.open(pan, "r+") as dst:
        dst.rpcs = RPC(height_off=100, height_scale=500, lat_off=30.6, lat_scale=0.05, line_den_coeff=[1] + [0] * 19,
                       line_num_coeff=[0, 0, -1] + [0] * 17, line_off=32, line_scale=32, long_off=-87.4,
                       long_scale=0.05, samp_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18, samp_off=32,
                       samp_scale=32)
    return args, "pan.tif", "RPC-only GeoTIFF \\(no geotransform\\): not orthorectified; orthorectify first", 1


def c_pleiades_primary(tmp, out):  # a DIMAP sensor-geometry (SEN) product: "not georeferenced" before, no word why
    scene = tmp / "phr"
    scene.mkdir()
    for source in (NAMING / "pleiades").iterdir():
        with rasterio.open(source) as src:
            data = src.read()
        write_tif(scene / source.name.replace("_ORT_", "_SEN_"), data, transform=None, crs=None)
    return [str(scene), "-o", str(out), "--method", "Brovey"], "_SEN_", "primary product .*not orthorectified; use", 1


def c_rotated(tmp, out):
    args = pm(tmp, out) + ["--method", "Brovey"]
    write_tif(tmp / "in" / "pan.tif", np.full((64, 64), 5000), transform=Affine(15, 2, 500000, 2, -15, 4000000))
    return args, "pan.tif", "rotated or not north-up", 1


def c_rotated_by_a_hair(tmp, out):  # a real rotation is refused; float noise in the rotation terms is no rotation
    args = pm(tmp, out) + ["--method", "Brovey"]
    write_tif(tmp / "in" / "pan.tif", np.full((64, 64), 5000), transform=Affine(15, 0.002, 500000, 0, -15, 4000000))
    return args, "pan.tif", "rotated or not north-up", 1


def c_south_up(tmp, out):  # positive y pixel size: "rotated or not north-up" before, no word of the flip
    args = pm(tmp, out) + ["--method", "Brovey"]
    write_tif(tmp / "in" / "pan.tif", np.full((64, 64), 5000), transform=Affine(15, 0, 500000, 0, 15, 3999040))
    return args, "pan.tif", r"is south-up \(positive y pixel size 15: the first row is the southern edge\); flip", 1


def c_three_bands_for_four_band_model(tmp, out):
    return with_model(tmp, *pm(tmp, out, bands=3)), "ms.tif", "band blue missing: the model needs", 1


def c_maxar_1b(tmp, out):
    return [str(NAMING / "maxar_l1b"), "-o", str(out), "--method", "Brovey"], "P1BS", "not orthorectified", 1


def c_landsat_pan_missing(tmp, out):
    scene = Path(shutil.copytree(SAMPLE, tmp / "scene"))
    next(scene.glob("*_B8.TIF")).unlink()
    return [str(scene), "-o", str(out), "--method", "Brovey"], "B8", "PAN band 8 file missing", 1


def c_landsat_band_missing(tmp, out):
    scene = Path(shutil.copytree(SAMPLE, tmp / "scene"))
    next(scene.glob("*_B5.TIF")).unlink()
    return with_model(tmp, str(scene), "-o", str(out)), "B5", "band nir missing", 1


def c_not_landsat_mtl(tmp, out):
    scene = Path(shutil.copytree(SAMPLE, tmp / "scene"))
    mtl = next(scene.glob("*_MTL.txt"))
    mtl.write_text(mtl.read_text().replace("LANDSAT_8", "SENTINEL_2"))
    return [str(scene), "-o", str(out), "--method", "Brovey"], "MTL.txt", "not a Landsat-7/8/9 MTL", 1


def c_parent_of_two_scenes(tmp, out):
    for name in ("a", "b"):
        shutil.copytree(SAMPLE, tmp / "both" / name)
    return [str(tmp / "both" / "a" / ".."), "-o", str(out), "--method", "Brovey"], "both", "several scenes", 1


def c_scene_and_its_parent(tmp, out):
    shutil.copytree(SAMPLE, tmp / "p" / "a")
    return [str(tmp / "p"), str(tmp / "p" / "a"), "-o", str(out), "--method", "Brovey"], "p", "holds another scene", 2


def c_same_names(tmp, out):
    for d in ("1", "2"):
        shutil.copytree(SAMPLE, tmp / d / "s")
    return [str(tmp / "1" / "s"), str(tmp / "2" / "s"), "-o", str(out), "--method", "Brovey"], "'s'", "collide", 2


def c_scene_named_like_summary(tmp, out):
    scene = shutil.copytree(SAMPLE, tmp / Path(SUMMARY_NAME).stem)
    return [str(scene), "-o", str(out), "--method", "Brovey"], Path(SUMMARY_NAME).stem, "run summary", 2


def c_output_inside_scene(tmp, out):
    scene = shutil.copytree(SAMPLE, tmp / "scene")
    return [str(scene), "-o", str(Path(scene) / "out"), "--method", "Brovey"], "scene", "inside scene", 2


def c_output_is_pan(tmp, out):
    pan, ms = pair(tmp / "in")
    return ["--pan", str(pan), "--ms", str(ms), "-o", str(pan), "--overwrite", "--method", "Brovey"], \
        "pan.tif", "is an input", 2


def c_output_is_ms_via_symlink(tmp, out):
    pan, ms = pair(tmp / "in")
    out.mkdir()
    (out / "link.tif").symlink_to(ms)
    return ["--pan", str(pan), "--ms", str(ms), "-o", str(out / "link.tif"), "--method", "Brovey"], \
        "link.tif", "is an input", 2


def c_output_tif_for_dirs(tmp, out):
    return [str(SAMPLE), "-o", str(out / "x.tif"), "--method", "Brovey"], "x.tif", "output directory", 2


def c_output_not_tif_for_pair(tmp, out):
    return pm(tmp, out)[:-1] + [str(out / "x.png"), "--method", "Brovey"], "x.png", "output GeoTIFF", 2


def c_pan_without_ms(tmp, out):
    pan, _ = pair(tmp / "in")
    return ["--pan", str(pan), "-o", str(out / "x.tif")], "--ms", "missing", 2


def c_read_only_output(tmp, out):
    if os.geteuid() == 0:  # root writes through file modes: use sysfs, which refuses new entries to anyone
        return [str(SAMPLE), "-o", "/sys/ddrf-read-only-test", "--method", "Brovey"], "ddrf-read-only-test", \
            "cannot", 2
    out.mkdir()
    out.chmod(0o555)
    return [str(SAMPLE), "-o", str(out / "sub"), "--method", "Brovey"], "sub", "cannot", 2


def c_output_under_a_file(tmp, out):
    (tmp / "file").write_text("x")
    return [str(SAMPLE), "-o", str(tmp / "file" / "dir"), "--method", "Brovey"], "file", "cannot", 2


def c_no_model_dir(tmp, out):
    return [str(SAMPLE), "-o", str(out), "--model", str(tmp / "nomodel")], "nomodel", "no model folder there", 2


def c_model_without_card(tmp, out):
    model = model_copy(tmp)
    (model / "card.json").unlink()
    return [str(SAMPLE), "-o", str(out), "--model", str(model)], "model", "no card.json", 2


def c_encoder_over_denoiser(tmp, out):
    model = model_copy(tmp)
    shutil.copy(model / "encoder.onnx", model / "denoiser.onnx")
    return [str(SAMPLE), "-o", str(out), "--model", str(model)], "denoiser.onnx", "sha256 differs", 2


def c_card_says_three_bands(tmp, out):
    model = model_copy(tmp)
    card = json.loads((model / "card.json").read_text())
    card["bands"] = card["bands"][:3]
    (model / "card.json").write_text(json.dumps(card))
    return [str(SAMPLE), "-o", str(out), "--model", str(model)], ".onnx", "channels|bands", 2


def c_truncated_graph(tmp, out):
    model = model_copy(tmp)
    graph = model / "encoder.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    return [str(SAMPLE), "-o", str(out), "--model", str(model)], "encoder.onnx", "sha256 differs", 2


def c_tile_inside_halo(tmp, out):
    return with_model(tmp, str(SAMPLE), "-o", str(out), "--tile", "33"), "--tile 33", "no room inside a halo", 2


def c_uncertainty_one(tmp, out):
    return [str(SAMPLE), "-o", str(out), "--uncertainty", "1"], "--uncertainty", "at least 2", 2


def c_unknown_method(tmp, out):
    return [str(SAMPLE), "-o", str(out), "--method", "NOPE"], "NOPE", "unknown --method", 2


def c_unknown_backend(tmp, out):
    return [str(SAMPLE), "-o", str(out), "--backend", "abacus"], "abacus", "unknown --backend", 2


def c_bands_wrong_count(tmp, out):
    return pm(tmp, out) + ["--method", "Brovey", "--bands", "red,green,blue"], "ms.tif", "--bands names 3", 1


def c_disk_too_small(tmp, out, monkeypatch=None):
    return pm(tmp, out) + ["--method", "Brovey"], "x.tif", r"needs up to 32\.8 kB but .* has 1 kB free", 1


def c_output_locked(tmp, out):
    out.mkdir()
    fd = os.open(out / ".x.tif.ddrf-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another ddrf-run would; released when the test's process ends
    LOCKS.append(fd)
    return pm(tmp, out) + ["--method", "Brovey"], "x.tif", "another process is writing", 1


def c_maxar_tile_missing(tmp, out):
    product = maxar_tiled_product(tmp / "in" / "product")
    next(product.rglob("*-M2AS_R2C2-*")).unlink()
    return [str(product), "-o", str(out), "--method", "Brovey"], "M2AS-012345678010_01_P001.TIL", \
        "Maxar tile list: tile 20JUN15093522-M2AS_R2C2-012345678010_01_P001.TIF is missing", 1


def c_maxar_tile_off_grid(tmp, out):
    product = maxar_tiled_product(tmp / "in" / "product")
    with rasterio.open(next(product.rglob("*-P2AS_R1C2-*")), "r+") as tile:
        tile.transform = tile.transform @ Affine.translation(1, 0)
    return [str(product), "-o", str(out), "--method", "Brovey"], "P2AS-012345678010_01_P001.TIL", \
        "P2AS_R1C2-012345678010_01_P001.TIF: its geotransform puts it at column 21.000, row 0.000 of the product, " \
        "the .TIL at 20, 0", 1


def c_maxar_tiles_without_til(tmp, out):
    product = maxar_tiled_product(tmp / "in" / "product", with_til=False)
    return [str(product), "-o", str(out), "--method", "Brovey"], "_R1C1-012345678010_01_P001.TIF", \
        "tile of a Maxar tiled product, but no .TIL beside it names it", 1



def c_complex_ms(tmp, out):  # read as real, the imaginary part dropped, until GDAL refused the output's predictor
    return pm(tmp, out, ms_dtype="complex64") + ["--method", "Brovey"], "ms.tif", "complex data", 1

def c_palette_pan(tmp, out):  # colour-table indices, not brightness: fused as a PAN, silently
    args = pm(tmp, out, pan_dtype="uint8") + ["--method", "GSA"]
    with rasterio.open(tmp / "in" / "pan.tif", "r+") as pan:
        pan.write_colormap(1, {i: (255 - i, i, (7 * i) % 256, 255) for i in range(256)})
    return args, "pan.tif", "palette \\(colour-map\\) raster", 1


def c_one_bit_pan(tmp, out):  # a mask: fused as a PAN, said only as 50 % "saturated"
    args = pm(tmp, out) + ["--method", "GSA"]
    with rasterio.open(tmp / "in" / "pan.tif", "w", driver="GTiff", height=64, width=64, count=1, dtype="uint8",
                       nbits=1, crs="EPSG:32616", transform=PAN_T) as dst:
        dst.write((np.indices((1, 64, 64)).sum(axis=0) % 2).astype("uint8"))
    return args, "pan.tif", "1-bit raster", 1


LOCKS: list[int] = []
RUN_CASES = [Case(name[2:], fn) for name, fn in list(globals().items()) if name.startswith("c_")]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder (inputs must not change)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def leftovers(out: Path) -> list[str]:
    """Anything a failed run must not leave: rasters, reports, temporaries, locks (the summary may stay)."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.rglob("*") if p.is_file() and not p.is_symlink() and p.name != SUMMARY_NAME)


def assert_one_line(output: str, names: str, problem: str, prefix: str) -> None:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith(prefix) or line.startswith("Error")
             or "Invalid value" in line]
    hits = [line for line in lines if names in line and re.search(problem, line)]
    assert hits, f"no one-line message naming {names!r} and /{problem}/ in:\n{output}"


@pytest.mark.parametrize("case", RUN_CASES, ids=[c.id for c in RUN_CASES])
def test_ddrf_run_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    args, names, problem, code = case.build(tmp_path, out)
    if case.id == "disk_too_small":  # the disk has 1 kB free
        import shutil as sh

        monkeypatch.setattr("ddrf.scenes.jobs.shutil.disk_usage", lambda p: sh._ntuple_diskusage(10**9, 10**9, 1000))
    inputs = snapshot(tmp_path / "in") if (tmp_path / "in").is_dir() else {}
    try:
        result = CliRunner().invoke(app, [*args, "--no-progress"])
    finally:
        if out.is_dir():
            out.chmod(0o755)
    assert result.exit_code == code, result.output
    assert_one_line(result.output, names, problem, "ddrf-run:")
    assert leftovers(out) == [] or case.id == "output_locked" and leftovers(out) == [".x.tif.ddrf-lock"], \
        leftovers(out)
    assert snapshot(tmp_path / "in") == inputs if inputs else True
    if code == 1 and (out / SUMMARY_NAME).is_file():
        summary = json.loads((out / SUMMARY_NAME).read_text())
        assert summary["counts"]["failed"] >= 1 and summary["counts"]["done"] == 0


# ------------------------------------------------------------------ the other commands
def test_profile_json_into_missing_folder_is_refused_before_the_sweep(tmp_path: Path) -> None:
    from ddrf.profile.command import app as profile_app

    target = tmp_path / "missing" / "r.json"
    result = CliRunner().invoke(profile_app, [str(TINY_MODEL), "--json", str(target), "--runs", "1"])
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "r.json", "cannot be written", "ddrf-profile:")
    assert "[1/" not in result.output  # no point was measured
    assert not target.parent.exists()


def test_report_outputs_never_replace_an_input_or_each_other_nor_an_existing_file_unasked(tmp_path: Path) -> None:
    """ddrf-profile replaced any existing --json/--csv/--plot (a model's own graph too) and had no --overwrite;
    ddrf-eval --overwrite replaced an input file; two options naming one file lost one of them. Each is refused
    before any work, in one line."""
    from ddrf.evaluate.command import app as eval_app
    from ddrf.profile.command import app as profile_app

    model = model_copy(tmp_path)
    graph = next(model.glob("*.onnx"))
    kept = tmp_path / "keep.json"
    kept.write_text("mine")
    pan, ms = pair(tmp_path / "pairs")
    profile = ["--runs", "1", "--warmup", "0", "--tile", "128", "--steps", "1", "--threads", "1", "--quiet"]
    cases = [
        (profile_app, [str(model), "--json", str(kept), *profile], "keep.json", "exists; pass --overwrite"),
        (profile_app, [str(model), "--json", str(graph), "--overwrite", *profile], graph.name, "is an input"),
        (profile_app, [str(model), "--json", str(tmp_path / "s.json"), "--csv", str(tmp_path / "s.json"), *profile],
         "s.json", "given to both --json and --csv"),
        (profile_app, [str(model), "--plot", str(tmp_path / "q.txt"), *profile], "q.txt", "--plot writes"),
        (eval_app, [f"pairs:{pan.parent}", "--methods", "GSA", "--csv", str(ms), "--overwrite"], "ms.tif",
         "is an input"),
        (eval_app, [f"pairs:{pan.parent}", "--methods", "GSA", "--json", str(tmp_path / "a.json"), "--csv",
                    str(tmp_path / "a.json")], "a.json", "given to both --csv and --json"),
    ]
    before = {p: p.read_bytes() for p in (kept, graph, ms)}
    for app_, args, named, problem in cases:
        result = CliRunner().invoke(app_, args)
        assert result.exit_code == 2, (args, result.output)
        assert_one_line(result.output, named, problem, "ddrf-")
        assert "[1/" not in result.output  # refused before the first point
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "a.json").exists()
    assert CliRunner().invoke(profile_app, [str(model), "--json", str(kept), "--overwrite", *profile]).exit_code == 0
    assert json.loads(kept.read_text())["tool"] == "ddrf-profile"


def console(entry: str, *args: str) -> subprocess.CompletedProcess:
    """A console script as installed (ddrf.cli's entry point), without relying on it being on PATH."""
    name = "ddrf-" + entry.removesuffix("_app")
    code = f"import sys; sys.argv[0] = {name!r}; from ddrf.cli import {entry}; {entry}()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("entry, args, option", [
    ("run_app", ["SCENE", "-o", "OUT", "--steps", "0"], "--steps"),
    ("run_app", ["SCENE", "-o", "OUT", "--tile", "-5"], "--tile"),
    ("run_app", ["--no-such-option"], "--no-such-option"),
    ("profile_app", ["MODEL", "--runs", "0"], "--runs"),
    ("eval_app", ["fusebox:x", "--border", "abc"], "--border"),
])
def test_a_bad_option_value_is_one_line_not_a_usage_box(entry: str, args: list[str], option: str) -> None:
    """Values the option's own type or range refuses (before the command runs) used to print Typer's usage box."""
    result = console(entry, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddrf-") and ": error: " in lines[0] and option in lines[0], lines


def test_exit_codes_pass_through_the_entry_point(tmp_path: Path) -> None:
    """0 for a run that worked or for --help, 1 for a failed scene, as before the entry point parsed its errors."""
    assert console("run_app", "--help").returncode == 0
    missing = console("run_app", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out"), "--method", "GSA")
    assert missing.returncode == 1 and "no such directory" in missing.stderr
    done = console("run_app", str(SAMPLE), "-o", str(tmp_path / "out"), "--method", "GSA", "--no-progress")
    assert done.returncode == 0, done.stderr


BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):  # the base install: torch is not there
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NoTorch())
import ddrf.cli
ddrf.cli.{app}()
"""


@pytest.mark.parametrize("app_name, args", [("train_app", ["configs/landsat7_small_cpu.yaml", "--out", "RUN"]),
                                            ("export_app", ["onnx", "RUN", "-o", "OUT"]),
                                            ("eval_app", ["fusebox:tests/data/landsat7", "--methods", "ckpt:RUN"])])
def test_runtime_only_install_names_the_extra(app_name: str, args: list[str], tmp_path: Path) -> None:
    """With torch absent (the base install), the training side says which extra to install, in one line."""
    (tmp_path / "run").mkdir()  # an (empty) run directory, so only the missing torch can stop the command
    argv = [a.replace("RUN", str(tmp_path / "run")).replace("OUT", str(tmp_path / "out")) for a in args]
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH.format(app=app_name), *argv], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "pip install 'ddrf-edge[train]'" in proc.stderr, proc.stderr
    assert not any((tmp_path / "run").iterdir()) and not (tmp_path / "out").exists()


def test_case_count() -> None:
    """The issue asks for at least 35 bad inputs; this file and tests/test_faults.py hold them."""
    assert len(RUN_CASES) + 1 + 3 + 3 >= 35  # table, profile --json, missing extras, engine profile


# ------------------------------------------------------------------ handled, not refused: the product is right
def run(*args: str) -> "object":
    return CliRunner().invoke(app, [*args, "--no-progress"])


def test_nan_and_inf_in_a_float_ms_stay_local(tmp_path: Path) -> None:
    """Issue 11 #1: a NaN (or inf) MS sample is nodata for its pixels and neighbours only, never the scene."""
    rng = np.random.default_rng(1)
    write_tif(tmp_path / "pan.tif", rng.uniform(4000, 16000, (64, 64)), dtype="float32")
    ms = rng.uniform(4000, 16000, (4, 32, 32))
    ms[0, 10, 10], ms[2, 20, 5] = np.nan, np.inf
    write_tif(tmp_path / "ms.tif", ms, MS_T, "float32")
    write_tif(tmp_path / "clean.tif", np.nan_to_num(ms, nan=9000, posinf=9000), MS_T, "float32")
    model = with_model(tmp_path)
    missing = {}
    for name in ("ms", "clean"):
        out = tmp_path / f"out_{name}.tif"
        result = run("--pan", str(tmp_path / "pan.tif"), "--ms", str(tmp_path / f"{name}.tif"), "-o", str(out), *model)
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as ds:
            data, nodata = ds.read(), ds.nodata
        assert np.isnan(nodata) and not np.isinf(data).any()  # a float output's nodata is NaN; no inf comes through
        missing[name] = np.isnan(data).any(axis=0)
    extra = missing["ms"] & ~missing["clean"]
    assert extra[20:22, 20:22].all() and extra[40:42, 10:12].all()  # the two bad samples' PAN pixels
    assert extra.mean() < 0.01, extra.mean()  # and hardly more


def test_output_follows_the_ms_type_with_an_8_bit_pan(tmp_path: Path) -> None:
    """Issue 11 #3: 8-bit PAN + 16-bit MS gives a 16-bit product with MS-like values, not 255 everywhere."""
    pan, ms = pair(tmp_path / "in", pan_dtype="uint8")
    out = tmp_path / "out.tif"
    assert run("--pan", str(pan), "--ms", str(ms), "-o", str(out), *with_model(tmp_path)).exit_code == 0
    with rasterio.open(out) as ds, rasterio.open(ms) as src:
        data, reference = ds.read(), src.read()
        assert ds.dtypes[0] == "uint16"
    assert len(np.unique(data)) > 100
    assert abs(data.mean() / reference.mean() - 1) < 0.25


def test_output_is_exactly_the_pan_grid(tmp_path: Path) -> None:
    """Issue 11 #14: uint16 PAN 375 x 558 (nodata 0), 3-band float MS 187 x 279, GSA: the PAN's grid exactly,
    nodata where the MS does not reach."""
    rng = np.random.default_rng(2)
    pan = write_tif(tmp_path / "pan.tif", rng.uniform(1000, 30000, (375, 558)), nodata=0)
    ms = write_tif(tmp_path / "ms.tif", rng.uniform(1000, 30000, (3, 187, 279)), MS_T, "float32")
    out = tmp_path / "out.tif"
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds, rasterio.open(pan) as ref:
        assert (ds.height, ds.width, ds.transform, ds.crs) == (ref.height, ref.width, ref.transform, ref.crs)
        data, nodata = ds.read(), ds.nodata
    assert np.isnan(nodata)  # a float output's own, not the PAN's 0 (a valid value there)
    assert np.isnan(data[:, -1, :]).all()  # MS rows cover 374 PAN rows: the last is nodata
    assert np.isfinite(data[:, 100, 100]).all()


def test_report_names_come_from_the_whole_scene_name(tmp_path: Path) -> None:
    """Issue 11 #4: scenes x.v1 and x.v2 keep their own reports."""
    scenes = [str(shutil.copytree(SAMPLE, tmp_path / name)) for name in ("x.v1", "x.v2")]
    out = tmp_path / "out"
    assert run(*scenes, "-o", str(out), "--method", "Brovey").exit_code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [SUMMARY_NAME, "x.v1.item.json", "x.v1.json", "x.v1.tif", "x.v2.item.json", "x.v2.json", "x.v2.tif"]
    assert json.loads((out / "x.v2.json").read_text())["inputs"]["directory"].endswith("x.v2")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    """Issue 11 #8 and #9: the plan, and the tile rounding said once, without writing anything."""
    out = tmp_path / "out"
    result = run(str(SAMPLE), "-o", str(out), "--tile", "65", "--dry-run", *with_model(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.count("--tile 65") == 1 and "run as tile 68" in result.output
    assert "windows of 68 x 68" in result.output and re.search(r"output up to 1\.05 MB uncompressed, [0-9.]+ [kMG]B free",
                                                                  result.output)
    assert not out.exists()


def test_dry_run_says_what_the_run_would_do_with_existing_outputs(tmp_path: Path) -> None:
    """A dry run planned a fusion of a scene whose output is finished (the run skips it) and of one whose output path
    holds a raster ddrf did not write (the run refuses it)."""
    out = tmp_path / "out"
    assert run(str(SAMPLE), "-o", str(out), "--method", "GSA").exit_code == 0
    skipped = run(str(SAMPLE), "-o", str(out), "--method", "GSA", "--dry-run")
    assert skipped.exit_code == 0 and "finished output exists" in skipped.output and "windows of" not in \
        skipped.output, skipped.output
    pan, ms = pair(tmp_path / "in")
    foreign = Path(shutil.copy(pan, tmp_path / "foreign.tif"))
    refused = run("--pan", str(pan), "--ms", str(ms), "-o", str(foreign), "--method", "GSA", "--dry-run")
    assert refused.exit_code == 1, refused.output
    assert_one_line(refused.output, "foreign.tif", "is no ddrf-run output", "ddrf-run:")


def test_watch_dry_run_plans_the_inbox_and_watches_nothing(tmp_path: Path) -> None:
    """`--watch --dry-run` used to start a real watcher and fuse the inbox: it prints the plan of each scene there
    that the status file does not record as done, and exits without writing or watching."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    for name in ("a", "b"):
        shutil.copytree(SAMPLE, inbox / name)
    model = with_model(tmp_path)
    result = run("--watch", str(inbox), "-o", str(out), "--dry-run", *model)
    assert result.exit_code == 0, result.output
    assert "2 scene directories to fuse there now" in result.output and result.output.count("windows of") == 2
    assert not out.exists()
    out.mkdir()
    (out / "ddrf-watch-status.json").write_text(json.dumps({"scenes": {"a": {"status": "done"}}}))
    again = run("--watch", str(inbox), "-o", str(out), "--dry-run", *model)
    assert again.exit_code == 0 and "1 scene directory" in again.output and again.output.count("windows of") == 1
    assert [p.name for p in out.iterdir()] == ["ddrf-watch-status.json"]


def test_the_run_says_its_plan_and_estimate_before_the_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(str(SAMPLE), "-o", str(out), "--tile", "128", "--halo", "16", *with_model(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    plan = next(i for i, line in enumerate(lines) if "windows of" in line)
    estimate = next(i for i, line in enumerate(lines) if re.search(r"about .* min for \d+ windows", line))
    assert plan < estimate and "min" in lines[estimate]


def test_the_time_estimate_leaves_out_the_first_batchs_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first window of 3 s (first read, backend warm-up), then 1 s each: ten windows take about 12 s. Before, the
    estimate was the first window's time times ten (30 s), 2.5x too long; now it is measured on the second batch."""
    from ddrf.scenes import jobs

    clock, said = iter([3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]), []
    monkeypatch.setattr(jobs.time, "perf_counter", lambda: next(clock))
    tick = jobs.estimate_after_first_batch("s", 10, 0.0, lambda n: None, said.append)
    for _ in range(10):
        tick(1)
    assert said == ["s: first 2 window(s) took 4.0 s; about 0.2 min for 10 windows"]


def test_every_line_names_a_landsat_scene_by_its_folder(tmp_path: Path) -> None:
    """A Landsat scene in a folder not named after its product: the plan and estimate lines name it by the folder,
    as its progress, model and done lines do (before: by the MTL's product id)."""
    from scenes_fixtures import copy_scene

    folder = copy_scene(tmp_path / "row33")
    result = run(str(folder), "-o", str(tmp_path / "out"), "--tile", "128", "--halo", "16", *with_model(tmp_path))
    assert result.exit_code == 0, result.output
    assert re.search(r"^ddrf-run: row33: 256 x 512 PAN px, \d+ windows", result.output, re.M), result.output
    assert re.search(r"^ddrf-run: row33: first \d+ window", result.output, re.M), result.output
    assert f"{SAMPLE.name}:" not in result.output, result.output


def test_a_scene_of_another_ratio_than_the_model_is_named_once(tmp_path: Path) -> None:
    """A Landsat scene folder given a ratio-4 model: one line naming the folder once (before: the folder, then the
    MTL's product id: `DIR: LC8...: scene ratio 2 ...`)."""
    from scenes_fixtures import copy_scene

    folder = copy_scene(tmp_path / "row33")
    model = ROOT / "ddrf" / "assets" / "models" / "landsat_ratio4"
    result = run(str(folder), "-o", str(tmp_path / "out"), "--model", str(model), "--threads", "1")
    assert result.exit_code == 1, result.output
    assert f"ddrf-run: {folder}: scene ratio 2 but the model fuses ratio 4\n" in result.output, result.output


def test_band_descriptions_naming_a_band_twice_are_said_with_the_band_and_the_file(tmp_path: Path) -> None:
    """MS band descriptions red, green, red, nir: the assumed order is said with the band named twice and the file
    (before: 'no metadata or band descriptions name them', as if the file had none), in the report too."""
    pan, ms = pair(tmp_path / "in")
    with rasterio.open(ms, "r+") as dst:
        for band, name in enumerate(("red", "green", "red", "nir"), 1):
            dst.set_band_description(band, name)
    result = run("--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "a.tif"), "--method", "GSA")
    assert result.exit_code == 0, result.output
    why = f"the band descriptions name red twice: {ms.name} bands 1 and 3"
    assert f"{ms}: band order assumed blue, green, red, nir ({why}); pass --bands" in result.output, result.output
    assert json.loads((tmp_path / "a.json").read_text())["inputs"]["band_identity"] == why


def test_band_order_from_bands_option_or_said_to_be_assumed(tmp_path: Path) -> None:
    """Issue 11 #13: an MS in red, green, blue, NIR order fuses like the same bands in blue, green, red, NIR once
    --bands says so; without metadata the assumed order is said on stderr and in the report."""
    pan, ms = pair(tmp_path / "in")
    with rasterio.open(ms) as src:
        bgrn, profile = src.read(), src.profile
    rgbn = tmp_path / "in" / "rgbn.tif"
    with rasterio.open(rgbn, "w", **profile) as dst:
        dst.write(bgrn[[2, 1, 0, 3]])
    assumed = run("--pan", str(pan), "--ms", str(ms), "-o", str(tmp_path / "a.tif"), *with_model(tmp_path / "m1"))
    assert assumed.exit_code == 0 and f"{ms}: band order assumed blue, green, red, nir" in assumed.output  # the MS
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["inputs"]["band_names_assumed"] is True
    stated = run("--pan", str(pan), "--ms", str(rgbn), "-o", str(tmp_path / "b.tif"), "--bands", "red,green,blue,nir",
                 *with_model(tmp_path / "m2"))
    assert stated.exit_code == 0 and "assumed" not in stated.output, stated.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["inputs"]["band_identity"] == "--bands" and report["inputs"]["band_names_assumed"] is False
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


class ProfiledEngine:
    """An engine whose backend has a fixed optimisation profile (as a TensorRT plan): windows 128..512, batch 4."""

    ratio, multiple = 2, 8

    def window_limits(self) -> tuple[int, int, int]:
        return 128, 512, 4


@pytest.mark.parametrize("tile, batch, problem", [(64, 1, "outside the engine's optimisation profile"),
                                                  (1024, 1, "outside the engine's optimisation profile"),
                                                  (256, 8, "--batch 8 exceeds")])
def test_tile_outside_an_engine_profile_is_refused_before_any_scene(tile: int, batch: int, problem: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from ddrf.scenes.command import check_tile

    with pytest.raises(typer.Exit) as raised:
        check_tile(tile, 16, ProfiledEngine(), batch)
    assert raised.value.exit_code == 2
    assert_one_line(capsys.readouterr().err, f"--{'batch' if batch > 4 else 'tile'} {batch if batch > 4 else tile}",
                    re.escape(problem), "ddrf-run:")
    check_tile(256, 16, ProfiledEngine(), 4)  # inside the profile: accepted


def test_column_chunks_keep_the_exact_pan_grid(tmp_path: Path) -> None:
    """Issue 13: the same pair made in 128-column chunks (the fused grid at an offset inside the PAN grid, nodata
    margins carried by the first and last chunk) gives the same raster as one chunk."""
    from ddrf.scenes import engines, jobs, streaming

    rng = np.random.default_rng(2)
    pan = write_tif(tmp_path / "pan.tif", rng.uniform(1000, 30000, (375, 558)), nodata=0)
    ms = write_tif(tmp_path / "ms.tif", rng.uniform(1000, 30000, (3, 187, 279)), MS_T, "float32")
    rasters = []
    for chunk in (4096, 128):
        out = tmp_path / f"chunk{chunk}.tif"
        settings = streaming.RunSettings(tile=96, batch=1, progress=False, chunk=chunk)
        job = jobs.SceneJob(out.stem, out, pan=pan, ms=(ms,))
        assert jobs.run_job(job, engines.EngineSpec(method="GSA"), settings)["status"] == "done"
        with rasterio.open(out) as ds:
            rasters.append(ds.read())
    np.testing.assert_array_equal(rasters[1], rasters[0])
