"""The staged graphs (ddrf.model.staged as ONNX): one sampler step of a v1 network with scene statistics in three
graphs, staged_entry_k1 -> staged_deep_k1 -> staged_decoder_k1, that together compute what sampler_k1 does."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnxruntime as ort  # noqa: E402

from ddrf.card import STAGED_DEFAULTS, ModelCard, Normalisation  # noqa: E402
from ddrf.engines.onnx_ops import check_tensorrt_ops  # noqa: E402
from ddrf.export.onnx_export import export_model, output_margin  # noqa: E402
from ddrf.model import DDRF, DDRFConfig  # noqa: E402
from ddrf.model.staged import staged_replay  # noqa: E402
from ddrf.train.tiled import staged_prediction  # noqa: E402
from ddrf.model_dir import GRAPH_IO, MissingGraph, ModelDir, graph_stem, is_graph_name  # noqa: E402
from ddrf.sampling import sample  # noqa: E402
from ddrf.schedule import CosineSchedule, make_plan  # noqa: E402
from ddrf.train.tiled import random_model  # noqa: E402

MODELS = Path(__file__).parents[1] / "ddrf" / "assets" / "models"
STAGED = ("staged_entry", "staged_deep", "staged_decoder")


def v1_model() -> DDRF:
    """A random three-level v1 network with middle self-attention (every kind of replayed statistic)."""
    config = DDRFConfig(4, 1, base_width=8, channel_mults=(1, 2, 2), enc_blocks=1, dec_blocks=2, attn_levels=(),
                        heads=2, dropout=0.0, wave_heads=2, time_dim=32, norm_groups=4)
    return random_model(config, seed=5)


def staged_card(model: DDRF, **changes: object) -> ModelCard:
    card = ModelCard(model=model.config.to_dict(), bands=["blue", "green", "red", "nir"], ratio=2,
                     normalisation=Normalisation(kind="bit_depth", bits=12), sampling_steps=1, scene_statistics=True,
                     halo=16, staged=dict(STAGED_DEFAULTS))
    for name, value in changes.items():
        setattr(card, name, value)
    card.output_margin = output_margin(card)  # as ddrf-export sets it: sampler_k1 leaves out its border
    return card


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[DDRF, Path]:
    model = v1_model()
    out = tmp_path_factory.mktemp("staged_model")
    export_model(model, staged_card(model), out, unrolled_steps=(1,), fp16=True)
    return model, out


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(path: Path, **inputs: np.ndarray) -> list[np.ndarray]:
    return session(path).run(None, inputs)  # type: ignore[no-any-return]


def inputs(seed: int, batch: int, side: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"lms": rng.uniform(0.05, 0.6, (batch, 4, side, side)).astype(np.float32),
            "pan": rng.uniform(0.05, 0.6, (batch, 1, side, side)).astype(np.float32),
            "noise": rng.standard_normal((batch, 4, side, side)).astype(np.float32)}


def staged_fused(out: Path, window: dict[str, np.ndarray], scene: dict[str, np.ndarray],
                 tail: str = "") -> np.ndarray:
    """The three graphs over one window: entry over the whole window, deep over the whole map, then the decoder."""
    def path(stage: str) -> Path:
        return out / f"{graph_stem(stage, steps=1)}{tail}.onnx"

    entry, pooled = run(path("staged_entry"), **window, **scene)
    (deep,) = run(path("staged_deep"), entry=entry, pooled=pooled, **scene)
    (fused,) = run(path("staged_decoder"), **window, deep=deep, **scene)
    return fused


def test_staged_graphs_compute_what_the_one_step_sampler_does(exported: tuple[DDRF, Path]) -> None:
    """Over a window and context of sizes other than the traced ones: the staged graphs equal sampler_k1 (on its
    uncropped interior) and torch's staged_prediction under the same sampler arithmetic."""
    model, out = exported
    card = ModelDir.open(out).card
    context, window = inputs(1, 2, 40), inputs(2, 1, 48)
    stats, tokens = run(out / "scene_k1.onnx", **context)
    scene = {"scene_stats": stats, "scene_tokens": tokens}
    fused = staged_fused(out, window, scene)
    assert fused.shape == window["lms"].shape
    (sampler,) = run(out / "sampler_k1.onnx", **window, **scene)
    margin = card.output_margin
    assert margin > 0 and sampler.shape[-1] == 48 - 2 * margin
    inner = fused[..., margin:-margin, margin:-margin]
    assert float(np.abs(inner - sampler).max()) < 1e-4
    assert float(np.abs(fused - window["lms"]).max()) > 1e-2  # random weights: the network's part is not nil

    plan = make_plan(CosineSchedule.from_dict(card.schedule), 1)
    lms, pan, noise = (torch.from_numpy(window[k]) for k in ("lms", "pan", "noise"))
    with torch.no_grad(), staged_replay(model, torch.from_numpy(stats), torch.from_numpy(tokens)):
        want = sample(model.encode, lambda x, t, cond: staged_prediction(model, lms, pan, x, t, tile=48), plan,
                      card.target, lms, pan, noise, card.residual, residual_scale=card.residual_scale)
    assert float(np.abs(fused - want.numpy()).max()) < 1e-4


