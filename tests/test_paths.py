"""What a ground station's file systems do to names and paths: glob characters and odd names in scene folders, the
hrefs of the STAC Items written for them, lock files of other users, and a lock that cannot be removed.

Cheap: files made here, or the bundled sample scene fused with GSA (no torch)."""
from __future__ import annotations

from pathlib import Path

from ddrf.files import clean_stale, temp_path


def test_cleaning_stale_temporaries_touches_only_the_outputs_own(tmp_path: Path) -> None:
    """Scene `a[1]` (or `a*`) must remove the temporaries its killed run left, and never those of scene `a1`, `ab`
    or `a.tif.b`, which another run may be writing this moment: the name is no glob pattern."""
    others = [temp_path(tmp_path / name) for name in ("a1.tif", "ab.tif", "a.tif.b.tif")]
    owns = {name: temp_path(tmp_path / name) for name in ("a[1].tif", "a*.tif", "a.tif")}
    for path in [*others, *owns.values()]:
        path.write_bytes(b"half a file")
    for name, own in owns.items():
        assert clean_stale(tmp_path / name) == [own], name
        assert not own.exists()
    assert all(path.exists() for path in others)
