"""Shared fixtures: the small real crops committed under tests/data, and the optional shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
DATA = TESTS / "data"
SHARED_DATA = Path(__file__).parents[1] / "../shared/data"


@pytest.fixture(scope="session")
def test_data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def landsat7_dir() -> Path:
    """Three Landsat-7 FuseBox crops (scenes 1, 7, 13) in the original N_ms.mat / N_pan.mat format."""
    return DATA / "landsat7"


@pytest.fixture(scope="session")
def landsat8_dir() -> Path:
    """A Landsat-8 L1T crop: l8_B2..B5 (64x64, 30 m) and l8_B8 (128 rows x 127 cols, 15 m), georeferenced."""
    return DATA / "landsat8"


@pytest.fixture(scope="session")
def landsat8_paths(landsat8_dir: Path) -> tuple[Path, list[Path]]:
    """(PAN path, [blue, green, red, NIR] paths) of the Landsat-8 crop."""
    return landsat8_dir / "l8_B8.tif", [landsat8_dir / f"l8_B{b}.tif" for b in (2, 3, 4, 5)]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The developer/CI data folder ../shared/data; tests that need it skip on a fresh machine."""
    path = SHARED_DATA.resolve()
    if not path.is_dir():
        pytest.skip(f"{path} absent (shared data is not part of the repository)")
    return path
