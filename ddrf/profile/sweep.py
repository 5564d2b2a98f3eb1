"""Runs sweep points and ddrf-run scene measurements, each in a fresh `python -m ddrf.profile.worker` process."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ddrf.profile.spec import PointSpec
from ddrf.runtime.backends import backend_info


def expand(target: str, backends: Sequence[str], precisions: Sequence[str] | None, tiles: Sequence[int],
           batches: Sequence[int], steps: Sequence[int | None], samplers: Sequence[str], **common: Any
           ) -> list[PointSpec]:
    """Every combination, steps varying fastest after the sampler (so a table reads as a steps curve).
    precisions None: each backend at the one it loads unless told (FP16 engines for tensorrt), as ddrf-run does."""
    return [PointSpec(target, backend=b, precision=p, tile=t, batch=n, steps=k, sampler=s, **common)
            for b in backends for p in (precisions or [backend_info(b).precision])
            for t, n, s, k in itertools.product(tiles, batches, samplers, steps)]


def worker_env() -> dict[str, str]:
    """The parent's environment, with this ddrf importable in the child whatever its working directory."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the ddrf package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _call_worker(mode: str, payload: str, timeout: float | None) -> tuple[dict[str, Any] | None, str]:
    """(the worker's JSON result or None, the tail of its stderr)."""
    with tempfile.TemporaryDirectory(prefix="ddrf-profile-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(payload)
        try:
            proc = subprocess.run([sys.executable, "-m", "ddrf.profile.worker", mode, str(spec_path), str(out_path)],
                                  capture_output=True, text=True, timeout=timeout, env=worker_env(), check=False)
            tail = proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else [f"exit code {proc.returncode}"]
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:g} s"
        if not out_path.is_file():
            return None, tail[0] if tail else "worker wrote no result"
        return json.loads(out_path.read_text()), tail[0] if proc.stderr.strip() else ""


def run_point(spec: PointSpec, timeout: float | None = None) -> dict[str, Any]:
    """The worker's result for one point; a crashed or hung worker is a "failed" row saying why."""
    result, why = _call_worker("point", spec.to_json(), timeout)
    return result if result is not None else {**spec.key(), "status": "failed", "reason": why}


def run_scene(scene: str | Path, args: Sequence[str], timeout: float | None = None,
              output: str | Path | None = None) -> dict[str, Any]:
    """`ddrf-run SCENE -o OUT ARGS...` timed in a fresh process (so its peak RSS is that run's alone)."""
    with tempfile.TemporaryDirectory(prefix="ddrf-profile-run-") as tmp:
        request = {"scene": str(Path(scene).absolute()), "output": str(output or Path(tmp) / "out"),
                   "args": list(args)}
        result, why = _call_worker("scene", json.dumps(request), timeout)
    if result is None:
        return {"scene": str(scene), "command": "ddrf-run " + " ".join(map(str, args)), "exit_code": None,
                "error": why}
    if result["exit_code"] != 0 and why:  # ddrf-run's own last line says why it refused (a ratio the model lacks...)
        result["error"] = " ".join(why.split())
    return result
