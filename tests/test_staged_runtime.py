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
from ddrf.scenes.staged import DeepMap  # noqa: E402
from test_scene_statistics import BOUND, card_of, textured_scene, v1_model  # noqa: E402

STAGED = {"split": 2, "encoder_halo": 16, "deep_halo": 16, "decoder_halo": 16}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same weights exported staged and unstaged (halo 48: the whole network's reach)."""
    model, root = v1_model(), tmp_path_factory.mktemp("staged")
    card = card_of(model, True, halo=48)
    export_model(model, card, root / "plain", unrolled_steps=(1,), fp16=False)
    card.staged = dict(STAGED)
    export_model(model, card, root / "staged", unrolled_steps=(1,), fp16=False)
    return root / "plain", root / "staged"


def test_staged_windows_need_only_stage_three_halo(exports: tuple[Path, Path]) -> None:
    plain, staged = (ModelEngine(Fuser(path, threads=1)) for path in exports)
    assert staged.staged and not plain.staged
    assert (plain.halo, staged.halo) == (48, STAGED["decoder_halo"])


def test_staged_output_does_not_depend_on_the_tile_and_is_the_samplers(exports: tuple[Path, Path],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles down to 48 px (three times a 16 px halo; the unstaged model cannot run below four of its 48 px halos)
    against one window over the scene, and against the unstaged sampler's single window; the last run also in
    small stage 1 and 2 windows."""
    plain, staged = (ModelEngine(Fuser(path, threads=1)) for path in exports)
    scene = textured_scene(2, 256)
    whole = fuse_arrays(staged, scene, 1024)
    reference = fuse_arrays(plain, scene, 1024)
    figures = tile_differences({0: whole}, reference)[0]
    assert figures["p99"] <= BOUND["p99"] and figures["max"] <= BOUND["max"], figures
    for tile, batch, stage_window in ((48, 1, 512), (128, 3, 64)):
        monkeypatch.setattr("ddrf.scenes.staged.STAGE_WINDOW", stage_window)
        figures = tile_differences({tile: fuse_arrays(staged, scene, tile, batch=batch)}, whole)[tile]
        assert figures["p99"] <= BOUND["p99"] and figures["max"] <= BOUND["max"], (tile, batch, figures)


def test_the_deep_map_refuses_a_window_outside_it() -> None:
    deep = DeepMap(np.zeros((2, 10, 10), np.float32), top=-8, left=-8, scale=4)
    assert deep.under([(-8, -8), (24, 24)], 16, 8).shape == (2, 2, 4, 2)
    with pytest.raises(ValueError, match="outside the deep map"):
        deep.under([(-12, 0)], 16, 16)
    with pytest.raises(ValueError, match="outside the deep map"):
        deep.under([(24, 0)], 16, 16)
