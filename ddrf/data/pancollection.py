"""PanCollection HDF5 files (the DDRF paper's data): NCHW arrays scaled to [0, 1] as float32.

Pansharpening files hold gt, ms, lms, pan in raw digital numbers (gt absent at full resolution); they are divided by
2047 (WV3, WV2, QB: 11-bit) or 1023 (GF2: 10-bit). Hyperspectral (MHIF) files hold GT, LRHSI, RGB, HSI_up already in
[0, 1]; they are exposed under the same names (gt, ms, pan, lms) with kind "hyperspectral" and divisor 1 unless one
is given explicitly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

PANSHARPENING = "pansharpening"
HYPERSPECTRAL = "hyperspectral"
PANSHARPENING_KEYS = {"gt": "gt", "ms": "ms", "lms": "lms", "pan": "pan"}
HYPERSPECTRAL_KEYS = {"gt": "GT", "ms": "LRHSI", "lms": "HSI_up", "pan": "RGB"}
DIVISORS = {"wv3": 2047.0, "wv2": 2047.0, "qb": 2047.0, "gf2": 1023.0}
_CHUNK = 256  # samples per read when loading a whole file: bounds the float64 temporary


def infer_divisor(path: str | Path) -> float:
    """DN divisor from a sensor token (wv3, wv2, qb, gf2) in the file name, else in its folder name."""
    path = Path(path)
    for part in (path.stem, path.parent.name):
        found = {DIVISORS[t] for t in re.split(r"[^a-z0-9]+", part.lower()) if t in DIVISORS}
        if len(found) == 1:
            return found.pop()
        if found:
            raise ValueError(f"{path}: name matches several sensors; pass --divisor")
    raise ValueError(f"{path}: cannot infer the sensor (wv3, wv2, qb, gf2) from the name; pass --divisor")


class PanCollectionArrays(dict):
    """dict of float32 NCHW arrays (gt, ms, lms, pan) with the file's kind, ratio and divisor attached."""

    def __init__(self, arrays: dict[str, np.ndarray], kind: str, ratio: int, divisor: float) -> None:
        super().__init__(arrays)
        self.kind, self.ratio, self.divisor = kind, ratio, divisor


class PanCollectionFile:
    """Lazy view of one PanCollection file: len() samples, [i] -> dict of CHW float32 arrays in [0, 1].

    The HDF5 handle is opened on first access in each process, so the object can be handed to DataLoader workers.
    """

    def __init__(self, path: str | Path, divisor: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: file missing")
        self._handle: h5py.File | None = None
        self._pid = -1
        try:
            self.kind, self.keys = self._detect_kind()
            self.length, self.ratio = self._validate()
            self.divisor = self._resolve_divisor(divisor)
        except ValueError:
            self.close()
            raise

    # -- opening and validation -------------------------------------------------------------------------------
    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as exc:
                raise ValueError(f"{self.path}: not a readable HDF5 file ({exc})") from exc
            self._pid = os.getpid()
        return self._handle

    def _detect_kind(self) -> tuple[str, dict[str, str]]:
        present = set(self._file().keys())
        for kind, table in ((PANSHARPENING, PANSHARPENING_KEYS), (HYPERSPECTRAL, HYPERSPECTRAL_KEYS)):
            if present & set(table.values()):
                missing = [table[k] for k in ("ms", "lms", "pan") if table[k] not in present]
                if missing:
                    raise ValueError(f"{self.path}: {kind} file lacks keys {missing}")
                return kind, {k: v for k, v in table.items() if v in present}
        expected = "gt/ms/lms/pan or GT/LRHSI/RGB/HSI_up"
        raise ValueError(f"{self.path}: no PanCollection keys ({expected}) in {sorted(present)}")

    def _validate(self) -> tuple[int, int]:
        shapes = {k: self._file()[v].shape for k, v in self.keys.items()}
        for key, shape in shapes.items():
            if len(shape) != 4:
                raise ValueError(f"{self.path}: {self.keys[key]!r} has shape {shape}, expected NCHW")
        if len({s[0] for s in shapes.values()}) != 1:
            counts = {self.keys[k]: s[0] for k, s in shapes.items()}
            raise ValueError(f"{self.path}: sample counts differ between keys: {counts}")
        ms, big = shapes["ms"], shapes["pan"][2:]
        if any(shapes[k][2:] != big for k in ("lms", "gt") if k in shapes):
            raise ValueError(f"{self.path}: lms/gt size differs from pan size {big}")
        if any(shapes[k][1] != ms[1] for k in ("lms", "gt") if k in shapes):
            raise ValueError(f"{self.path}: lms/gt band count differs from ms ({ms[1]})")
        if ms[2] == 0 or ms[3] == 0 or big[0] % ms[2] or big[1] % ms[3] or big[0] // ms[2] != big[1] // ms[3]:
            raise ValueError(f"{self.path}: pan size {big} is not an integer ratio of ms size {ms[2:]}")
        return ms[0], big[0] // ms[2]

    def _resolve_divisor(self, divisor: float | None) -> float:
        if divisor is not None:
            if not divisor > 0:
                raise ValueError(f"{self.path}: divisor must be positive, got {divisor}")
            return float(divisor)
        return 1.0 if self.kind == HYPERSPECTRAL else infer_divisor(self.path)

    # -- access ---------------------------------------------------------------------------------------------
    @property
    def has_gt(self) -> bool:
        return "gt" in self.keys

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not -self.length <= index < self.length:
            raise IndexError(f"{self.path}: sample {index} out of range 0..{self.length - 1}")
        index = int(index) % self.length
        handle = self._file()
        return {k: (handle[v][index] / self.divisor).astype(np.float32) for k, v in self.keys.items()}

    def read_all(self) -> PanCollectionArrays:
        """Every sample of every key as float32 NCHW, scaled in chunks (the file may be several GB)."""
        handle, arrays = self._file(), {}
        for key, name in self.keys.items():
            dataset = handle[name]
            out = np.empty(dataset.shape, dtype=np.float32)
            for start in range(0, self.length, _CHUNK):
                out[start : start + _CHUNK] = dataset[start : start + _CHUNK] / self.divisor
            arrays[key] = out
        return PanCollectionArrays(arrays, self.kind, self.ratio, self.divisor)

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self) -> PanCollectionFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # h5py handles cannot be pickled; the receiving process reopens the file.
        return {**self.__dict__, "_handle": None, "_pid": -1}


def read_pancollection(path: str | Path, divisor: float | None = None) -> PanCollectionArrays:
    """Whole PanCollection file as float32 NCHW arrays in [0, 1]: keys gt (when present), ms, lms, pan."""
    with PanCollectionFile(path, divisor) as source:
        return source.read_all()
