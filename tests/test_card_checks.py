"""A model directory's card.json, edited by hand: a mistyped field, or one that contradicts the graphs, is one line
naming card.json and the field, before any scene (docs/RELIABILITY.md)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ddrf.card import read_card
from ddrf.model_dir import CARD_NAME

MODELS = Path(__file__).parents[1] / "ddrf" / "assets" / "models"
SCENE_MODEL = MODELS / "landsat_ratio2"  # scene statistics: the scene pass and the 1-step sampler
SAMPLE = Path(__file__).parents[1] / "ddrf" / "assets" / "sample_scene" / "LC80200392015216LGN00"


def edited_copy(tmp_path: Path, source: Path = SCENE_MODEL, **changes: Any) -> Path:
    """A copy of a bundled model whose card.json has `changes` (the graphs and their hashes intact)."""
    model = tmp_path / "md"
    shutil.copytree(source, model, ignore=shutil.ignore_patterns("*.safetensors"))
    card = json.loads((model / CARD_NAME).read_text())
    for key, value in changes.items():
        if "__" in key:  # schedule__kind: a field of a nested object
            outer, inner = key.split("__")
            card[outer] = {**card[outer], inner: value}
        else:
            card[key] = value
    (model / CARD_NAME).write_text(json.dumps(card))
    return model


MISTYPED = {
    "model_not_an_object": ({"model": "v1"}, "model"),
    "margin_a_float": ({"output_margin": 72.0}, "output_margin"),
    "fractional_ratio": ({"ratio": 2.5}, "ratio"),
    "steps_a_float": ({"sampling_steps": 1.0}, "sampling_steps"),
    "halo_a_bool": ({"halo": True}, "halo"),
    "bands_a_string": ({"bands": "bgrn"}, "bands"),
    "bands_twice": ({"bands": ["red", "red", "green", "nir"]}, "bands"),
    "percentile_a_string": ({"normalisation__low": "1"}, "normalisation.low"),
    "linear_schedule": ({"schedule__kind": "linear"}, "schedule.kind"),
    "no_timesteps": ({"schedule__num_timesteps": 0}, "schedule.num_timesteps"),
    "shift_a_string": ({"schedule__sampling_shift": "-2.77"}, "schedule.sampling_shift"),
}


@pytest.mark.parametrize("changes, field", MISTYPED.values(), ids=MISTYPED.keys())
def test_a_mistyped_card_field_is_named(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    model = edited_copy(tmp_path, **changes)
    with pytest.raises(ValueError) as exc:
        read_card(model / CARD_NAME)
    text = str(exc.value)
    assert "\n" not in text and str(model / CARD_NAME) in text and f"({field} must" in text


def test_ddrf_run_profile_and_fuse_scene_name_a_card_whose_model_is_no_object(tmp_path: Path) -> None:
    """Before: an AttributeError traceback in ModelCard.size_multiple."""
    import ddrf
    from ddrf.profile.command import app as profile
    from ddrf.scenes.command import app as run

    model = edited_copy(tmp_path, model="v1")
    run_args = [str(SAMPLE), "-o", str(tmp_path / "out"), "--model", str(model), "--no-progress"]
    for app, args, code in ((run, run_args, 2),
                            (profile, [str(model), "--backend", "ort-cpu", "--tile", "256"], 1)):
        result = CliRunner().invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == code and len(lines) == 1, result.output
        assert f"{model / CARD_NAME}: not a valid model card (model must" in lines[0]
    with pytest.raises(ValueError, match="model must be of type dict"):
        ddrf.fuse_scene(SAMPLE, tmp_path / "api.tif", model=model)
    assert not list(tmp_path.glob("*.tif")) and not (tmp_path / "out").exists()


CONTRADICTING = {  # each ran before, exit 0, with wrong pixels
    "margin_wider_than_the_graph_crops": ({"output_margin": 400}, "output_margin is 400, but sampler_k1.onnx was "
                                          "exported with 72"),
    "bands_reordered": ({"bands": ["nir", "red", "green", "blue"]}, 'bands is ["nir", "red", "green", "blue"], but '
                        'sampler_k1.onnx was exported with ["blue", "green", "red", "nir"]'),
    "ratio_of_another_model": ({"ratio": 4}, "ratio is 4, but sampler_k1.onnx was exported with 2"),
    "bit_depth_for_scene_statistics": ({"normalisation": {"kind": "bit_depth", "bits": 12}}, "normalisation is"),
}


@pytest.mark.parametrize("changes, said", CONTRADICTING.values(), ids=CONTRADICTING.keys())
def test_a_card_that_contradicts_the_graphs_own_card_is_refused(tmp_path: Path, changes: dict[str, Any],
                                                                said: str) -> None:
    from ddrf.model_dir import ModelDirError
    from ddrf.runtime.fuser import Fuser

    model = edited_copy(tmp_path, **changes)
    with pytest.raises(ModelDirError) as exc:
        Fuser(model)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{model / CARD_NAME}: {said}")


def test_ddrf_run_refuses_a_card_that_contradicts_the_graphs_before_any_scene(tmp_path: Path) -> None:
    from ddrf.scenes.command import app

    model = edited_copy(tmp_path, output_margin=400)
    result = CliRunner().invoke(app, [str(SAMPLE), "-o", str(tmp_path / "out"), "--model", str(model),
                                      "--no-progress"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert f"{model / CARD_NAME}: output_margin is 400" in lines[0]
    assert not list((tmp_path / "out").glob("*.tif"))


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.iterdir() if (p / CARD_NAME).is_file()))
def test_every_bundled_model_agrees_with_its_graphs_and_a_spread_fit_is_no_contradiction(tmp_path: Path,
                                                                                        name: str) -> None:
    """The spread calibration is written into card.json after the export (ddrf-eval --fit-spread): the graphs' cards
    lack it, and so do the cards of graphs exported before a field existed (landsat_ratio4_band_wise: no halo)."""
    from ddrf.runtime.fuser import Fuser

    for unrolled in (False, True):
        Fuser(MODELS / name, unrolled=unrolled)
    Fuser(edited_copy(tmp_path, MODELS / name, spread_calibration=3.0, spread_calibration_samples=5))
