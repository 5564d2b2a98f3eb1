"""A watch status file edited by hand: an entry whose path fields are no strings, or whose name is a path, is refused
at start with the usual one line (exit 2), instead of a TypeError traceback from the first scan (a done scene's
`output: 5`) or lock files and temporaries looked for outside the output directory (a scene named `../x`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddrf.scenes.watch import StatusFile


@pytest.mark.parametrize(("name", "entry", "wrong"), [
    ("a", {"status": "done", "output": 5}, "output is not a string"),
    ("a", {"status": "failed", "delivery": ["x"]}, "delivery is not a string"),
    ("../x", {"status": "queued"}, "not a directory name"),
    ("a/b", {"status": "waiting"}, "not a directory name"),
])
def test_hand_edited_entries_are_refused_in_one_line(tmp_path: Path, name: str, entry: dict[str, object],
                                                     wrong: str) -> None:
    path = tmp_path / "ddrf-watch-status.json"
    path.write_text(json.dumps({"scenes": {name: entry}}))
    with pytest.raises(ValueError, match=rf"not a ddrf-run watch status file \(scene '{name}': {wrong}\); move it"):
        StatusFile(path, tmp_path)


def test_the_status_file_the_watcher_writes_loads_again(tmp_path: Path) -> None:
    status = StatusFile(tmp_path / "ddrf-watch-status.json", tmp_path)
    status.set("a", "done", source=str(tmp_path / "a"), output=str(tmp_path / "a.tif"), files=["a.tif"],
               seconds=1.5, delivery="0123", reason="fused without x")
    status.set("b", "failed", source=str(tmp_path / "b"), reason="b: bad", delivery="unknown")
    assert StatusFile(status.path, tmp_path).scenes == status.scenes
