"""The evaluation loop: fuse every sample with every method, score it, aggregate mean and std per method."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ddrf.evaluate.datasets import FULL, REDUCED, Sample

REDUCED_METRICS = ("SAM", "ERGAS", "Q2n", "SCC", "Q", "PSNR", "SSIM")
FULL_METRICS = ("D_lambda", "D_s", "HQNR", "QNR_D_lambda", "QNR_D_s", "QNR")
METRICS = {REDUCED: REDUCED_METRICS, FULL: FULL_METRICS}
BLOCK = 32  # Q2n / Q / D_s block size of the toolbox


@dataclass
class Kept:
    """The fused outputs of the figure's image (only that one is held in memory)."""

    sample: Sample | None = None
    fused: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Results:
    records: list[dict[str, Any]]
    kept: Kept


def full_crop(h: int, w: int, ratio: int, border: int, block: int) -> tuple[int, int, int, int]:
    """(row0, col0, rows, cols) on the PAN grid: `border` dropped, then a centred, ratio-aligned crop to the largest
    multiple of lcm(block, ratio) (D_lambda / D_s work on whole block x block tiles, as the toolbox demands)."""
    unit = math.lcm(block, ratio)
    out = []
    for n in (h, w):
        inner = n - 2 * border
        size = inner // unit * unit
        if size < unit:
            raise ValueError(f"image side {n} minus border {border} is below one {unit}-pixel block")
        out.append((border + (inner - size) // 2 // ratio * ratio, size))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def score(sample: Sample, fused: np.ndarray, border: int, block: int = BLOCK) -> dict[str, Any]:
    """Metrics of one fused image under the sample's protocol (all values DN-based floats)."""
    from ddrf.metrics import full_resolution_metrics, reduced_resolution_metrics

    if sample.ref is not None:
        m = reduced_resolution_metrics(fused, sample.ref, sample.ratio, border=border, block=block)
        return {**{k: float(m[k]) for k in REDUCED_METRICS}, "data_range": float(m["data_range"]),
                "size": f"{fused.shape[0] - 2 * border}x{fused.shape[1] - 2 * border}"}
    r0, c0, rows, cols = full_crop(fused.shape[0], fused.shape[1], sample.ratio, border, block)
    q = sample.ratio
    full = full_resolution_metrics(fused[r0:r0 + rows, c0:c0 + cols], sample.pan[r0:r0 + rows, c0:c0 + cols],
                                sample.ms[r0 // q:(r0 + rows) // q, c0 // q:(c0 + cols) // q], q, sample.sensor,
                                border=0, block=block)
    return {**{k: float(full[k]) for k in FULL_METRICS}, "size": f"{rows}x{cols}", "offset": f"{r0},{c0}"}


def check_border(border: int, ratio: int, protocols: Sequence[str]) -> None:
    if border < 0:
        raise ValueError(f"--border must be >= 0, got {border}")
    if FULL in protocols and border % ratio:
        raise ValueError(f"--border {border} must be a multiple of the ratio {ratio} at full resolution")


def check_border_fits(border: int, sample: Sample, block: int = BLOCK) -> None:
    """The border leaves the metrics a block to score: a block x block square of the fused image at reduced
    resolution, a `full_crop` unit (the border a multiple of the ratio) at full."""
    unit = block if sample.ref is not None else math.lcm(block, sample.ratio)
    h, w = sample.pan.shape
    widest = (min(h, w) - unit) // 2
    widest -= 0 if sample.ref is not None else widest % sample.ratio
    size = f"{sample.where} is {h}x{w} on the fused grid ({sample.protocol} protocol)"
    if widest < 0:
        raise ValueError(f"{size}, below the metrics' {unit}-pixel block: nothing to score")
    if border > widest:
        raise ValueError(f"--border {border}: {size}, and the metrics need a {unit}-pixel block inside the border: "
                         f"at most --border {widest}")


def check_scorable(border: int, sample: Sample, block: int = BLOCK) -> None:
    """What the metrics cannot score, said before any method fuses the sample, naming it (the metrics' own errors
    came after the fusion and named neither file nor band): at full resolution the QNR family compares block x
    block tiles of the fused image with block / ratio MS pixels, so the ratio must divide the block (a hyperspectral
    pair's ratio 3 does not divide 32); at reduced resolution ERGAS divides by each reference band's mean, so a band
    that is 0 everywhere (a cube's dead band) leaves it undefined."""
    if sample.ref is None:
        if block % sample.ratio:
            raise ValueError(f"{sample.where}: ratio {sample.ratio} does not divide the full-resolution metrics' "
                             f"{block}-pixel block (D_lambda, D_s and QNR set it against {block} / ratio MS pixels); "
                             "score it at reduced resolution: --mode reduced")
        return
    h, w = sample.ref.shape[:2]
    inner = sample.ref[border:h - border, border:w - border]
    dead = [b for b in range(inner.shape[-1]) if not inner[..., b].mean()]
    if dead:
        b = dead[0]
        name = f" ({sample.band_names[b]})" if b < len(sample.band_names) else ""
        raise ValueError(f"{sample.where}: MS band {b + 1}{name} is 0 everywhere"
                         f"{' inside the border' if border else ''} ({len(dead)} such band(s)): ERGAS, relative to "
                         "each band's mean, is undefined; leave such bands out with --bands")


def run(samples: Iterable[Sample], methods: Sequence[Any], border: int, keep: Callable[[Sample], bool],
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Results:
    records: list[dict[str, Any]] = []
    kept = Kept()
    for i, sample in enumerate(samples, 1):
        check_border(border, sample.ratio, [sample.protocol])
        check_border_fits(border, sample)
        check_scorable(border, sample)
        hold = kept.sample is None and keep(sample)
        start = time.perf_counter()
        for method in methods:
            t0 = time.perf_counter()
            try:
                fused = method.fuse(sample)
            except ValueError as exc:
                raise ValueError(f"{method.name} on {sample.name}: {exc}") from exc
            seconds = time.perf_counter() - t0
            if fused.shape != sample.pan.shape + (sample.ms.shape[-1],):
                raise ValueError(f"{method.name} on {sample.name}: output {fused.shape}, expected "
                                 f"{sample.pan.shape + (sample.ms.shape[-1],)}")
            records.append({"image": sample.name, "protocol": sample.protocol, "method": method.name,
                            "ratio": sample.ratio, "sensor": sample.sensor, "border": border,
                            "finite_output": bool(np.isfinite(fused).all()), "seconds": round(seconds, 4),
                            **score(sample, fused, border)})
            if hold:
                kept.fused[method.name] = fused
        if hold:
            kept.sample = sample
        log(f"[{i}] {sample.protocol:7s} {sample.name}: {len(methods)} methods in {time.perf_counter() - start:.1f} s")
    if not records:
        raise ValueError("no images to evaluate")
    return Results(records, kept)


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """{protocol: {method: {metric: {mean, std, n, nonfinite}}}}; std is the population std (ddof 0)."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for protocol in (REDUCED, FULL):
        rows = [r for r in records if r["protocol"] == protocol]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        for method in methods:
            mine = [r for r in rows if r["method"] == method]
            stats = {}
            for metric in (*METRICS[protocol], "seconds"):
                values = np.array([r[metric] for r in mine], dtype=np.float64)
                ok = values[np.isfinite(values)]
                stats[metric] = {"mean": float(ok.mean()) if ok.size else float("nan"),
                                 "std": float(ok.std()) if ok.size else float("nan"),
                                 "n": int(values.size), "nonfinite": int(values.size - ok.size)}
            out.setdefault(protocol, {})[method] = stats
    return out
