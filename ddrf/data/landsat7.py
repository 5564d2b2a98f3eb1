"""Landsat-7 ETM+ PAN/MS pairs from FuseBox (github.com/sjtrny/FuseBox, imagery/cropped/N_ms.mat, N_pan.mat).

Facts from the data's PROVENANCE: N_ms.mat holds `cropped_im`, uint8 400x400x6, bands R, G, B, NIR, SWIR1, SWIR2
(the distributor swapped ETM+ bands 1 and 3); N_pan.mat holds `cropped_gray`, uint8 800x800. The PAN content sits
-1 PAN pixel off in both axes (the source crop started one PAN pixel late), so ms[1:, 1:] is paired with
pan[1:-1, 1:-1]. That leaves an odd MS size (399); we then keep the top-left multiple of the ratio (398 MS,
796 PAN) so Wald's protocol at ratio 2 divides evenly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.io

from ddrf.data.pair import Pair

RATIO = 2
BITS = 8
SENSOR = "Landsat7"
MS_VAR = "cropped_im"
PAN_VAR = "cropped_gray"
FILE_BANDS = ("red", "green", "blue", "nir", "swir1", "swir2")  # band order inside N_ms.mat
DEFAULT_BANDS = ("blue", "green", "red", "nir")
FUSEBOX_TEST_ACQUISITION = "P034R032"

# Scene number ranges (inclusive) -> acquisition (path/row), from the PROVENANCE table.
_ACQUISITIONS: tuple[tuple[int, int, str], ...] = (
    (1, 6, "P034R032"),
    (7, 12, "P090R083"),
    (13, 18, "P091R083"),
    (19, 24, "P092R086"),
    (25, 31, "P093R085"),
    (32, 39, "P093R086"),
)
ACQUISITIONS = tuple(name for _, _, name in _ACQUISITIONS)  # every FuseBox acquisition, in scene order


def fusebox_acquisition(scene: int) -> str:
    """Path/row of FuseBox scene `scene` (1..39)."""
    for first, last, name in _ACQUISITIONS:
        if first <= scene <= last:
            return name
    raise ValueError(f"FuseBox scene {scene}: no acquisition known (scenes are 1..39)")


def _scene_dir(root: Path) -> Path:
    # Accept either the dataset folder or its `cropped` sub-folder.
    if not root.is_dir():
        raise ValueError(f"{root}: FuseBox folder does not exist")
    nested = root / "cropped"
    return nested if nested.is_dir() and not any(root.glob("*_ms.mat")) else root


def _discover(folder: Path) -> list[int]:
    scenes = sorted(int(m.group(1)) for p in folder.glob("*_ms.mat") if (m := re.fullmatch(r"(\d+)_ms\.mat", p.name)))
    if not scenes:
        raise ValueError(f"{folder}: no N_ms.mat files found")
    return scenes


def _read_var(path: Path, var: str, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{path}: file missing")
    try:
        content = scipy.io.loadmat(path, variable_names=[var])
    except Exception as exc:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: not a readable MATLAB file ({exc})") from exc
    if var not in content:
        raise ValueError(f"{path}: variable {var!r} missing")
    array = content[var]
    if array.ndim != ndim:
        raise ValueError(f"{path}: {var!r} has shape {array.shape}, expected {ndim} dimensions")
    return array


def _band_indices(bands: Sequence[str]) -> list[int]:
    unknown = [b for b in bands if b not in FILE_BANDS]
    if unknown or not bands:
        raise ValueError(f"FuseBox bands {tuple(bands)}: choose from {FILE_BANDS}")
    return [FILE_BANDS.index(b) for b in bands]


def correct_misregistration(ms: np.ndarray, pan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove the measured -1 PAN pixel shift and crop MS to a multiple of the ratio (400 -> 398, 129 -> 128)."""
    ms, pan = ms[1:, 1:], pan[1:-1, 1:-1]
    h = ms.shape[0] - ms.shape[0] % RATIO
    w = ms.shape[1] - ms.shape[1] % RATIO
    return ms[:h, :w], pan[: RATIO * h, : RATIO * w]


def load_fusebox_scene(folder: Path, scene: int, bands: Sequence[str] = DEFAULT_BANDS) -> Pair:
    """Read, validate and correct one FuseBox pair."""
    ms_path, pan_path = folder / f"{scene}_ms.mat", folder / f"{scene}_pan.mat"
    ms = _read_var(ms_path, MS_VAR, 3)
    pan = _read_var(pan_path, PAN_VAR, 2)
    if ms.shape[2] != len(FILE_BANDS):
        raise ValueError(f"{ms_path}: {MS_VAR!r} has {ms.shape[2]} bands, expected {len(FILE_BANDS)}")
    if pan.shape != (RATIO * ms.shape[0], RATIO * ms.shape[1]):
        raise ValueError(f"{pan_path}: {PAN_VAR!r} is {pan.shape}, expected ratio {RATIO} x MS {ms.shape[:2]}")
    ms, pan = correct_misregistration(ms[:, :, _band_indices(bands)], pan)
    return Pair(
        name=f"fusebox_{scene}",
        acquisition=fusebox_acquisition(scene),
        pan=pan.astype(np.float64),
        ms=ms.astype(np.float64),
        ratio=RATIO,
        sensor=SENSOR,
        bits=BITS,
        band_names=tuple(bands),
        source=str(pan_path),
    )


def load_fusebox(
    root: str | Path, scenes: Iterable[int] | None = None, bands: Sequence[str] = DEFAULT_BANDS
) -> list[Pair]:
    """All (or the listed) FuseBox scenes under `root`, corrected for misregistration, MS 398x398 / PAN 796x796."""
    folder = _scene_dir(Path(root))
    numbers = _discover(folder) if scenes is None else [int(s) for s in scenes]
    return [load_fusebox_scene(folder, n, bands) for n in numbers]


def split_by_acquisition(
    pairs: Iterable[Pair], test: Iterable[str] | str = (FUSEBOX_TEST_ACQUISITION,)
) -> tuple[list[Pair], list[Pair]]:
    """(train, test): every pair of a test acquisition goes to test, so no acquisition lands on both sides."""
    held_out = {test} if isinstance(test, str) else set(test)
    pairs = list(pairs)
    train = [p for p in pairs if p.acquisition not in held_out]
    tested = [p for p in pairs if p.acquisition in held_out]
    overlap = {p.acquisition for p in train} & {p.acquisition for p in tested}
    if overlap:  # cannot happen by construction; guards future edits
        raise ValueError(f"acquisitions {sorted(overlap)} are in both train and test")
    return train, tested
