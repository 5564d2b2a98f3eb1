"""A staged model through ddrf-run's windows (ddrf.scenes.staged): stages 1 and 2 over the scene once, stage 3 in
windows with a short halo; the output does not depend on the tile and is the unstaged sampler's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ddrf.export.onnx_export import export_model  # noqa: E402
from ddrf.runtime.fuser import Fuser  # noqa: E402
from ddrf.scenes.arrays import fuse_arrays, tile_differences  # noqa: E402
from ddrf.scenes.engines import ModelEngine  # noqa: E402
from ddrf.scenes.staged import DeepMap, SceneMap  # noqa: E402
from test_scene_statistics import BOUND, card_of, textured_scene, v1_model  # noqa: E402

STAGED = {"split": 2, "encoder_halo": 16, "deep_halo": 16, "decoder_halo": 16}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random v1 model with scene statistics (halo 48: the whole network's reach), exported with staged graphs."""
    model, out = v1_model(), tmp_path_factory.mktemp("staged") / "model"
    card = card_of(model, True, halo=48)
    card.staged = dict(STAGED)
    export_model(model, card, out, unrolled_steps=(1,), fp16=False)
    return out


def test_windows_below_the_default_run_staged_with_stage_three_halo(exported: Path) -> None:
    fuser = Fuser(exported, threads=1)
    default, small, large = (ModelEngine(fuser, tile=tile) for tile in (None, 128, 1024))
    assert default.default_tile == 384  # seven halos of 48, rounded up to 64
    assert (default.staged, small.staged, large.staged) == (False, True, False)
    assert (default.halo, small.halo, large.halo) == (48, STAGED["decoder_halo"], 48)
    assert not ModelEngine(fuser, tile=128, first_view=0).staged  # each view would need its own maps
    assert small.summary()["staged"] == STAGED and default.summary()["staged"] is None


def test_staged_output_does_not_depend_on_the_tile_and_is_one_windows(exported: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged tiles down to 64 px (four times a 16 px halo; the sampler needs four of its 48 px halos) against the
    sampler's one window over the scene; the last run also in small stage 1 and 2 windows."""
    fuser, scene = Fuser(exported, threads=1), textured_scene(2, 256)
    whole = fuse_arrays(ModelEngine(fuser), scene, 1024)
    for tile, batch, stage_window in ((64, 1, 512), (128, 3, 64)):
        monkeypatch.setattr("ddrf.scenes.staged.STAGE_WINDOW", stage_window)
        monkeypatch.setattr("ddrf.scenes.staged.DEEP_WINDOW", stage_window // 4)
        engine = ModelEngine(fuser, tile=tile)
        assert engine.staged
        figures = tile_differences({tile: fuse_arrays(engine, scene, tile, batch=batch)}, whole)[tile]
        assert figures["p99"] <= BOUND["p99"] and figures["max"] <= BOUND["max"], (tile, batch, figures)


def test_the_staged_graphs_open_only_for_a_run_that_uses_them(exported: Path) -> None:
    """A run at the default window never opens the three staged graphs (start-up and memory); a staged run does."""
    fuser, scene = Fuser(exported, threads=1), textured_scene(1, 128)
    fuse_arrays(ModelEngine(fuser), scene, 1024)
    assert fuser.staged and "staged_graphs" not in vars(fuser)
    fuse_arrays(ModelEngine(fuser, tile=64), scene, 64)
    assert [graph.input_names[0] for graph in vars(fuser)["staged_graphs"]] == ["lms", "entry", "lms"]


@pytest.mark.parametrize("in_memory", [True, False])
def test_scene_maps_in_memory_and_on_disk_read_back_what_was_written(in_memory: bool) -> None:
    values = np.random.default_rng(0).standard_normal((3, 12, 10)).astype(np.float32)
    stored = SceneMap(3, 12, 10, in_memory)
    stored.write(slice(0, 12), slice(0, 6), values[:, :, :6])
    stored.write(slice(0, 12), slice(6, 10), values[:, :, 6:])
    assert np.array_equal(stored.read(slice(2, 9), slice(3, 10)), values[:, 2:9, 3:10])
    deep = DeepMap(stored, top=-8, left=-8, scale=4)
    assert np.array_equal(deep.under([(-8, -8), (16, 4)], 16, 8), np.stack([values[:, :4, :2], values[:, 6:10, 3:5]]))
    for origin in ((-12, 0), (28, 0), (0, 28)):
        with pytest.raises(ValueError, match="outside the deep map"):
            deep.under([origin], 16, 16)
    stored.close()



def test_maps_in_a_temporary_file_give_the_same_output(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scene whose maps exceed MAP_MEMORY keeps them on disk; two samples, so two members' maps."""
    fuser, scene = Fuser(exported, threads=1), textured_scene(3, 128)
    in_memory = fuse_arrays(ModelEngine(fuser, samples=2, tile=64), scene, 64)
    monkeypatch.setattr("ddrf.scenes.staged.MAP_MEMORY", 0)
    on_disk = fuse_arrays(ModelEngine(fuser, samples=2, tile=64), scene, 64)
    assert np.array_equal(in_memory, on_disk)


def test_a_temporary_folder_without_room_for_the_maps_is_refused_before_stage_one(
        exported: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import shutil

    monkeypatch.setattr("ddrf.scenes.staged.MAP_MEMORY", 0)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage._replace(free=1000))
    engine, scene = ModelEngine(Fuser(exported, threads=1), tile=64), textured_scene(3, 128)
    with pytest.raises(ValueError, match=rf"scene maps in {tmp_path} \(TMPDIR\), which has 0.0 GB free") as refused:
        fuse_arrays(engine, scene, 64)
    assert "\n" not in str(refused.value) and not list(tmp_path.iterdir())
