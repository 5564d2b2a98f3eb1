"""Write the committed tiny exported model of the scene-run tests (tests/data/tiny_model/model).

    python tests/data/tiny_model/make_tiny_model.py        # needs the train extra (torch); about 10 s on a CPU

A random-weight DDRF (seed 0, see tests/scenes_fixtures.export_tiny_model) exported to FP32 ONNX (encoder, step
denoiser, card): what `ddrf-export onnx` writes for a checkpoint, here for an untrained network. Committed so that the
runtime-only install (no torch) runs its scene tests for real; tests/test_scene_run.py checks, where torch is
installed, that a fresh export still fuses like the committed one.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for scenes_fixtures

from scenes_fixtures import export_tiny_model  # noqa: E402

if __name__ == "__main__":
    out = HERE / "model"
    shutil.rmtree(out, ignore_errors=True)
    export_tiny_model(out)
    print(f"wrote {out}: " + ", ".join(f"{p.name} {p.stat().st_size // 1024} KB" for p in sorted(out.iterdir())))
