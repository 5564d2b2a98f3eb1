"""ddrf-eval end to end on the committed Landsat-7/8 crops and on small PanCollection-schema HDF5 files."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import matplotlib.image
import numpy as np
import pytest
from typer.testing import CliRunner

from ddrf.baselines import METHODS
from ddrf.data import load_fusebox
from ddrf.evaluate.command import app
from ddrf.evaluate.figure import PANEL_PX, rgb_indices
from ddrf.evaluate.runner import full_crop
from ddrf.metrics import ergas, q2n, sam
from ddrf.filters import interp23, wald_degrade

ROOT = Path(__file__).parents[1]
RUNNER = CliRunner()
REDUCED_KEYS = ("SAM", "ERGAS", "Q2n", "SCC", "Q", "PSNR", "SSIM")
FULL_KEYS = ("D_lambda", "D_s", "HQNR", "QNR")


def invoke(*args: str | Path) -> tuple[int, str]:
    result = RUNNER.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def nchw(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, -1, 0)[None] if x.ndim == 3 else x[None, None]


@pytest.fixture(scope="module")
def l7_pairs(landsat7_dir: Path) -> list:
    return load_fusebox(landsat7_dir, scenes=[1, 7])


@pytest.fixture(scope="module")
def h5_files(tmp_path_factory: pytest.TempPathFactory, l7_pairs: list) -> dict[str, Path]:
    """PanCollection-schema files (raw DN, NCHW) from two real crops: a reduced one (gt) and a full one (no gt)."""
    folder = tmp_path_factory.mktemp("pancollection")
    reduced: dict[str, list] = {"gt": [], "ms": [], "lms": [], "pan": []}
    full: dict[str, list] = {"ms": [], "lms": [], "pan": []}
    for p in l7_pairs:
        pan_lr, ms_lr = wald_degrade(p.pan, p.ms, 2, "Landsat7")
        for d, arrays in ((reduced, dict(gt=p.ms, ms=ms_lr, lms=interp23(ms_lr, 2), pan=pan_lr)),
                          (full, dict(ms=p.ms, lms=interp23(p.ms, 2), pan=p.pan))):
            for k, v in arrays.items():
                d[k].append(nchw(v)[0])
    paths = {}
    for name, d in (("reduced", reduced), ("full", full)):
        paths[name] = folder / f"l7_{name}.h5"
        with h5py.File(paths[name], "w") as f:
            for k, v in d.items():
                f[k] = np.stack(v).astype(np.float32)
    return paths


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory: pytest.TempPathFactory, h5_files: dict[str, Path]) -> dict[str, object]:
    out = tmp_path_factory.mktemp("reduced_run")
    code, text = invoke(f"pancollection:{h5_files['reduced']}", "--divisor", "255", "--sensor", "landsat7",
                        "--csv", out / "r.csv", "--json", out / "r.json")
    assert code == 0, text
    return {"text": text, "csv": rows(out / "r.csv"), "json": json.loads((out / "r.json").read_text())}


# ---------------------------------------------------------------------------------------------- PanCollection


def test_reduced_table_csv_json_structure(reduced_run: dict) -> None:
    text, table, doc = reduced_run["text"], reduced_run["csv"], reduced_run["json"]
    assert "Reduced resolution" in text and "border crop 0 px" in text and "Q2n/Q on 32x32 blocks" in text
    assert all(m in text for m in METHODS)
    assert len(table) == 2 * len(METHODS)  # one row per image and method
    assert {r["image"] for r in table} == {"l7_reduced_000", "l7_reduced_001"}
    for r in table:
        assert r["protocol"] == "reduced" and r["finite_output"] == "True"
        assert all(math.isfinite(float(r[k])) for k in REDUCED_KEYS)
    settings = doc["settings"]
    assert settings["border"] == 0 and settings["ratio"] == 2 and settings["sensor"] == "Landsat7"
    assert settings["data"]["divisor"] == 255 and settings["q2n_block"] == 32
    assert settings["software"]["numpy"] == np.__version__ and "torch" not in settings["software"]
    summary = doc["summary"]["reduced"]
    assert list(summary) == list(METHODS)
    ergas_values = [float(r["ERGAS"]) for r in table if r["method"] == "GSA"]
    assert summary["GSA"]["ERGAS"]["mean"] == pytest.approx(np.mean(ergas_values))
    assert summary["GSA"]["ERGAS"]["std"] == pytest.approx(np.std(ergas_values))
    assert summary["GSA"]["ERGAS"]["n"] == 2 and len(doc["images"]) == len(table)


def test_exp_scores_equal_interp23_lms(reduced_run: dict, l7_pairs: list) -> None:
    """EXP is the LMS: its metrics equal those of interp23 of the degraded MS computed directly."""
    exp_rows = {r["image"]: r for r in reduced_run["csv"] if r["method"] == "EXP"}
    for i, p in enumerate(l7_pairs):
        # Through the file: DN stored as float32, divided by 255 and multiplied back, as the reader does.
        _, ms_lr = wald_degrade(p.pan, p.ms, 2, "Landsat7")
        ms_lr = ms_lr.astype(np.float32).astype(np.float64)
        lms = interp23(ms_lr, 2)
        row = exp_rows[f"l7_reduced_{i:03d}"]
        assert float(row["ERGAS"]) == pytest.approx(ergas(lms, p.ms, 2), rel=1e-5)
        assert float(row["SAM"]) == pytest.approx(sam(lms, p.ms), rel=1e-5)
        assert float(row["Q2n"]) == pytest.approx(q2n(lms, p.ms), abs=1e-4)
    # The best classical method must beat plain interpolation on real data.
    best = {r["image"]: float(r["ERGAS"]) for r in reduced_run["csv"] if r["method"] == "MTF-GLP-HPM"}
    assert all(best[k] < float(v["ERGAS"]) for k, v in exp_rows.items())


def test_full_resolution_file_without_gt(h5_files: dict[str, Path], tmp_path: Path) -> None:
    code, text = invoke(f"pancollection:{h5_files['full']}", "--divisor", "255", "--sensor", "landsat7",
                        "--methods", "EXP,MTF-GLP-HPM", "--json", tmp_path / "f.json")
    assert code == 0, text
    assert "Full resolution" in text and "Reduced resolution" not in text
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["settings"]["protocols"] == ["full"]
    for r in doc["images"]:
        assert r["size"] == "256x256"  # already a multiple of 32: no crop
        assert all(0.0 <= r[k] <= 1.0 for k in FULL_KEYS)
        assert r["HQNR"] == pytest.approx((1 - r["D_lambda"]) * (1 - r["D_s"]))
    code, text = invoke(f"pancollection:{h5_files['full']}", "--divisor", "255", "--mode", "reduced")
    assert code != 0 and "l7_full.h5: no 'gt' key" in text


# ---------------------------------------------------------------------------------------------- FuseBox, pairs


def test_fusebox_default_is_held_out_acquisition_and_figure(landsat7_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "q.png"
    code, text = invoke(f"fusebox:{landsat7_dir}", "--methods", "EXP,GSA,MTF-GLP-HPM", "--csv", tmp_path / "a.csv",
                        "--figure", png)
    assert code == 0, text
    table = rows(tmp_path / "a.csv")
    assert {r["image"] for r in table} == {"fusebox_1"}  # P034R032 only
    assert "Wald at ratio 2" in text and "(Landsat7)" in text
    exp = next(r for r in table if r["method"] == "EXP")
    pair = load_fusebox(landsat7_dir, scenes=[1])[0]
    _, ms_lr = wald_degrade(pair.pan, pair.ms, 2, "Landsat7")
    assert float(exp["ERGAS"]) == pytest.approx(ergas(interp23(ms_lr, 2), pair.ms, 2), rel=1e-9)
    assert matplotlib.image.imread(png).shape[:2] == (2 * PANEL_PX, 4 * PANEL_PX)


def test_fusebox_all_acquisitions_both_modes(landsat7_dir: Path, tmp_path: Path) -> None:
    code, text = invoke(f"fusebox:{landsat7_dir}", "--acquisitions", "all", "--mode", "both", "--methods", "EXP",
                        "--border", "4", "--json", tmp_path / "b.json", "--figure", tmp_path / "b.png",
                        "--figure-image", "fusebox_13")
    assert code == 0, text
    doc = json.loads((tmp_path / "b.json").read_text())
    images = doc["images"]
    assert {(r["image"], r["protocol"]) for r in images} == {
        (f"fusebox_{n}", p) for n in (1, 7, 13) for p in ("reduced", "full")}
    full = [r for r in images if r["protocol"] == "full"]
    assert all(r["size"] == "224x224" and r["offset"] == "16,16" for r in full)  # 256 - 8 -> 224, centred
    assert doc["settings"]["data"]["acquisitions"] == ["P034R032", "P090R083", "P091R083", "P092R086",
                                                        "P093R085", "P093R086"]
    assert "fusebox_13" in text and "border crop 4 px" in text


def test_geotiff_pairs_folder(landsat8_dir: Path, tmp_path: Path) -> None:
    code, text = invoke(f"pairs:{landsat8_dir}", "--methods", "EXP,GSA", "--csv", tmp_path / "p.csv")
    assert code == 0, text
    table = rows(tmp_path / "p.csv")
    assert [r["image"] for r in table] == ["l8", "l8"] and table[0]["sensor"] == "Landsat8"
    assert all(math.isfinite(float(r["Q2n"])) for r in table)


def test_fusebox_band_subset_scored_in_the_order_asked(landsat7_dir: Path, tmp_path: Path) -> None:
    """--bands picks FuseBox bands by name and order (here SWIR and a three-band set): EXP's ERGAS is recomputed
    from the same bands, and the settings name them."""
    pair = load_fusebox(landsat7_dir, scenes=[1], bands=("swir2", "nir", "blue", "green", "red", "swir1"))[0]
    for bands in (("swir2", "nir", "blue", "green", "red", "swir1"), ("blue", "green", "red")):
        ms = pair.ms[..., [pair.band_names.index(b) for b in bands]]
        code, text = invoke(f"fusebox:{landsat7_dir}", "--methods", "EXP", "--bands", ",".join(bands),
                            "--json", tmp_path / f"{len(bands)}.json")
        assert code == 0, text
        doc = json.loads((tmp_path / f"{len(bands)}.json").read_text())
        assert doc["settings"]["data"]["band_names"] == list(bands)
        _, ms_lr = wald_degrade(pair.pan, ms, 2, "Landsat7")
        assert doc["images"][0]["ERGAS"] == pytest.approx(ergas(interp23(ms_lr, 2), ms, 2), rel=1e-9)


def test_geotiff_pairs_band_subset(landsat8_dir: Path, tmp_path: Path) -> None:
    code, text = invoke(f"pairs:{landsat8_dir}", "--methods", "EXP", "--bands", "red,green,blue",
                        "--json", tmp_path / "p.json")
    assert code == 0, text
    assert json.loads((tmp_path / "p.json").read_text())["settings"]["data"]["band_names"] == ["red", "green", "blue"]
    code, text = invoke(f"pairs:{landsat8_dir}", "--bands", "blue,swir1")
    assert code == 2 and f"{landsat8_dir}: no PAN/MS GeoTIFF pairs" in text and "*_B6.TIF (swir1)" in text
    code, text = invoke(f"pairs:{landsat8_dir}", "--bands", "blue,yellow")
    assert code == 2 and "l8_B2.tif: no band yellow (it has blue, green, red, nir)" in text


def test_a_pan_without_its_ms_in_a_pairs_folder_is_refused_not_left_out(landsat8_dir: Path, tmp_path: Path) -> None:
    """A Landsat PAN missing a band file, or a NAME_pan.tif whose MS is misnamed, beside complete pairs: one line naming
    it (before: the other pairs were scored and it was left out without a word)."""
    import shutil

    for site in ("s1", "s2"):
        shutil.copytree(landsat8_dir, tmp_path / site)
    (tmp_path / "s2/l8_B5.tif").unlink()
    code, text = invoke(f"pairs:{tmp_path}", "--methods", "EXP")
    assert code == 2 and f"{tmp_path / 's2/l8_B8.tif'}: a PAN without its MS (no l8_B5.tif (nir)" in text
    shutil.rmtree(tmp_path / "s2")
    shutil.copy(landsat8_dir / "l8_B8.tif", tmp_path / "s1/b_pan.tif")
    shutil.copy(landsat8_dir / "l8_B2.tif", tmp_path / "s1/b_mss.tif")
    code, text = invoke(f"pairs:{tmp_path}", "--methods", "EXP")
    assert code == 2 and f"{tmp_path / 's1/b_pan.tif'}: a PAN without its MS (no b_ms.tif or" in text


def test_model_refuses_other_bands_naming_the_switch(landsat7_dir: Path) -> None:
    """The bundled model fuses blue, green, red, nir: the same count in another order is refused, not mis-fused."""
    model = ROOT / "ddrf/assets/models/landsat_ratio2"
    code, text = invoke(f"fusebox:{landsat7_dir}", "--methods", f"ddrf:{model}", "--bands", "red,green,blue,nir")
    assert code == 2 and "the model fuses bands blue, green, red, nir" in text
    assert "--bands blue,green,red,nir" in text


def test_rgb_from_band_names() -> None:
    assert rgb_indices(("blue", "green", "red", "nir"), 4) == [2, 1, 0]
    assert rgb_indices(("coastal", "blue", "green", "yellow", "red", "red_edge", "nir1", "nir2"), 8) == [4, 2, 1]
    assert rgb_indices(("b1", "b2"), 2) == [0, 0, 0]


def test_full_crop_is_centred_ratio_aligned_block_multiple() -> None:
    assert full_crop(796, 796, 2, 0, 32) == (14, 14, 768, 768)
    assert full_crop(512, 500, 4, 0, 32) == (0, 8, 512, 480)
    with pytest.raises(ValueError, match="below one 32-pixel block"):
        full_crop(40, 40, 2, 6, 32)


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["pancollection:/nonexistent/x.h5"], "/nonexistent/x.h5: file missing"),
    (["fusebox:/nonexistent/dir"], "/nonexistent/dir: FuseBox folder does not exist"),
    (["h5:/x"], "expected pancollection:FILE.h5"),
    (["fusebox:{l7}", "--methods", "EXP,Nope"], "unknown method 'Nope'"),
    (["fusebox:{l7}", "--acquisitions", "P999R999"], "--acquisitions 'P999R999'"),
    (["fusebox:{l7}", "--bands", "blue,teal"], "--bands: FuseBox has no band teal"),
    (["fusebox:{l7}", "--mode", "full", "--border", "3"], "multiple of the ratio"),
    (["fusebox:{l7}", "--methods", "EXP", "--figure", "{tmp}/f.png", "--figure-image", "nope", "--csv",
      "{tmp}/t.csv"], "no such image"),
    (["fusebox:{l7}", "--methods", "EXP", "--bands", "red,,green"], "--bands"),
    (["fusebox:{l7}", "--methods", "EXP", "--sensor", "WV3"], "--sensor"),
])
def test_bad_inputs_fail_with_one_clear_line(args: list[str], message: str, landsat7_dir: Path,
                                             tmp_path: Path) -> None:
    code, text = invoke(*(a.format(l7=landsat7_dir, tmp=tmp_path) for a in args))
    assert code == 2
    assert message in text and "Traceback" not in text
    assert list(tmp_path.iterdir()) == []  # no output of a refused run (the CSV was written before the figure's check)



@pytest.mark.parametrize("data, args, message", [
    ("fusebox:{l7}", ["--border", "1000"], "--border 1000: image fusebox_1 ({l7}/1_pan.mat) is 128x128 on the fused "
     "grid (reduced protocol), and the metrics need a 32-pixel block inside the border: at most --border 48"),
    ("fusebox:{l7}", ["--border", "1000", "--mode", "full"], "(full protocol), and the metrics need a 32-pixel block "
     "inside the border: at most --border 112"),
    ("pairs:{l8}", ["--border", "40"], "--border 40: image l8 ({l8}/l8_B8.tif) is 64x62 on the fused grid (reduced "
     "protocol), and the metrics need a 32-pixel block inside the border: at most --border 15"),
    ("fusebox:{l7}", ["--simulate-ratio", "1024"], "--simulate-ratio 1024: image fusebox_1 ({l7}/1_pan.mat) has a "
     "128x128 MS, so at most --simulate-ratio 128 (one MS pixel left)"),
    ("pairs:{l8}", ["--simulate-ratio", "100"], "--simulate-ratio 100: interp23, which upsamples the MS for every "
     "method, takes powers of two and ratios up to 45"),
])
def test_a_border_or_ratio_too_large_for_the_images_names_option_image_and_limit(data: str, args: list[str],
                                                                                 message: str,
                                                                                 landsat7_dir: Path) -> None:
    """Before: `border 1000 leaves nothing of a 128x128 image`, `MS 128x128 is smaller than the ratio 1000` and `EXP on
    fusebox_1: min() arg is an empty sequence`, naming neither the option nor the file nor what would do."""
    where = {"l7": landsat7_dir, "l8": ROOT / "tests/data/landsat8"}
    code, text = invoke(data.format(**where), "--methods", "EXP", *args)
    assert code == 2 and len(text.strip().splitlines()) == 1, text
    assert message.format(**where) in " ".join(text.split())



def test_scores_on_acquisitions_a_model_was_trained_on_are_said_to_be_in_sample(landsat7_dir: Path,
                                                                                tmp_path: Path) -> None:
    """--acquisitions all scores landsat_ratio2 on fusebox_7 and fusebox_13, whose acquisitions it was trained on (its
    card's training.acquisitions_used): said once on stderr and recorded in the JSON settings (before: their scores
    were averaged with the held-out one's as if all were held out); --fit-spread says it too."""
    import shutil

    code, text = invoke(f"fusebox:{landsat7_dir}", "--acquisitions", "all", "--methods", "EXP,ddrf:landsat_ratio2",
                        "--json", tmp_path / "r.json")
    assert code == 0, text
    said = [line for line in text.splitlines() if "in-sample" in line]
    assert said == ["ddrf-eval: DDRF[landsat_ratio2] was trained on acquisition(s) P090R083, P091R083 of these "
                    "images (its card's training.acquisitions_used): results on them are in-sample, not held out"]
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert settings["methods"]["DDRF[landsat_ratio2]"]["in_sample_acquisitions"] == ["P090R083", "P091R083"]
    code, text = invoke(f"fusebox:{landsat7_dir}", "--methods", "ddrf:landsat_ratio2")  # P034R032: held out
    assert code == 0 and "in-sample" not in text
    model = tmp_path / "model"  # a spread fitted on training images is as in-sample
    shutil.copytree(ROOT / "tests/data/tiny_model/model", model)
    card = json.loads((model / "card.json").read_text())
    (model / "card.json").write_text(json.dumps({**card, "training": {"acquisitions_used": ["P091R083"]}}))
    code, text = invoke(f"fusebox:{landsat7_dir}", "--acquisitions", "all", "--methods", f"ddrf:{model}", "--samples",
                        "2", "--tile", "96", "--fit-spread")
    assert code == 0 and "DDRF[model-N2] was trained on acquisition(s) P091R083 of these images" in text, text


def test_wrong_keys_named(tmp_path: Path) -> None:
    bad = tmp_path / "wv3_bad.h5"
    with h5py.File(bad, "w") as f:
        f["images"] = np.zeros((1, 4, 8, 8), np.float32)
    code, text = invoke(f"pancollection:{bad}")
    assert code == 2 and "wv3_bad.h5: no PanCollection keys" in text


def test_overwrite_refused_then_allowed(landsat7_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("keep me\n")
    code, text = invoke(f"fusebox:{landsat7_dir}", "--methods", "EXP", "--csv", target)
    assert code == 2 and "exists; pass --overwrite" in text
    assert target.read_text() == "keep me\n"
    code, text = invoke(f"fusebox:{landsat7_dir}", "--methods", "EXP", "--csv", target, "--overwrite")
    assert code == 0 and rows(target)[0]["method"] == "EXP"
    assert not list(tmp_path.glob(".t.csv.*"))  # atomic write left no temporary behind


def test_classical_and_onnx_runs_never_import_torch(landsat7_dir: Path) -> None:
    """Classical methods and ddrf: (through ddrf-run's tiled path) stay torch-free."""
    model = ROOT / "tests/data/tiny_model/model"
    script = ("import sys\nfrom typer.testing import CliRunner\nfrom ddrf.evaluate.command import app\n"
              f"r = CliRunner().invoke(app, ['fusebox:{landsat7_dir}', '--methods', 'EXP,GSA,ddrf:{model}'])\n"
              "assert r.exit_code == 0, r.output\nprint('torch' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_generic_pan_ms_pair_names(landsat8_dir: Path, tmp_path: Path) -> None:
    """NAME_pan.tif + NAME_ms.tif (one multi-band MS file), in a sub-folder, exactly nested grids."""
    import rasterio
    from affine import Affine

    with rasterio.open(landsat8_dir / "l8_B8.tif") as src:
        pan = src.read(1)[:128, :124]
    ms = np.stack([rasterio.open(landsat8_dir / f"l8_B{b}.tif").read(1)[:64, :62] for b in (2, 3, 4, 5)])
    (tmp_path / "site").mkdir()
    for name, data, size in (("a_pan", pan[None], 15.0), ("a_ms", ms, 30.0)):
        profile = dict(driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype="uint16", crs="EPSG:32633", transform=Affine(size, 0, 500000, 0, -size, 4000000))
        with rasterio.open(tmp_path / "site" / f"{name}.tif", "w", **profile) as dst:
            dst.write(data)
    code, text = invoke(f"pairs:{tmp_path}", "--methods", "EXP", "--sensor", "landsat8", "--json", tmp_path / "g.json")
    assert code == 0, text
    doc = json.loads((tmp_path / "g.json").read_text())
    assert [r["image"] for r in doc["images"]] == ["a"] and doc["images"][0]["size"] == "64x62"  # the reference is the MS
    code, text = invoke(f"pairs:{tmp_path / 'site' / 'a_pan.tif'}")
    assert code == 2 and "pairs folder does not exist" in text


class _StubFuser:
    """Stands in for runtime.Fuser: returns the LMS plus the seed, so the N-seed mean is checkable."""

    card = type("Card", (), {"ratio": 2, "bands": ["blue", "green", "red", "nir"], "sensor": "Landsat7", "band_wise": False})()
    steps = 2

    def fuse(self, pan: np.ndarray, ms: np.ndarray, seed: int = 0) -> np.ndarray:
        return (interp23(ms, 2) + seed).astype(np.float32)


def test_ddrf_method_averages_seeds_and_checks_card(l7_pairs: list, tmp_path: Path) -> None:
    from ddrf.evaluate.datasets import wald_samples
    from ddrf.evaluate.methods import OnnxDDRF, Tiling, parse_methods

    sample = next(wald_samples(l7_pairs[0], ["reduced"]))
    # the stub has Fuser.fuse only: the whole-image path (tiled averaging: tests/test_evaluate_tiled.py)
    method = OnnxDDRF(tmp_path, steps=2, samples=3, seed=0, tiling=Tiling(whole_image=True), _fuser=_StubFuser())
    assert method.name == f"DDRF[{tmp_path.name}-K2-N3]"
    assert np.allclose(method.fuse(sample), interp23(sample.ms, 2) + 1.0, atol=1e-3)  # mean of seeds 0, 1, 2
    sample.ms = sample.ms[..., :3]
    with pytest.raises(ValueError, match="the model fuses 4 bands at ratio 2"):
        method.fuse(sample)
    with pytest.raises(ValueError, match="missing: no model folder there .*landsat_ratio2"):
        parse_methods(f"EXP,ddrf:{tmp_path / 'missing'}")
    (named,) = parse_methods("ddrf:landsat_ratio4_band_wise")  # a bundled model by its name
    assert named.model_dir == ROOT / "ddrf/assets/models/landsat_ratio4_band_wise"
    code, text = invoke(f"fusebox:{ROOT / 'tests/data/landsat7'}", "--methods", f"ddrf:{tmp_path}")
    assert code == 2 and "no card.json" in text


def test_models_in_folders_of_one_name_keep_their_own_rows(tmp_path: Path) -> None:
    """Two runs' exports both called `model` are told apart by their paths; the same method twice is refused."""
    from ddrf.evaluate.methods import parse_methods

    for run in ("a", "b"):
        (tmp_path / run / "model").mkdir(parents=True)
    first, second, third = parse_methods(f"ddrf:{tmp_path / 'a/model'},ddrf:{tmp_path / 'b/model'},"
                                         f"ckpt:{tmp_path / 'a/model'}")
    assert (first.name, second.name, third.name) == ("DDRF[a/model]", "DDRF[b/model]", "DDRF-ckpt[model]")
    (single,) = parse_methods(f"ddrf:{tmp_path / 'a/model'}")
    assert single.name == "DDRF[model]"
    with pytest.raises(ValueError, match=r"DDRF\[model\] given more than once"):
        parse_methods(f"ddrf:{tmp_path / 'a/model'},ddrf:{tmp_path / 'a/model'}")
    with pytest.raises(ValueError, match="EXP given more than once"):
        parse_methods("EXP,GSA,exp")


def test_fit_spread_writes_the_calibration_into_the_models_card(tmp_path: Path) -> None:
    """--fit-spread: c pooled over the images, written with its N and K into the model's card.json; one model and N >= 2
    only, refused in one line otherwise, with the card untouched."""
    import shutil

    from ddrf.card import read_card

    model = tmp_path / "model"
    shutil.copytree(ROOT / "tests/data/tiny_model/model", model)
    data = f"fusebox:{ROOT / 'tests/data/landsat7'}"
    code, text = invoke(data, "--methods", f"ddrf:{model}", "--samples", "1", "--fit-spread")
    assert code == 2 and "--fit-spread needs --samples N >= 2" in text
    code, text = invoke(data, "--methods", f"EXP,ddrf:{model}", "--samples", "4", "--fit-spread")
    assert code == 2 and "exactly one exported model" in text
    assert read_card(model / "card.json").spread_calibration == 1.0
    code, text = invoke(data, "--acquisitions", "all", "--methods", f"ddrf:{model}", "--samples", "4", "--tile", "96",
                        "--fit-spread")
    assert code == 0, text
    card = read_card(model / "card.json")
    assert card.spread_calibration > 1 and card.spread_calibration_samples == 4
    assert card.spread_calibration_steps == card.sampling_steps and card.spread_problem(card.sampling_steps) is None
    covered = [float(line.split("covers ")[1].rstrip(" %")) for line in text.splitlines() if " covers " in line]
    assert len(covered) == 3 and 90 < sum(covered) / 3 < 99  # pooled: about 95 % on average, in sample
    assert "the others:" in text and f"spread_calibration = {card.spread_calibration} at N = 4 seeds, K = " in text


@pytest.mark.parametrize("extra", [["--csv", "{tmp}/s.csv"], ["--json", "{tmp}/s.json"], ["--mode", "full"],
                                   ["--border", "4"], ["--figure", "{tmp}/f.png"]])
def test_fit_spread_refuses_the_options_of_a_scoring_run(extra: list[str], tmp_path: Path) -> None:
    """--fit-spread writes only the card: a --csv, --json, --figure, --border or --mode full given with it is refused
    before any fusion (before: ignored, exit 0, no table written and the card refitted)."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(ROOT / "tests/data/tiny_model/model", model)
    card = (model / "card.json").read_text()
    code, text = invoke(f"fusebox:{ROOT / 'tests/data/landsat7'}", "--methods", f"ddrf:{model}", "--samples", "2",
                        "--fit-spread", *(a.format(tmp=tmp_path) for a in extra))
    assert code == 2 and f"{extra[0]} " in text and "not with --fit-spread" in text
    assert (model / "card.json").read_text() == card and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_output_into_a_bundled_model_named_by_its_name_is_refused(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """ddrf:NAME reads the bundled model's folder, so --json into it is refused as into any input, also with
    --overwrite (before: only the path as typed was guarded, and the model's README was replaced by the JSON)."""
    import shutil

    shutil.copytree(ROOT / "tests/data/tiny_model/model", tmp_path / "bundled/tiny")
    monkeypatch.setenv("DDRF_BUNDLED_MODELS", str(tmp_path / "bundled"))
    card = tmp_path / "bundled/tiny/card.json"
    before = card.read_text()
    code, text = invoke(f"fusebox:{ROOT / 'tests/data/landsat7'}", "--methods", "EXP,ddrf:tiny", "--json", card,
                        "--overwrite")
    assert code == 2 and f"{card}: is an input of this command" in text
    assert card.read_text() == before


def test_fit_spread_never_writes_into_a_bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundled model's card serves every run of the install: --fit-spread on it, named by its name or by its path
    (also the package's own folder), is refused in one line giving the copy command, before any fusion (before: the
    shared card was refitted on the user's images); a copy is fitted."""
    import shutil

    from ddrf.assets import BUNDLED_MODELS

    shutil.copytree(ROOT / "tests/data/tiny_model/model", tmp_path / "bundled/tiny")
    monkeypatch.setenv("DDRF_BUNDLED_MODELS", str(tmp_path / "bundled"))
    card = tmp_path / "bundled/tiny/card.json"
    before = card.read_text()
    shipped = {p: p.read_text() for p in BUNDLED_MODELS.glob("*/card.json")}
    data = f"fusebox:{ROOT / 'tests/data/landsat7'}"
    for given in ("tiny", tmp_path / "bundled/tiny", BUNDLED_MODELS / "landsat_ratio2"):
        code, text = invoke(data, "--methods", f"ddrf:{given}", "--samples", "2", "--fit-spread")
        assert code == 2 and len(text.strip().splitlines()) == 1, text
        assert "a bundled model" in text and "cp -r " in text and "--fit-spread" in text
    assert card.read_text() == before and shipped == {p: p.read_text() for p in shipped}
    copy = tmp_path / "mine"
    shutil.copytree(tmp_path / "bundled/tiny", copy)
    code, text = invoke(data, "--methods", f"ddrf:{copy}", "--samples", "2", "--tile", "96", "--fit-spread")
    assert code == 0 and f"{copy / 'card.json'}: spread_calibration = " in text


@pytest.mark.parametrize("fit", [[], ["--fit-spread"]])
def test_more_views_than_a_window_has_are_refused(fit: list[str], tmp_path: Path) -> None:
    """--views --samples 9: a window has 8 views, so the ninth would be the first again (ddrf-run refuses --ensemble 9);
    before, the mean weighed view 0 twice and --fit-spread wrote a fit for 9 views that no run can use."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(ROOT / "tests/data/tiny_model/model", model)
    card = (model / "card.json").read_text()
    code, text = invoke(f"fusebox:{ROOT / 'tests/data/landsat7'}", "--methods", f"ddrf:{model}", "--views",
                        "--samples", "9", *fit)
    assert code == 2 and "--views --samples 9: a window has 8 views" in text
    assert (model / "card.json").read_text() == card
