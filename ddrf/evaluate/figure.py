"""Quicklook figure: RGB of the reference (or PAN) beside every method's output, and absolute-error maps.

One 2-98 % stretch per channel, taken from the reference (the input MS at full resolution), is applied to every
panel so that colour differences between panels are real. Panels are PANEL_PX square, so the PNG size is known.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ddrf.files import write_bytes_atomic
from ddrf.evaluate.datasets import Sample

PANEL_IN, DPI = 3.0, 100
PANEL_PX = int(PANEL_IN * DPI)


def rgb_indices(band_names: Sequence[str], bands: int) -> list[int]:
    """Red, green, blue by name; else bands 2, 1, 0 (blue-green-red order of most MS products); grey if < 3."""
    names = [n.lower() for n in band_names]
    if all(c in names for c in ("red", "green", "blue")):
        return [names.index(c) for c in ("red", "green", "blue")]
    return [2, 1, 0] if bands >= 3 else [0, 0, 0]


def stretch_limits(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.percentile(image.reshape(-1, image.shape[-1]), [2, 98], axis=0)
    return lo, np.where(hi > lo, hi, lo + 1.0)


def apply_stretch(image: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def figure_size(n_methods: int, has_reference: bool) -> tuple[int, int]:
    """(width, height) of the PNG in pixels."""
    return (n_methods + 1) * PANEL_PX, (2 if has_reference else 1) * PANEL_PX


def make_figure(sample: Sample, fused: dict[str, np.ndarray], path: Path) -> tuple[int, int]:
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    idx = rgb_indices(sample.band_names, sample.ms.shape[-1])
    base = sample.ref if sample.ref is not None else sample.ms
    lo, hi = stretch_limits(base[..., idx])
    rows, cols = (2 if sample.ref is not None else 1), len(fused) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(cols * PANEL_IN, rows * PANEL_IN), dpi=DPI, squeeze=False)
    # Fixed margins (no tight bbox) keep the PNG exactly cols x rows panels; the right margin holds the colour bar.
    fig.subplots_adjust(left=0.01, right=1 - 0.45 / cols, bottom=0.02, top=1 - 0.3 / rows, wspace=0.04, hspace=0.12)
    first = ("reference (MS)", apply_stretch(sample.ref[..., idx], lo, hi)) if sample.ref is not None else \
        ("PAN", apply_stretch(sample.pan[..., None], *stretch_limits(sample.pan[..., None]))[..., 0])
    _show(axes[0, 0], first[1], first[0])
    for ax, (name, image) in zip(axes[0, 1:], fused.items()):
        _show(ax, apply_stretch(image[..., idx], lo, hi), name)
    if sample.ref is not None:
        _error_row(fig, axes[1], sample, fused)
    fig.suptitle(f"{sample.name} ({sample.protocol} resolution)", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buf.getvalue())
    return figure_size(len(fused), sample.ref is not None)


def _show(ax, image: np.ndarray, title: str, **kw) -> object:
    shown = ax.imshow(image, cmap=kw.pop("cmap", "gray"), interpolation="nearest", **kw)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return shown


def _error_row(fig, axes, sample: Sample, fused: dict[str, np.ndarray]) -> None:
    """Mean absolute error over bands, in DN, on one colour scale (98th percentile of all errors)."""
    errors = {name: np.abs(image - sample.ref).mean(axis=-1) for name, image in fused.items()}
    vmax = float(np.percentile(np.concatenate([e.ravel() for e in errors.values()]), 98)) or 1.0
    pan = sample.pan[..., None]
    _show(axes[0], apply_stretch(pan, *stretch_limits(pan))[..., 0], "PAN (input)")
    shown = None
    for ax, (name, err) in zip(axes[1:], errors.items()):
        shown = _show(ax, err, f"|error| {name}", cmap="magma", vmin=0.0, vmax=vmax)
    if shown is not None:
        box = axes[-1].get_position()
        cax = fig.add_axes((box.x1 + 0.1 / len(axes), box.y0, 0.08 / len(axes), box.height))
        fig.colorbar(shown, cax=cax).set_label("mean |error| (DN)", fontsize=7)
