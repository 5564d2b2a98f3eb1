"""Guards of the Python API (ddrf.fuse, ddrf.fuse_scene) and of the runtime's `Fuser`: input refused in one line
rather than fused into made-up or stale output."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ddrf
from stac_fixtures import SAMPLE
from test_api_progress import sample_arrays

BUNDLED = Path(ddrf.__file__).parent / "assets" / "models"


def test_the_fuser_refuses_non_finite_input_and_zero_steps() -> None:
    """One NaN made all of Fuser.fuse's output NaN, with no error; steps=0 was silently the card's default."""
    from ddrf.runtime.fuser import Fuser

    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        Fuser(BUNDLED / "landsat_ratio2_band_wise", steps=0)
    pan, ms = sample_arrays(32)
    holed = ms.astype(np.float32)
    holed[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="ms has 1 NaN or infinite"):
        Fuser(BUNDLED / "landsat_ratio2_band_wise", unrolled="auto").fuse(pan, holed)


def test_fuse_refuses_a_backend_ddrf_run_refuses(tmp_path: Path) -> None:
    """backend="torch" (ddrf-profile's reference only) was taken, then failed with 'sampler_k1.safetensors:
    missing'; the list is ddrf-run's (`ddrf.runtime.backends.BACKENDS`)."""
    pan, ms = sample_arrays(32)
    for backend in ("torch", "onnx"):
        with pytest.raises(ValueError, match=f"backend must be one of ort-cpu, .*got '{backend}'"):
            ddrf.fuse(pan, ms, backend=backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        ddrf.fuse_scene(tmp_path / "scene", tmp_path / "out", backend="torch")


def test_fuse_serves_the_model_the_folder_holds_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loaded model was cached by the path string: a model re-exported into the same folder kept the old one
    serving, and a relative model="m" after os.chdir served the other folder's."""
    import shutil

    pan, ms = sample_arrays(32)
    expected = {name: ddrf.fuse(pan, ms, model=name, threads=1)
                for name in ("landsat_ratio2", "landsat_ratio2_band_wise")}
    for folder, name in (("x", "landsat_ratio2_band_wise"), ("y", "landsat_ratio2")):
        shutil.copytree(BUNDLED / name, tmp_path / folder / "m")
    for folder, name in (("x", "landsat_ratio2_band_wise"), ("y", "landsat_ratio2")):
        monkeypatch.chdir(tmp_path / folder)
        np.testing.assert_array_equal(ddrf.fuse(pan, ms, model="m", threads=1), expected[name])
    shutil.rmtree(tmp_path / "y" / "m")  # a re-export into the same folder
    shutil.copytree(BUNDLED / "landsat_ratio2_band_wise", tmp_path / "y" / "m")
    np.testing.assert_array_equal(ddrf.fuse(pan, ms, model="m", threads=1), expected["landsat_ratio2_band_wise"])


def test_fuse_scene_engines_follow_a_replaced_model_too(tmp_path: Path) -> None:
    """ddrf.fuse_scene's (and ddrf-run's) loaded models were cached by the path string as well."""
    import shutil

    from ddrf.scenes.engines import EngineSpec, get_engine

    shutil.copytree(BUNDLED / "landsat_ratio2_band_wise", tmp_path / "m")
    spec = EngineSpec(model=str(tmp_path / "m"))
    assert get_engine(spec).fuser is get_engine(spec).fuser  # loaded once while the folder holds the same model
    shutil.rmtree(tmp_path / "m")
    shutil.copytree(BUNDLED / "landsat_ratio2", tmp_path / "m")
    assert not get_engine(spec).fuser.card.band_wise


def sample_dataarrays(size: int = 32) -> tuple[Any, Any]:
    """PAN (band=1, y, x) and MS (band=4, y, x) crops of the sample scene as rioxarray opens them."""
    rioxarray = pytest.importorskip("rioxarray")
    import xarray as xr

    pan = rioxarray.open_rasterio(next(SAMPLE.glob("*_B8.TIF")))[:, :size, :size]
    ms = xr.concat([rioxarray.open_rasterio(next(SAMPLE.glob(f"*_B{b}.TIF")))[:, :size // 2, :size // 2]
                    for b in (2, 3, 4, 5)], dim="band")
    return pan, ms


def test_named_bands_choose_the_bundled_model_that_has_them() -> None:
    """MS bands coastal, green, red, nir were refused ('the model fuses blue, green, red, nir'): the default model was
    chosen by band count alone, while ddrf-run picks the bundled model whose bands the scene has."""
    pan, ms = sample_dataarrays()
    bands = ["coastal", "green", "red", "nir"]
    fused = ddrf.fuse(pan, ms.assign_coords(band=bands), threads=1)
    np.testing.assert_array_equal(fused.values, ddrf.fuse(pan, ms, model="landsat_ratio2_band_wise", threads=1).values)
    assert list(fused.band.values) == bands


def test_dataarrays_without_coordinates_are_fused_as_plain_arrays() -> None:
    """With rioxarray installed, coordinate-less DataArrays were refused: 'ms grid (1,0,0,0,1,0) is not the pan grid
    (1,0,0,0,1,0)', both identity transforms. They are fused as numpy arrays; coordinates on one of the two only are
    refused in a line that says so."""
    xr = pytest.importorskip("xarray")

    pan, ms = sample_arrays(32)
    pan_da, ms_da = xr.DataArray(pan[None], dims=("band", "y", "x")), xr.DataArray(np.moveaxis(ms, -1, 0),
                                                                                   dims=("band", "y", "x"))
    fused = ddrf.fuse(pan_da, ms_da, method="GSA")
    np.testing.assert_array_equal(np.moveaxis(fused.values, 0, -1), ddrf.fuse(pan, ms, method="GSA"))
    placed_pan = sample_dataarrays()[0]
    with pytest.raises(ValueError, match="pan has x/y coordinates, ms none"):
        ddrf.fuse(placed_pan, ms_da, method="GSA")


def test_dataarrays_with_pixels_at_their_declared_nodata_are_refused() -> None:
    """A PAN with rio.nodata 0 (or an MS with `_FillValue` / `nodatavals`) and a zeroed corner: the zeros were
    fused as data, made-up values pulling their neighbours, with no error. A declared value no pixel has fuses."""
    pan, ms = sample_dataarrays()
    holed = pan.copy()
    holed[:, :4, :4] = 0
    fused = ddrf.fuse(pan.rio.write_nodata(0), ms, method="GSA")  # declared, but no pixel has it
    np.testing.assert_array_equal(fused.values, ddrf.fuse(pan, ms, method="GSA").values)
    zeroed = ms.copy()
    zeroed[1, :2, :2] = 0
    for args, message in (((holed.rio.write_nodata(0), ms), "pan has 16 pixel"),
                          ((pan, zeroed.assign_attrs(_FillValue=0)), "ms has 4 pixel"),
                          ((pan, zeroed.assign_attrs(nodatavals=(0.0,) * 4)), "ms has 4 pixel")):
        with pytest.raises(ValueError, match=f"{message}\\(s\\) at its nodata value 0: fill them first"):
            ddrf.fuse(*args, method="GSA")


def test_fuse_scene_writes_nothing_into_its_scene_nor_leaves_an_empty_folder(tmp_path: Path) -> None:
    """fuse_scene("scn", "scn") wrote scn.tif, scn.json and scn.item.json into the scene folder (ddrf-run refuses
    it), and each failed call left behind the empty output folder it had made."""
    from stac_fixtures import small_scene

    scene = small_scene(tmp_path / "scn")
    before = sorted(p.name for p in scene.iterdir())
    for out in (scene, scene / "fused.tif", scene / "sub" / ".."):
        with pytest.raises(ValueError, match="the output directory is inside scene"):
            ddrf.fuse_scene(scene, out, method="GSA")
    assert sorted(p.name for p in scene.iterdir()) == before
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ddrf.fuse_scene(tmp_path / "empty", tmp_path / "out" / "deep", method="GSA")
    assert not (tmp_path / "out").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ddrf.fuse_scene(tmp_path / "empty", tmp_path / "kept", method="GSA")
    assert (tmp_path / "kept").is_dir()  # not made by the call: left as it was
