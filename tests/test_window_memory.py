"""benchmarks/window_memory.py: per-window memory of the bundled default, computed from its graphs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("onnx")  # the export extra

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("window_memory", ROOT / "benchmarks" / "window_memory.py")
assert SPEC and SPEC.loader
window_memory = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(window_memory)
MIB = 2**20


def test_the_scene_statistics_default_is_measured_through_its_sampler_and_scene_pass() -> None:
    model = ROOT / "ddrf" / "assets" / "models" / "landsat_ratio2"  # scene_k1 + sampler_k1, no encoder graph
    small, large = (window_memory.window_memory(model, tile, 1) for tile in (384, 768))
    for m, tile in ((small, 384), (large, 768)):
        assert m["host_to_device_mib"] == pytest.approx((4 + 1 + 4) * tile * tile * 4 / MIB)  # lms, pan, noise
        kept = tile - 2 * 72  # the card's output margin: the sampler returns the window without it
        assert m["device_to_host_mib"] == pytest.approx(4 * kept * kept * 4 / MIB)
        assert 0 < m["cond_mib"] < 8  # the scene recording: per-channel statistics and the context tokens
    assert small["cond_mib"] == large["cond_mib"]  # one recording per scene, whatever the window
    # activations grow with the window's area, and faster: the fixed margin the decoder skips is more of a small one
    assert 3.5 < large["live_peak_mib"] / small["live_peak_mib"] < 8
