"""Printed table, CSV (one row per image, protocol and method) and JSON (settings, summary, per-image rows)."""
from __future__ import annotations

import csv
import io
import json
import math
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ddrf.files import write_text_atomic
from ddrf.evaluate.datasets import REDUCED
from ddrf.evaluate.runner import BLOCK, METRICS

# Versions via package metadata: reading them never imports the package (no torch import for classical runs).
PACKAGES = ("ddrf-edge", "numpy", "scipy", "h5py", "rasterio", "matplotlib", "onnxruntime", "torch")
# Digits per metric in the printed table.
DIGITS = {"SAM": 3, "ERGAS": 3, "PSNR": 2, "seconds": 2}


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def protocol_header(protocol: str, settings: dict[str, Any], n_images: int) -> str:
    data = settings["data"]
    mtf = f"MTF gains MS {_gains(data.get('mtf_ms'))} / PAN {data.get('mtf_pan')} ({data.get('sensor')})"
    crop = f"border crop {settings['border']} px"
    if protocol == REDUCED:
        return (f"Reduced resolution: {data.get('protocol')}, {mtf}; LMS = interp23; {crop}; Q2n/Q on "
                f"{BLOCK}x{BLOCK} blocks; {n_images} images of {settings['dataset']}; values in DN; mean +- std")
    return (f"Full resolution: {mtf} for D_lambda(Khan)/D_s; {crop}, then centred crop to a multiple of {BLOCK} px;"
            f" {n_images} images of {settings['dataset']}; mean +- std")


def _gains(gains: Any) -> str:
    if not gains:
        return "?"
    unique = sorted(set(gains))
    return str(unique[0]) if len(unique) == 1 else "[" + " ".join(f"{g:g}" for g in gains) + "]"


def _cell(stats: dict[str, float], metric: str) -> str:
    d = DIGITS.get(metric, 4)
    mean, std = stats["mean"], stats["std"]
    flag = f" ({stats['nonfinite']} non-finite)" if stats["nonfinite"] else ""
    return f"{mean:.{d}f} +- {std:.{d}f}{flag}" if math.isfinite(mean) else "nan" + flag


def format_table(summary: dict[str, Any], settings: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    blocks = []
    for protocol, methods in summary.items():
        n_images = len({r["image"] for r in records if r["protocol"] == protocol})
        cols = [*METRICS[protocol], "seconds"]
        rows = [["method", *cols]] + [[m, *(_cell(s[c], c) for c in cols)] for m, s in methods.items()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols) + 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        blocks.append(protocol_header(protocol, settings, n_images) + "\n" + "\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def csv_text(records: Sequence[dict[str, Any]]) -> str:
    first = ["image", "protocol", "method"]
    metrics = [m for p in METRICS.values() for m in p if any(m in r for r in records)]
    rest = [k for r in records for k in r if k not in first and k not in metrics]
    columns = first + metrics + list(dict.fromkeys(rest))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/inf: write null so strict parsers accept the file (counts of non-finite are in the summary).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def json_text(settings: dict[str, Any], summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    doc = {"settings": settings, "summary": summary, "images": list(records)}
    return json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
