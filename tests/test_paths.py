"""What a ground station's file systems do to names and paths: glob characters and odd names in scene folders, the
hrefs of the STAC Items written for them, lock files of other users, and a lock that cannot be removed.

Cheap: files made here, or the bundled sample scene fused with GSA (no torch)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ddrf.files import clean_stale, exclusive, temp_path


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


def test_a_lock_that_cannot_be_removed_hides_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The output folder made read-only during the work: its own error is raised (not the lock's unlink), a work
    that succeeded raises nothing, and the lock left behind is free for the next run."""
    final = tmp_path / "x.tif"
    lock = tmp_path / ".x.tif.ddrf-lock"
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == lock:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(OSError, match="x.item.json"):
        with exclusive(final):
            raise OSError(13, "Permission denied", str(tmp_path / "x.item.json"))
    with exclusive(final):
        pass
    assert lock.exists()
    monkeypatch.undo()
    with exclusive(final):
        pass
    assert not lock.exists()
