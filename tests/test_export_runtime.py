"""Export -> ONNX -> torch-free runtime: the graphs match PyTorch, FP32 and FP16, split and unrolled."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")  # the train extra; the runtime-only install skips this module

from ddrf.card import ModelCard, Normalisation
from ddrf.export.onnx_export import export_model
from ddrf.model import DDRF, DDRFConfig
from ddrf.runtime.fuser import Fuser
from ddrf.model_dir import ModelDir
from ddrf.train.diffusion import Diffusion

STEPS = (1, 4, 8)  # stepwise through the denoiser graph
UNROLLED = (1, 4)  # unrolled graphs: one and several steps (an 8-step graph would double the export time)
RUNS = [(k, False) for k in STEPS] + [(k, True) for k in UNROLLED]


def tiny_model(bands: int = 4, seed: int = 0) -> DDRF:
    """A small DDRF with every weight randomised, including the zero-initialised modulation layers."""
    torch.manual_seed(seed)
    config = DDRFConfig(bands, 1, base_width=8, channel_mults=(1, 2), enc_blocks=1, dec_blocks=2, attn_levels=(1,),
                        heads=2, dropout=0.0, wave_heads=2, time_dim=32, norm_groups=4)
    model = DDRF(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def tiny_card(model: DDRF) -> ModelCard:
    return ModelCard(model=model.config.to_dict(), bands=["blue", "green", "red", "nir"], ratio=2,
                     sensor="Landsat8", normalisation=Normalisation(kind="bit_depth", bits=12), sampling_steps=4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[DDRF, Path]:
    model = tiny_model()
    out = tmp_path_factory.mktemp("model")
    export_model(model, tiny_card(model), out, unrolled_steps=UNROLLED, fp16=True)
    return model, out


def inputs(batch: int, size: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lms = rng.uniform(0.05, 0.6, (batch, 4, size, size)).astype(np.float32)
    pan = rng.uniform(0.05, 0.6, (batch, 1, size, size)).astype(np.float32)
    return lms, pan, rng.standard_normal((batch, 4, size, size)).astype(np.float32)


def torch_reference(model: DDRF, steps: int, lms: np.ndarray, pan: np.ndarray, noise: np.ndarray) -> np.ndarray:
    diffusion = Diffusion(target="x0", residual=True)
    out = diffusion.sample(model, torch.from_numpy(lms), torch.from_numpy(pan), steps, noise=torch.from_numpy(noise))
    return out.numpy()


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_export_writes_checked_graphs_with_card(exported: tuple[DDRF, Path]) -> None:
    _, out = exported
    card = json.loads((out / "card.json").read_text())
    for stem in ("encoder", "denoiser", "sampler_k4", "encoder_fp16", "denoiser_fp16"):
        graph = onnx.load(out / f"{stem}.onnx")
        onnx.checker.check_model(graph, full_check=True)
        assert graph.opset_import[0].version == 17
        meta = {p.key: p.value for p in graph.metadata_props}
        assert json.loads(meta["ddrf_card"])["bands"] == card["bands"]
        assert f"{stem}.onnx" in card["hashes"]
    names = [i.name for i in onnx.load(out / "denoiser.onnx").graph.input]
    assert names[:2] == ["x_t", "t"] and all(n.startswith("cond_") for n in names[2:])


def test_export_refuses_to_overwrite(exported: tuple[DDRF, Path]) -> None:
    model, out = exported
    before = (out / "card.json").read_bytes()
    with pytest.raises(FileExistsError):
        export_model(model, tiny_card(model), out, fp16=False)
    assert (out / "card.json").read_bytes() == before


@pytest.mark.parametrize("steps,unrolled", RUNS)
@pytest.mark.parametrize("batch,size", [(1, 32), (3, 48)])
def test_fp32_runtime_matches_pytorch(exported: tuple[DDRF, Path], steps: int, unrolled: bool, batch: int,
                                      size: int) -> None:
    model, out = exported
    lms, pan, noise = inputs(batch, size)
    want = torch_reference(model, steps, lms, pan, noise)
    got = Fuser(out, steps=steps, unrolled=unrolled).fuse_normalised(lms, pan, noise)
    assert got.shape == want.shape
    assert relative_error(got, want) < 1e-4


@pytest.mark.parametrize("steps,unrolled", RUNS)
def test_fp16_runtime_matches_pytorch(exported: tuple[DDRF, Path], steps: int, unrolled: bool) -> None:
    model, out = exported
    lms, pan, noise = inputs(2, 40)
    want = torch_reference(model, steps, lms, pan, noise)
    got = Fuser(out, steps=steps, unrolled=unrolled, precision="fp16").fuse_normalised(lms, pan, noise)
    assert relative_error(got, want) < 1e-2


def test_stepwise_and_unrolled_agree(exported: tuple[DDRF, Path]) -> None:
    _, out = exported
    lms, pan, noise = inputs(2, 32, seed=5)
    stepwise = Fuser(out, steps=4).fuse_normalised(lms, pan, noise)
    unrolled = Fuser(out, steps=4, unrolled=True).fuse_normalised(lms, pan, noise)
    assert relative_error(unrolled, stepwise) < 1e-4


def test_a_shifted_sampler_is_baked_into_the_graphs_and_run_by_the_runtime(tmp_path: Path) -> None:
    """A card whose schedule moves the steps (sampling_shift): the unrolled graph and the stepwise runtime sample on
    the shifted timesteps, as PyTorch does, and not on the trailing ones."""
    from ddrf.schedule import CosineSchedule

    model, card = tiny_model(), tiny_card(tiny_model())
    card.schedule = CosineSchedule(sampling_shift=-2.77).to_dict()
    export_model(model, card, tmp_path, unrolled_steps=(2,), fp16=False)
    lms, pan, noise = inputs(1, 32)
    shifted = Diffusion(CosineSchedule(sampling_shift=-2.77), target="x0", residual=True).sample(
        model, torch.from_numpy(lms), torch.from_numpy(pan), 2, noise=torch.from_numpy(noise)).numpy()
    for unrolled in (True, False):
        got = Fuser(tmp_path, steps=2, unrolled=unrolled).fuse_normalised(lms, pan, noise)
        assert relative_error(got, shifted) < 1e-4
        assert relative_error(got, torch_reference(model, 2, lms, pan, noise)) > 1e-3  # the trailing steps differ


def test_fuse_on_digital_numbers(exported: tuple[DDRF, Path]) -> None:
    _, out = exported
    rng = np.random.default_rng(3)
    ms = rng.uniform(500, 3000, (20, 22, 4))
    pan = rng.uniform(500, 3000, (40, 44))  # 44 is not a multiple of the tile multiple: padded inside
    fused = Fuser(out, steps=2).fuse(pan, ms, seed=7)
    assert fused.shape == (40, 44, 4) and np.isfinite(fused).all()
    again = Fuser(out, steps=2).fuse(pan, ms, seed=7)
    assert np.array_equal(fused, again)  # deterministic noise from the seed
    with pytest.raises(ValueError, match="4 MS bands"):
        Fuser(out).fuse(pan, ms[..., :3])
    with pytest.raises(ValueError, match="ratio"):
        Fuser(out).fuse(pan[:30], ms)


def test_model_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="card.json"):
        ModelDir.open(tmp_path)
    with pytest.raises(ValueError, match="not a model directory"):
        ModelDir.open(tmp_path / "missing")


def test_runtime_runs_with_torch_absent(exported: tuple[DDRF, Path]) -> None:
    """Block `import torch` outright in a fresh interpreter: the runtime must still import and fuse."""
    _, out = exported
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        from ddrf.runtime.fuser import Fuser
        fused = Fuser({str(out)!r}, steps=2).fuse(np.full((32, 32), 900.0), np.full((16, 16, 4), 800.0))
        assert fused.shape == (32, 32, 4) and np.isfinite(fused).all()
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _tensorrt_and_gpu() -> bool:
    from ddrf.engines.probe import cuda_device_count, tensorrt_version

    return tensorrt_version() is not None and cuda_device_count() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not _tensorrt_and_gpu(), reason="needs a CUDA GPU and TensorRT")
@pytest.mark.parametrize("steps", [1, 4])
def test_tensorrt_fp16_engines_match_onnxruntime(exported: tuple[DDRF, Path], tmp_path: Path, steps: int) -> None:
    """FP16 engines built from the exported DDRF graphs, run natively, against ONNX Runtime FP32 on the CPU."""
    import shutil

    from ddrf.engines.build import build_model_engines

    _, out = exported
    model_dir = tmp_path / "model"
    shutil.copytree(out, model_dir)
    build_model_engines(model_dir, tile=32, max_tile=64, batch=1, max_batch=3, timing_cache=tmp_path / "t.cache")
    lms, pan, noise = inputs(3, 48)
    want = Fuser(model_dir, steps=steps).fuse_normalised(lms, pan, noise)
    got = Fuser(model_dir, backend="tensorrt", precision="fp16", steps=steps).fuse_normalised(lms, pan, noise)
    assert relative_error(got, want) < 1e-2