def test_staged_graphs_take_a_batch_and_their_tensor_names_are_the_layout(exported: tuple[DDRF, Path]) -> None:
    _, out = exported
    files = ModelDir.open(out)
    for stage in STAGED:
        path = files.graph(stage, steps=1)  # hashed on the card
        opened = session(path)
        names_in, names_out = [i.name for i in opened.get_inputs()], [o.name for o in opened.get_outputs()]
        files.check_io(stage, path, names_in, names_out)
        assert (sorted(names_in), sorted(names_out)) == tuple(sorted(names) for names in GRAPH_IO[stage])
        files.check_card(path, opened.get_modelmeta().custom_metadata_map)
        assert check_tensorrt_ops(path) == [], stage
        assert is_graph_name(path.name)  # an overwriting export removes it where it writes none
    with pytest.raises(MissingGraph, match=r"staged_deep_k2.onnx: missing.*--staged"):
        files.graph("staged_deep", steps=2)
    context, windows = inputs(3, 1, 32), inputs(4, 2, 32)
    scene = dict(zip(("scene_stats", "scene_tokens"), run(out / "scene_k1.onnx", **context)))
    both = staged_fused(out, windows, scene)
    for b in range(2):
        one = staged_fused(out, {k: v[b:b + 1] for k, v in windows.items()}, scene)
        assert float(np.abs(both[b:b + 1] - one).max()) < 1e-5


def test_fp16_staged_graphs_load_and_agree(exported: tuple[DDRF, Path]) -> None:
    _, out = exported
    context, window = inputs(5, 1, 32), inputs(6, 1, 32)
    scene = dict(zip(("scene_stats", "scene_tokens"), run(out / "scene_k1.onnx", **context)))
    full, half = staged_fused(out, window, scene), staged_fused(out, window, scene, "_fp16")
    assert float(np.abs(full - half).max() / np.abs(full).max()) < 2e-2
    assert ModelDir.open(out).graph("staged_deep", "fp16", 1).is_file()


def test_staged_card_round_trips_and_old_cards_read_unstaged() -> None:
    model = v1_model()
    card = staged_card(model, staged={**STAGED_DEFAULTS, "split": 1})
    assert ModelCard.from_json(card.to_json()).staged == {**STAGED_DEFAULTS, "split": 1}
    old = card.to_dict()
    del old["staged"]
    assert ModelCard.from_dict(old).staged == {}
    for wrong, said in (({"scene_statistics": False}, "scene_statistics"),
                        ({"staged": {**STAGED_DEFAULTS, "split": 3}}, "split"),
                        ({"staged": {**STAGED_DEFAULTS, "encoder_halo": 6}}, "multiples of 4"),
                        ({"staged": {**STAGED_DEFAULTS, "deep_halo": 31}}, "deep_halo even"),
                        ({"staged": {"split": 2}}, "integers split")):
        with pytest.raises(ValueError, match=said) as refused:
            ModelCard.from_dict({**card.to_dict(), **wrong})
        assert "\n" not in str(refused.value)


def test_staged_export_needs_the_one_step_sampler(tmp_path: Path) -> None:
    model = v1_model()
    with pytest.raises(ValueError, match=r"one sampler step.*--unrolled 2,1"):
        export_model(model, staged_card(model, sampling_steps=2), tmp_path / "m", unrolled_steps=(2,))
    assert not (tmp_path / "m").exists()


def test_ddrf_export_staged_is_refused_off_v1_scene_statistics(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ddrf.export.command import app

    runner = CliRunner()
    for name, options, said in (("landsat_ratio4", ["--unrolled", "1"], "v1 networks"),
                                ("landsat_ratio2", ["--steps", "2", "--unrolled", "2"], "one sampler step")):
        weights = MODELS / name / "model.safetensors"
        assert weights.is_file()
        result = runner.invoke(app, ["onnx", str(weights), "-o", str(tmp_path / name), "--no-fp16", "--staged",
                                     *options])
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert said in result.output and not (tmp_path / name).exists()
