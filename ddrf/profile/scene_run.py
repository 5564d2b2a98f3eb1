"""Scene mode of the profiler: `ddrf-run SCENE -o OUT ...` in this process, its wall time, peak RSS and report."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ddrf.profile.stats import peak_rss_bytes


def measure_scene(request: dict[str, Any]) -> dict[str, Any]:
    """Wall time and peak RSS of `ddrf-run SCENE -o OUT ...` run in this process; the run report's timings."""
    from ddrf.scenes.command import app

    scene, out = Path(request["scene"]), Path(request["output"])
    args = [str(scene), "-o", str(out), "--no-progress", "--overwrite", *request.get("args", [])]
    start = time.perf_counter()
    try:
        app(args, prog_name="ddrf-run")
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    seconds = time.perf_counter() - start
    report_path = out / f"{scene.resolve().name}.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    height = width = None
    if report:
        height, width = report["scene"]["height"], report["scene"]["width"]
    megapixels = height * width / 1e6 if height and width else None
    return {"scene": str(scene), "command": "ddrf-run " + " ".join(args), "exit_code": code, "seconds": seconds,
            "height": height, "width": width, "megapixels": megapixels,
            "seconds_per_megapixel": seconds / megapixels if megapixels else None,
            "peak_rss_bytes": peak_rss_bytes(), "tiles": report["tiling"]["tiles"] if report else None,
            "timings_s": report["timings_s"] if report else None}
