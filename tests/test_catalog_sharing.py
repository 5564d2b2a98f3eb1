"""Runs that share one --stac-catalog (two watchers on one inbox with their own output folders, batches run side by
side) each read, change and rewrite catalog.json: without a lock, one run's link was lost."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ddrf.scenes import stac_out


def item(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.item.json"
    path.write_text(json.dumps({"id": name}))
    return path


def test_two_runs_linking_at_once_keep_both_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = tmp_path / "catalog"
    stac_out.add_to_catalog(catalog, item(tmp_path / "out0", "first"))
    read = stac_out.read_catalog
    both_read = threading.Barrier(2, timeout=1.0)

    def read_then_meet(path: Path) -> object:  # both runs read the catalogue before either writes it, if they can
        found = read(path)
        try:
            both_read.wait()
        except threading.BrokenBarrierError:  # the other run waits for the lock: it reads after this one wrote
            pass
        return found

    monkeypatch.setattr(stac_out, "read_catalog", read_then_meet)
    runs = [threading.Thread(target=stac_out.add_to_catalog, args=(catalog, item(tmp_path / f"out{n}", name)))
            for n, name in ((1, "a"), (2, "b"))]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=30)
    links = json.loads((catalog / "catalog.json").read_text())["links"]
    assert sorted(link["title"] for link in links if link["rel"] == "item") == ["a", "b", "first"]
    assert [p.name for p in catalog.iterdir()] == ["catalog.json"]  # the lock is gone with the last run
