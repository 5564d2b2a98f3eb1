"""The profile document (versioned JSON, ddrf/profile/schema.json), its CSV rows, a text table and a plot."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ddrf.files import write_bytes_atomic

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("schema.json")
STAGE_COLUMNS = ("read", "preprocess", "encode", "sample", "postprocess", "write")
TOTAL_COLUMNS = ("min", "mean", "median", "p90", "p95", "p99", "max", "cv")
KEY_COLUMNS = ("backend", "precision", "tile", "batch", "steps", "sampler")


def document(command: str, target: dict[str, Any], settings: dict[str, Any], environment: dict[str, Any],
             results: list[dict[str, Any]], projections: list[dict[str, Any]], scene_runs: list[dict[str, Any]],
             notes: Sequence[str]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "tool": "ddrf-profile",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "target": target, "settings": settings, "environment": environment, "results": results,
            "scene_projections": projections, "scene_runs": scene_runs, "notes": list(notes)}


def load_schema() -> dict[str, Any]:
    """The schema, with the backend, precision and sampler names taken from where they are defined."""
    from ddrf.model_dir import PRECISIONS
    from ddrf.profile.spec import SAMPLERS
    from ddrf.runtime.backends import PROFILE_BACKENDS

    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    key = schema["$defs"]["key"]["properties"]
    for name, values in (("backend", PROFILE_BACKENDS), ("precision", PRECISIONS), ("sampler", SAMPLERS)):
        key[name]["enum"] = list(values)
    return schema


def validate(doc: dict[str, Any]) -> None:
    """jsonschema.ValidationError when the document does not follow the schema (no-op without jsonschema)."""
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(doc, load_schema())


# --- CSV ---------------------------------------------------------------------------------------------------------
def csv_columns() -> list[str]:
    return [*KEY_COLUMNS, "status", "provider", "device", *(f"total_{k}_ms" if k != "cv" else "total_cv"
                                                             for k in TOTAL_COLUMNS),
            *(f"{s}_mean_ms" for s in STAGE_COLUMNS), "denoise_mean_ms", "denoise_step_mean_ms",
            "tiles_per_s", "megapixels_per_s", *(f"cold_{k}_ms" for k in ("import", "load", "session", "first_run",
                                                                           "total")),
            "peak_rss_mb", "device_peak_delta_mb", "reason"]


def csv_row(result: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {c: "" for c in csv_columns()}
    row.update({k: result.get(k) for k in (*KEY_COLUMNS, "status", "provider", "device", "reason")})
    if result.get("status") != "ok":
        return row
    latency = result["latency_ms"]
    row.update({(f"total_{k}_ms" if k != "cv" else "total_cv"): latency["total"][k] for k in TOTAL_COLUMNS})
    for stage in STAGE_COLUMNS:
        stats = latency["stages"].get(stage)
        row[f"{stage}_mean_ms"] = stats["mean"] if stats else ""
    if latency.get("denoise_sum"):
        row["denoise_mean_ms"] = latency["denoise_sum"]["mean"]
        row["denoise_step_mean_ms"] = latency["denoise_sum"]["mean"] / max(len(latency["denoise_steps"]), 1)
    row.update(result["throughput"])
    row.update({f"cold_{k}_ms": v for k, v in result["cold_start_ms"].items()})
    row["peak_rss_mb"] = result["memory"]["peak_rss_bytes"] / 2**20
    device = result["memory"].get("device")
    row["device_peak_delta_mb"] = device["peak_delta_bytes"] / 2**20 if device else ""
    return row


def to_csv(doc: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(), lineterminator="\n")
    writer.writeheader()
    for result in doc["results"]:
        writer.writerow({k: "" if v is None else v for k, v in csv_row(result).items()})
    return buffer.getvalue()


# --- text table --------------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _align(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _status(result: dict[str, Any], reasons: list[str]) -> str:
    """'ok', or the status with a footnote number (each distinct reason listed once under the table)."""
    if result["status"] == "ok":
        return "ok"
    reason = str(result.get("reason"))
    if reason not in reasons:
        reasons.append(reason)
    return f"{result['status']} [{reasons.index(reason) + 1}]"


def table(doc: dict[str, Any]) -> str:
    """Latency in ms of one tile fusion (a batch), throughput, cold start and peak host memory per point."""
    reasons: list[str] = []
    rows = [["backend", "prec", "tile", "batch", "steps", "sampler", "median", "p90", "p99", "cv%", "encode",
             "step", "tiles/s", "MP/s", "cold ms", "RSS MB", "status"]]
    for r in doc["results"]:
        c = csv_row(r)
        rows.append([str(r["backend"]), str(r["precision"]), str(r["tile"]), str(r["batch"]),
                     _fmt(r["steps"]), str(r["sampler"]), _fmt(c["total_median_ms"]), _fmt(c["total_p90_ms"]),
                     _fmt(c["total_p99_ms"]), _fmt(c["total_cv"] * 100 if c["total_cv"] != "" else ""),
                     _fmt(c["encode_mean_ms"]), _fmt(c["denoise_step_mean_ms"]), _fmt(c["tiles_per_s"], 2),
                     _fmt(c["megapixels_per_s"], 3), _fmt(c["cold_total_ms"], 0), _fmt(c["peak_rss_mb"], 0),
                     _status(r, reasons)])
    parts = [_align(rows)] + [f"  [{i}] {reason}" for i, reason in enumerate(reasons, 1)]
    for p in doc["scene_projections"]:
        parts.append(f"projected {p['width']}x{p['height']} ({p['megapixels']:.1f} MP) on {p['backend']} "
                     f"tile {p['tile']} batch {p['batch']} {p['sampler']} steps {p['steps']}: {p['windows']} windows "
                     f"(halo overhead x{p['halo_overhead']:.2f}) -> {p['projected_s']:.1f} s "
                     f"({p['seconds_per_megapixel']:.2f} s/MP) + cold start {p['cold_start_s']:.1f} s")
    for s in doc["scene_runs"]:
        if s.get("exit_code") == 0:
            parts.append(f"measured `{s['command']}`: {s['seconds']:.1f} s for {s['megapixels']:.2f} MP "
                         f"({s['tiles']} tiles), peak RSS {s['peak_rss_bytes'] / 2**20:.0f} MB")
        else:
            parts.append(f"scene run failed (`{s['command']}`): {s.get('error') or 'exit ' + str(s.get('exit_code'))}")
    parts += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(parts)


# --- plot --------------------------------------------------------------------------------------------------------
def _series(results: list[dict[str, Any]], x_key: str, fixed: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    lines: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        if any(r[k] != v for k, v in fixed.items()):
            continue
        label = f"{r['backend']} {r['precision']} {r['sampler']} b{r['batch']}"
        lines.setdefault(label, []).append((int(r[x_key]), r["latency_ms"]["total"]["median"]))
    return {k: sorted(v) for k, v in lines.items()}


def _most_common(values: list[Any]) -> Any:
    return max(set(values), key=values.count)


def plot(doc: dict[str, Any], path: str | Path) -> None:
    """Median tile latency against steps (at the most common tile) and against tile size (at the most common
    step count), one line per backend/precision/sampler/batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in doc["results"] if r["status"] == "ok" and r["steps"] is not None]
    if not ok:
        raise ValueError("nothing to plot: no point ran")
    tile, steps = _most_common([r["tile"] for r in ok]), _most_common([r["steps"] for r in ok])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, x_key, fixed, xlabel in ((axes[0], "steps", {"tile": tile}, f"sampler steps (tile {tile})"),
                                     (axes[1], "tile", {"steps": steps}, f"tile side, PAN px (steps {steps})")):
        for label, points in _series(ok, x_key, fixed).items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_xticks(sorted({int(r[x_key]) for r in ok if all(r[k] == v for k, v in fixed.items())}))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median latency per batch (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    cpu = doc["environment"].get("gpu_name") or doc["environment"].get("cpu_model") or ""
    fig.suptitle(f"ddrf-profile: {Path(doc['target']['path']).name} on {cpu}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format=Path(path).suffix.lower().lstrip("."))
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def check_plot_format(path: Path) -> None:
    """Before the sweep: matplotlib can write the format the file name asks for."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        raise ValueError(f"{path}: --plot writes {', '.join('.' + f for f in sorted(formats))}, not "
                         f"'{path.suffix or 'no suffix'}'")
