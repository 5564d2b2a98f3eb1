"""ddrf.data readers on the committed real crops (tests/data) and on small files written in tmp_path."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io
from affine import Affine

from ddrf.data import (
    FUSEBOX_TEST_ACQUISITION,
    Pair,
    PanCollectionFile,
    fusebox_acquisition,
    infer_divisor,
    load_fusebox,
    read_geotiff_pair,
    read_pancollection,
    split_by_acquisition,
)
from ddrf.geometry import align_axis

SCENES = (1, 7, 13)
FILE_BAND = {"red": 0, "green": 1, "blue": 2, "nir": 3, "swir1": 4, "swir2": 5}


def raw_fusebox(folder: Path, scene: int) -> tuple[np.ndarray, np.ndarray]:
    ms = scipy.io.loadmat(folder / f"{scene}_ms.mat")["cropped_im"]
    pan = scipy.io.loadmat(folder / f"{scene}_pan.mat")["cropped_gray"]
    return ms.astype(np.float64), pan.astype(np.float64)


@pytest.fixture(scope="module")
def fusebox_pairs(landsat7_dir: Path) -> list[Pair]:
    return load_fusebox(landsat7_dir)


# ---------------------------------------------------------------------------------------------- FuseBox


def test_fusebox_shapes_and_metadata(fusebox_pairs: list[Pair]) -> None:
    assert [p.name for p in fusebox_pairs] == ["fusebox_1", "fusebox_7", "fusebox_13"]
    assert [p.acquisition for p in fusebox_pairs] == ["P034R032", "P090R083", "P091R083"]
    for pair in fusebox_pairs:
        # 129 MS -> 128 after the one-pixel correction (already a multiple of the ratio).
        assert pair.ms.shape == (128, 128, 4) and pair.pan.shape == (256, 256)
        assert pair.ms.dtype == np.float64 and pair.pan.dtype == np.float64
        assert (pair.ratio, pair.sensor, pair.bits) == (2, "Landsat7", 8)
        assert pair.band_names == ("blue", "green", "red", "nir")


def test_fusebox_band_order_and_correction_indices(fusebox_pairs: list[Pair], landsat7_dir: Path) -> None:
    for scene, pair in zip(SCENES, fusebox_pairs):
        ms, pan = raw_fusebox(landsat7_dir, scene)
        for i, band in enumerate(pair.band_names):
            np.testing.assert_array_equal(pair.ms[..., i], ms[1:129, 1:129, FILE_BAND[band]])
        np.testing.assert_array_equal(pair.pan, pan[1:257, 1:257])
    # Blue is the file's third band, not its first (red): the two differ on real data.
    assert not np.array_equal(fusebox_pairs[0].ms[..., 0], ms_red := raw_fusebox(landsat7_dir, 1)[0][1:129, 1:129, 0])
    assert ms_red.shape == (128, 128)


def test_fusebox_custom_bands(landsat7_dir: Path) -> None:
    (pair,) = load_fusebox(landsat7_dir, scenes=[7], bands=("swir2", "nir"))
    ms, _ = raw_fusebox(landsat7_dir, 7)
    np.testing.assert_array_equal(pair.ms[..., 0], ms[1:129, 1:129, 5])
    assert pair.band_names == ("swir2", "nir")
    with pytest.raises(ValueError, match="bands"):
        load_fusebox(landsat7_dir, scenes=[7], bands=("pan",))


def _fit_correlation(ms: np.ndarray, pan: np.ndarray) -> float:
    """Correlation of PAN with its least-squares fit from the pixel-replicated green, red, NIR bands."""
    up = np.repeat(np.repeat(ms[..., [1, 2, 3]], 2, axis=0), 2, axis=1)
    design = np.c_[up.reshape(-1, 3), np.ones(pan.size)]
    weights, *_ = np.linalg.lstsq(design, pan.ravel(), rcond=None)
    return float(np.corrcoef(design @ weights, pan.ravel())[0, 1])


def test_misregistration_correction_improves_pan_fit(fusebox_pairs: list[Pair], landsat7_dir: Path) -> None:
    for scene, pair in zip(SCENES, fusebox_pairs):
        ms, pan = raw_fusebox(landsat7_dir, scene)
        uncorrected = _fit_correlation(ms[:128, :128, [2, 1, 0, 3]], pan[:256, :256])
        corrected = _fit_correlation(pair.ms, pair.pan)
        assert corrected > uncorrected + 0.02, (scene, corrected, uncorrected)
        assert corrected > 0.85


def test_fusebox_acquisition_table() -> None:
    assert [fusebox_acquisition(s) for s in (1, 6, 7, 12, 13, 19, 25, 31, 32, 39)] == [
        "P034R032", "P034R032", "P090R083", "P090R083", "P091R083",
        "P092R086", "P093R085", "P093R085", "P093R086", "P093R086",
    ]  # fmt: skip
    for bad in (0, 40):
        with pytest.raises(ValueError, match="no acquisition"):
            fusebox_acquisition(bad)


def test_split_by_acquisition(fusebox_pairs: list[Pair]) -> None:
    assert FUSEBOX_TEST_ACQUISITION == "P034R032"
    train, test = split_by_acquisition(fusebox_pairs)
    assert [p.name for p in test] == ["fusebox_1"]
    assert [p.name for p in train] == ["fusebox_7", "fusebox_13"]
    assert not {p.acquisition for p in train} & {p.acquisition for p in test}
    train2, test2 = split_by_acquisition(fusebox_pairs, test="P090R083")
    assert [p.name for p in test2] == ["fusebox_7"] and len(train2) == 2


def test_fusebox_accepts_cropped_subfolder(tmp_path: Path, landsat7_dir: Path) -> None:
    (tmp_path / "cropped").mkdir()
    for name in ("13_ms.mat", "13_pan.mat"):
        shutil.copy(landsat7_dir / name, tmp_path / "cropped" / name)
    (pair,) = load_fusebox(tmp_path)
    assert pair.acquisition == "P091R083"


def test_fusebox_errors(tmp_path: Path, landsat7_dir: Path) -> None:
    with pytest.raises(ValueError, match="no N_ms.mat"):
        load_fusebox(tmp_path)
    ms, pan = raw_fusebox(landsat7_dir, 1)
    scipy.io.savemat(tmp_path / "2_ms.mat", {"im": ms.astype(np.uint8)})
    with pytest.raises(ValueError, match=r"2_ms\.mat: variable 'cropped_im' missing"):
        load_fusebox(tmp_path)
    scipy.io.savemat(tmp_path / "2_ms.mat", {"cropped_im": ms.astype(np.uint8)})
    with pytest.raises(ValueError, match=r"2_pan\.mat: file missing"):
        load_fusebox(tmp_path)
    scipy.io.savemat(tmp_path / "2_pan.mat", {"cropped_gray": pan[:200, :258].astype(np.uint8)})
    with pytest.raises(ValueError, match=r"2_pan\.mat: 'cropped_gray' is \(200, 258\)"):
        load_fusebox(tmp_path)
    scipy.io.savemat(tmp_path / "2_ms.mat", {"cropped_im": ms[..., :4].astype(np.uint8)})
    with pytest.raises(ValueError, match=r"2_ms\.mat: 'cropped_im' has 4 bands"):
        load_fusebox(tmp_path)


def test_pair_validates_shapes() -> None:
    ms, pan = np.zeros((4, 4, 3)), np.zeros((8, 8))
    with pytest.raises(ValueError, match="not ratio 4"):
        Pair("x", "a", pan, ms, ratio=4, sensor="generic", bits=8, band_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="2 band names"):
        Pair("x", "a", pan, ms, ratio=2, sensor="generic", bits=8, band_names=("a", "b"))


# ---------------------------------------------------------------------------------------------- PanCollection


def _write_h5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


@pytest.fixture(scope="module")
def pancollection_arrays(landsat7_dir: Path) -> dict[str, np.ndarray]:
    """PanCollection schema (float64 DN, NCHW, ratio 4) filled with real Landsat-7 pixels scaled to 11 bits."""
    ms, pan = raw_fusebox(landsat7_dir, 7)
    gt = np.stack([ms[32 * i : 32 * i + 32, :32, :4].transpose(2, 0, 1) for i in range(3)]) * 8
    lr = gt.reshape(3, 4, 8, 4, 8, 4).mean(axis=(3, 5))
    return {
        "gt": gt,
        "ms": lr,
        "lms": np.repeat(np.repeat(lr, 4, axis=2), 4, axis=3),
        "pan": np.stack([pan[64 * i : 64 * i + 32, :32] for i in range(3)])[:, None] * 8,
    }


def test_read_pancollection_scales_and_keeps_nchw(tmp_path: Path, pancollection_arrays: dict) -> None:
    path = _write_h5(tmp_path / "test_qb_multiExm1.h5", pancollection_arrays)
    data = read_pancollection(path)
    assert set(data) == {"gt", "ms", "lms", "pan"}
    assert (data.kind, data.ratio, data.divisor) == ("pansharpening", 4, 2047.0)
    for key, raw in pancollection_arrays.items():
        assert data[key].dtype == np.float32 and data[key].shape == raw.shape
        np.testing.assert_allclose(data[key], raw / 2047.0, rtol=1e-6)
    assert data["pan"].shape == (3, 1, 32, 32) and data["ms"].shape == (3, 4, 8, 8)
    assert 0.0 <= data["gt"].min() and data["gt"].max() <= 1.0


def test_pancollection_lazy_access(tmp_path: Path, pancollection_arrays: dict) -> None:
    path = _write_h5(tmp_path / "train_gf2.h5", pancollection_arrays)
    with PanCollectionFile(path) as source:
        assert len(source) == 3 and source.divisor == 1023.0 and source.has_gt
        sample = source[1]
        assert set(sample) == {"gt", "ms", "lms", "pan"} and sample["ms"].shape == (4, 8, 8)
        np.testing.assert_allclose(sample["pan"], pancollection_arrays["pan"][1] / 1023.0, rtol=1e-6)
        np.testing.assert_array_equal(source[-1]["gt"], source[2]["gt"])
        with pytest.raises(IndexError):
            source[3]
        clone = pickle.loads(pickle.dumps(source))  # DataLoader workers receive a pickled copy
    np.testing.assert_array_equal(clone[0]["lms"], source[0]["lms"])  # reopens after close
    clone.close()


def test_pancollection_full_resolution_has_no_gt(tmp_path: Path, pancollection_arrays: dict) -> None:
    arrays = {k: v for k, v in pancollection_arrays.items() if k != "gt"}
    data = read_pancollection(_write_h5(tmp_path / "test_wv3_OrigScale_multiExm1.h5", arrays))
    assert set(data) == {"ms", "lms", "pan"} and data.divisor == 2047.0


@pytest.mark.parametrize(
    ("name", "divisor"),
    [("train_wv3.h5", 2047.0), ("valid_wv2.h5", 2047.0), ("test_qb_multiExm1.h5", 2047.0),
     ("test_gf2_OrigScale_multiExm1.h5", 1023.0), ("GF2/train.h5", 1023.0)],
)  # fmt: skip
def test_infer_divisor(name: str, divisor: float) -> None:
    assert infer_divisor(Path("/data") / name) == divisor


def test_divisor_errors_and_override(tmp_path: Path, pancollection_arrays: dict) -> None:
    path = _write_h5(tmp_path / "patches.h5", pancollection_arrays)
    with pytest.raises(ValueError, match=r"patches\.h5: cannot infer.*--divisor"):
        read_pancollection(path)
    with pytest.raises(ValueError, match="several sensors"):
        infer_divisor("wv3_vs_gf2.h5")
    assert read_pancollection(path, divisor=4095).divisor == 4095.0
    with pytest.raises(ValueError, match="positive"):
        read_pancollection(path, divisor=0)


def test_pancollection_validation_errors(tmp_path: Path, pancollection_arrays: dict) -> None:
    base = pancollection_arrays
    cases = {
        "missing.h5": ({k: v for k, v in base.items() if k != "lms"}, r"lacks keys \['lms'\]"),
        "count.h5": ({**base, "pan": base["pan"][:2]}, "sample counts differ"),
        "ratio.h5": ({**base, "ms": base["ms"][:, :, :7, :7]}, "not an integer ratio"),
        "ndim.h5": ({**base, "pan": base["pan"][:, 0]}, "expected NCHW"),
        "bands.h5": ({**base, "lms": base["lms"][:, :3]}, "band count"),
        "nothing.h5": ({"images": base["gt"]}, "no PanCollection keys"),
    }
    for name, (arrays, message) in cases.items():
        path = _write_h5(tmp_path / f"wv3_{name}", arrays)
        with pytest.raises(ValueError, match=rf"wv3_{name.replace('.', '[.]')}: .*{message}"):
            read_pancollection(path)
    (tmp_path / "wv3_text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_pancollection(tmp_path / "wv3_text.h5")


def test_pancollection_hyperspectral_keys(tmp_path: Path, pancollection_arrays: dict) -> None:
    scaled = {k: v / 2047.0 for k, v in pancollection_arrays.items()}
    arrays = {"GT": scaled["gt"], "LRHSI": scaled["ms"], "HSI_up": scaled["lms"],
              "RGB": np.repeat(scaled["pan"], 3, axis=1)}  # fmt: skip
    data = read_pancollection(_write_h5(tmp_path / "train_cave_x4.h5", arrays))
    assert (data.kind, data.divisor, data.ratio) == ("hyperspectral", 1.0, 4)
    assert data["pan"].shape == (3, 3, 32, 32)
    np.testing.assert_allclose(data["ms"], scaled["ms"], rtol=1e-6)
    np.testing.assert_allclose(data["lms"], scaled["lms"], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- GeoTIFF


def test_geotiff_pair_on_real_landsat8(landsat8_paths: tuple[Path, list[Path]]) -> None:
    pan_path, ms_paths = landsat8_paths
    pair = read_geotiff_pair(pan_path, ms_paths, sensor="Landsat8", bits=12)
    assert (pair.ratio, pair.sensor, pair.bits) == (2, "Landsat8", 12)
    assert pair.crs == rasterio.crs.CRS.from_epsg(32616)
    # PAN is 128 rows x 127 cols (2N-1 wide): 64 MS rows survive, 63 MS columns.
    assert pair.ms.shape == (64, 63, 4) and pair.pan.shape == (128, 126)
    assert pair.band_names == ("l8_B2", "l8_B3", "l8_B4", "l8_B5")
    # Landsat's half-pixel convention: the MS origin sits half a PAN pixel inside the PAN origin, so MS sample j's
    # centre is PAN pixel 2j+1's centre (the interp23 grid) with no resampling: ms_transform is the file's.
    col, row = ~pair.pan_transform @ (pair.ms_transform @ (0.5, 0.5))
    assert (row, col) == pytest.approx((1.5, 1.5))
    with rasterio.open(ms_paths[0]) as src:
        assert pair.ms_transform.almost_equals(src.transform)
    with rasterio.open(pan_path) as src:
        assert pair.pan_transform == src.transform  # whole PAN kept from its origin
        np.testing.assert_array_equal(pair.pan, src.read(1)[:, :126])
    for i, path in enumerate(ms_paths):
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(pair.ms[..., i], src.read(1)[:, :63])


def test_geotiff_default_bits_and_order(landsat8_paths: tuple[Path, list[Path]]) -> None:
    pan_path, ms_paths = landsat8_paths
    pair = read_geotiff_pair(pan_path, ms_paths[::-1], band_names=("nir", "red", "green", "blue"))
    assert pair.bits == 16 and pair.sensor == "generic" and pair.band_names[0] == "nir"
    with rasterio.open(ms_paths[3]) as src:
        np.testing.assert_array_equal(pair.ms[..., 0], src.read(1)[:, :63])


@pytest.mark.parametrize(
    ("origin", "expected"),
    [(0.5, (0, 20, 0, 0.0)), (0.49999999999, (0, 20, 0, 0.0)), (-0.5, (1, 18, 1, 0.0)), (-1.5, (0, 18, 1, 0.0)),
     (0.0, (0, 20, 0, 0.25)), (3.0, (3, 17, 0, 0.25))],
)  # fmt: skip
def test_align_axis(origin: float, expected: tuple) -> None:
    """(start, length, base, frac) at ratio 2 for a 20-pixel PAN and 10-pixel MS axis (hand-derived: MS sample i
    must land on output pixel 2i + 1, centre on centre; a nested origin 0 is a quarter MS pixel off)."""
    a = align_axis(origin, ratio=2, pan_len=20, ms_len=10)
    assert (a.start, a.length, a.base, a.frac) == pytest.approx(expected)


def _rewrite(src_path: Path, dst_path: Path, transform: Affine | None = None, crs: str | None = "keep") -> Path:
    with rasterio.open(src_path) as src:
        data, profile = src.read(), src.profile
    profile.update(transform=transform or profile["transform"])
    if crs != "keep":
        profile.update(crs=crs)
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)
    return dst_path


def test_geotiff_ms_starting_before_pan(tmp_path: Path, landsat8_paths: tuple[Path, list[Path]]) -> None:
    # Move the MS grid one MS pixel left/up: the first MS column and row then lie (partly) outside the PAN.
    pan_path, ms_paths = landsat8_paths
    with rasterio.open(ms_paths[0]) as src:
        moved = src.transform @ Affine.translation(-1, -1)
        raw = src.read(1)
    ms_path = _rewrite(ms_paths[0], tmp_path / "b2.tif", transform=moved)
    pair = read_geotiff_pair(pan_path, [ms_path])
    assert pair.ms.shape == (63, 63, 1)
    np.testing.assert_array_equal(pair.ms[..., 0], raw[1:, 1:])


def test_geotiff_errors(tmp_path: Path, landsat8_paths: tuple[Path, list[Path]]) -> None:
    pan_path, ms_paths = landsat8_paths
    wrong_crs = _rewrite(ms_paths[1], tmp_path / "crs.tif", crs="EPSG:32617")
    with pytest.raises(ValueError, match=r"crs\.tif: CRS EPSG:32617 differs"):
        read_geotiff_pair(pan_path, [ms_paths[0], wrong_crs])
    with rasterio.open(ms_paths[0]) as src:
        t = src.transform
    coarse = _rewrite(ms_paths[0], tmp_path / "ratio.tif", transform=Affine(40.0, 0, t.c, 0, -40.0, t.f))
    with pytest.raises(ValueError, match=r"ratio\.tif: pixel size .* not one integer"):
        read_geotiff_pair(pan_path, [coarse])
    shifted = _rewrite(ms_paths[0], tmp_path / "grid.tif", transform=t @ Affine.translation(2, 0))
    with pytest.raises(ValueError, match=r"grid\.tif: MS grid differs"):
        read_geotiff_pair(pan_path, [ms_paths[0], shifted])
    far = _rewrite(ms_paths[0], tmp_path / "far.tif", transform=t @ Affine.translation(1000, 0))
    with pytest.raises(ValueError, match="do not overlap"):
        read_geotiff_pair(pan_path, [far])
    no_crs = _rewrite(pan_path, tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(ValueError, match=r"nocrs\.tif: not georeferenced \(no CRS"):
        read_geotiff_pair(no_crs, ms_paths)
    with pytest.raises(ValueError, match="file missing"):
        read_geotiff_pair(tmp_path / "absent.tif", ms_paths)
