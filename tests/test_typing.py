"""mypy over the engines and the runtime, with TensorRT's type stubs (tensorrt-stubs) really in use.

tensorrt-stubs 10.13 has no py.typed marker and two syntax errors (a parameter named `in`; a required parameter after
defaulted ones), so mypy would silently treat TensorRT as untyped. The test copies the stubs, mends those two lines
and points mypy at the copy, so calls into TensorRT are checked against its documented signatures.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["ddrf/engines", "ddrf/runtime"]


def _stub_dirs() -> list[Path]:
    found = []
    for name in ("tensorrt", "tensorrt_bindings"):
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec else []
        found += [Path(p) for p in locations if any(Path(p).glob("*.pyi"))]
    return found


def _mend(stub: Path) -> None:
    text = re.sub(r"\bin: list\[", "in_: list[", stub.read_text())
    # a required parameter after defaulted ones (add_scale_nd's channel_axis): give it a default
    text = re.sub(r"(=[^()\n]*, channel_axis: int)\)", r"\1 = ...)", text)
    stub.write_text(text)


def test_engines_and_runtime_type_check_against_tensorrt_stubs(tmp_path: Path) -> None:
    stubs = _stub_dirs()
    if not stubs:
        pytest.skip("tensorrt-stubs not installed (pip install --no-deps tensorrt-stubs)")
    for directory in stubs:
        copy = tmp_path / directory.name
        shutil.copytree(directory, copy)
        for stub in copy.rglob("*.pyi"):
            _mend(stub)
    env = dict(os.environ, MYPYPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                             *CHECKED], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
