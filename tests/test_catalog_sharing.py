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


def test_links_to_items_moved_or_deleted_since_are_dropped_with_one_line(tmp_path: Path) -> None:
    """A run adding to a catalogue whose earlier outputs were moved or deleted since dropped nothing: the catalogue
    kept links to Items that are gone, which a STAC browser or crawler then fails on. Now they are dropped, named in
    one line; links to Items still there, and links that are URLs, stay."""
    from typer.testing import CliRunner

    from ddrf.scenes.command import app
    from scenes_fixtures import copy_scene

    catalog = tmp_path / "catalog"

    def run(name: str, out: str) -> str:
        result = CliRunner().invoke(app, [str(copy_scene(tmp_path / "in" / name)), "-o", str(tmp_path / out),
                                          "--method", "Brovey", "--stac-catalog", str(catalog), "--no-progress"])
        assert result.exit_code == 0, result.output
        return result.output

    run("a", "out1")
    run("c", "out3")
    (tmp_path / "out1").rename(tmp_path / "moved")
    document = json.loads((catalog / "catalog.json").read_text())
    document["links"].append({"rel": "item", "href": "https://example.com/x.item.json", "title": "remote"})
    (catalog / "catalog.json").write_text(json.dumps(document))
    said = [line for line in run("b", "out2").splitlines() if "a.item.json" in line]
    links = json.loads((catalog / "catalog.json").read_text())["links"]
    assert sorted(link["title"] for link in links if link["rel"] == "item") == ["b", "c", "remote"]
    assert len(said) == 1 and "../out1/a.item.json" in said[0] and "gone" in said[0], said
    assert "a.item.json" not in run("d", "out4")  # said once: the link is gone with it
