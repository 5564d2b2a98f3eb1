"""The geometric self-ensemble (ddrf-run --ensemble N, ddrf-eval --views): each member fuses a turned or flipped
view of every window with its own seed, back on the scene's grid; the output is their mean and, like one view,
does not depend on the tile."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from ddrf.runtime.views import VIEWS, from_view, to_view
from ddrf.scenes.arrays import ArrayScene, fuse_arrays, tile_differences
from ddrf.scenes.engines import ModelEngine
from scenes_fixtures import SAMPLE


def test_views_are_the_eight_distinct_symmetries_and_each_undoes() -> None:
    array = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    seen = set()
    for view in range(len(VIEWS)):
        turned = to_view(array, view)
        assert turned.shape == ((2, 3, 7, 5) if VIEWS[view][0] % 2 else array.shape)
        assert np.array_equal(from_view(turned, view), array)
        seen.add(turned.tobytes() + bytes(turned.shape))
    assert len(seen) == 8
    assert np.array_equal(to_view(array, 0), array)
    assert np.array_equal(to_view(array, 1), array[..., ::-1, :])  # the second view: upside down


@pytest.fixture(scope="module")
def sample_arrays() -> tuple[ArrayScene, object]:
    from ddrf.bundled import choose_model
    from ddrf.runtime.fuser import Fuser

    stem = SAMPLE / SAMPLE.name
    pan = rasterio.open(f"{stem}_B8.TIF").read(1)
    ms = np.stack([rasterio.open(f"{stem}_B{b}.TIF").read(1) for b in (2, 3, 4, 5)], -1)
    model = choose_model("sample scene", 2, ["blue", "green", "red", "nir"], 4).path
    return ArrayScene(pan, ms, 2, "sample"), Fuser(model, unrolled="auto", threads=1)


def test_the_ensemble_is_the_mean_of_its_members_each_fused_alone(sample_arrays: tuple[ArrayScene, object]) -> None:
    scene, fuser = sample_arrays
    ensemble = fuse_arrays(ModelEngine(fuser, seed=5, samples=2, first_view=0), scene, 704)
    alone = [fuse_arrays(ModelEngine(fuser, seed=5 + j, first_view=j), scene, 704) for j in (0, 1)]
    assert np.abs(ensemble - np.mean(alone, axis=0)).max() <= 0.01  # DN
    assert np.abs(alone[0] - alone[1]).mean() > 10.0  # the two views do differ
    plain = fuse_arrays(ModelEngine(fuser, seed=5), scene, 704)
    assert np.array_equal(plain, alone[0])  # view 0 is the window as it is
    import ddrf

    through_api = ddrf.fuse(scene.pan, scene.ms, fuser.files.root, seed=5, ensemble=2)  # its default window, 704
    assert np.abs(through_api - ensemble).max() <= 0.01
    with pytest.raises(ValueError, match="at least 2 views"):
        ddrf.fuse(scene.pan, scene.ms, ensemble=1)


def test_the_ensemble_does_not_depend_on_the_tile(sample_arrays: tuple[ArrayScene, object]) -> None:
    scene, fuser = sample_arrays
    whole = fuse_arrays(ModelEngine(fuser, samples=2, first_view=0), scene, 1024)  # one window
    tiled = fuse_arrays(ModelEngine(fuser, samples=2, first_view=0), scene, 384)
    figures = tile_differences({384: tiled}, whole)[384]
    assert figures["p99"] <= 0.005 and figures["max"] <= 0.02, figures


@pytest.mark.parametrize("args, message", [
    (["--ensemble", "1"], "--ensemble needs at least 2 views"),
    (["--ensemble", "4", "--uncertainty", "8"], "so give both the same N (--ensemble 4 --uncertainty 4)"),
    (["--ensemble", "4", "--method", "GSA"], "--ensemble applies to the diffusion model"),
    (["--ensemble", "9"], "--ensemble takes at most 8 views"),  # view 8 was view 0 again, counted twice
    (["--method", "GSA", "--model", "landsat_ratio4"], "--model applies to the diffusion model"),  # were ignored
    (["--method", "GSA", "--steps", "3"], "--steps applies to the diffusion model"),
    (["--method", "GSA", "--backend", "tensorrt"], "--backend applies to the diffusion model"),
])
def test_ensemble_usage_errors(args: list[str], message: str, tmp_path: object) -> None:
    from ddrf.scenes.command import app

    result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path), "--no-progress", *args])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


def test_eval_views_need_the_tiled_path() -> None:
    from ddrf.evaluate.methods import Tiling

    with pytest.raises(ValueError, match="--views"):
        Tiling(whole_image=True, views=True)
