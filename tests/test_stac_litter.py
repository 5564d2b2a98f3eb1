"""STAC Item band wrappers (OUT/.ddrf-stac/<id>/) are not left behind by a run that stops before its scenes run (a
usage error after some Items' wrappers were written: a later bad Item, clashing outputs, an output folder that takes
no files), nor by an Item scene that fails on a Dask cluster (--scheduler). Only what this invocation wrote goes:
an earlier run's folders and a published scene's wrappers stay. docs/RELIABILITY.md lists these cases.

Cheap: Items over the sample scene's files, GSA (no torch); one in-process Dask LocalCluster.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

import ddrf.files
from ddrf.scenes.command import SUMMARY_NAME
from ddrf.files import STAC_WORK_DIR as WORK_DIR
from test_bad_inputs import assert_one_line
from test_output_guards import run, write_item

# (the Items after a good one, what the usage line names, what it says): each stops the run after the good Item's
# wrappers (and, for some, part of its own) were written under OUT
Case = Callable[[Path], tuple[list[Path], str, str]]


def item_refused(items: Path) -> tuple[list[Path], str, str]:
    """Refused before it writes anything (its id is no file name)."""
    return [write_item(items / "escape.json", item_id="../escape")], "escape.json", "no plain file name"


def item_sharing_the_id(items: Path) -> tuple[list[Path], str, str]:
    """Its wrappers are written into the good Item's folder, then the shared id is refused."""
    return [write_item(items / "again.json", item_id="good")], "'good'", "share the id"


def items_whose_outputs_clash(items: Path) -> tuple[list[Path], str, str]:
    """All wrappers are written, then good.item's report would be good's STAC Item."""
    return [write_item(items / "clash.json", item_id="good.item")], "good.item.json", "would also be written by"


def output_folder_takes_no_files(items: Path) -> tuple[list[Path], str, str]:
    """All wrappers are written, then check_writable refuses the output folder (see the monkeypatch below)."""
    return [], "out", "cannot write the output here"


CASES: dict[str, Case] = {c.__name__: c for c in (item_refused, item_sharing_the_id, items_whose_outputs_clash,
                                                   output_folder_takes_no_files)}


def refuse_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """check_writable's probe fails (what a folder taking no new files says); the wrappers were written before it."""
    monkeypatch.setattr(ddrf.files, "cannot_write", lambda folder: "Read-only file system")


@pytest.mark.parametrize("case", list(CASES))
def test_a_usage_error_after_the_wrappers_leaves_none(case: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """OUT did not exist: after the usage line nothing of this run is left, not even OUT."""
    items = tmp_path / "items"
    good = write_item(items / "good.json", item_id="good")
    others, names, problem = CASES[case](items)
    if case == "output_folder_takes_no_files":
        refuse_writes(monkeypatch)
    out = tmp_path / "out"
    result = run(str(good), *map(str, others), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, names, problem, "ddrf-run:")
    assert not out.exists(), sorted(str(p.relative_to(tmp_path)) for p in out.rglob("*"))


def test_a_usage_error_keeps_what_other_runs_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside a published scene (its report names its wrappers), earlier runs' folders (one of an Item given again,
    its scene not published) and a file of the user's, a refused run removes the one wrapper folder it made, and
    keeps OUT, which it did not make."""
    items = tmp_path / "items"
    good = write_item(items / "good.json", item_id="good")
    out = tmp_path / "out"
    assert run(str(good), "-o", str(out), "--method", "GSA").exit_code == 0
    for earlier in ("earlier", "again"):
        (out / WORK_DIR / earlier).mkdir()
        (out / WORK_DIR / earlier / "pan.vrt").write_text("<VRTDataset/>")
    (out / "notes.txt").write_text("mine\n")
    published = {p.name: p.read_bytes() for p in (out / WORK_DIR / "good").iterdir()}
    before = sorted(p.name for p in out.iterdir())

    again, new = write_item(items / "again.json", item_id="again"), write_item(items / "new.json", item_id="new")
    refuse_writes(monkeypatch)
    result = run(str(good), str(again), str(new), "-o", str(out), "--method", "GSA")
    assert result.exit_code == 2, result.output
    assert_one_line(result.output, "out", "cannot write the output here", "ddrf-run:")
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in (out / WORK_DIR).iterdir()) == ["again", "earlier", "good"]
    assert {p.name: p.read_bytes() for p in (out / WORK_DIR / "good").iterdir()} == published
    assert (out / WORK_DIR / "earlier" / "pan.vrt").read_text() == "<VRTDataset/>"
    assert len(list((out / WORK_DIR / "again").iterdir())) == 5  # rewritten by this run, but its folder was there
    assert (out / "notes.txt").read_text() == "mine\n"


def test_a_failed_item_scene_on_a_dask_cluster_removes_its_wrappers(tmp_path: Path) -> None:
    """As without --scheduler (tests/test_leftovers.py): the failed Item's folder goes, the done one's and an
    earlier run's stay."""
    import distributed

    good = write_item(tmp_path / "items" / "good.json", item_id="good")
    bad = write_item(tmp_path / "items" / "bad.json", item_id="bad")
    out = tmp_path / "out"
    (out / WORK_DIR / "earlier").mkdir(parents=True)
    (out / "bad.json").write_text("my notes\n")  # where the bad scene's report goes: that scene fails
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        result = run(str(good), str(bad), "-o", str(out), "--method", "GSA", "--scheduler", cluster.scheduler_address)
    assert result.exit_code == 1, result.output
    counts = json.loads((out / SUMMARY_NAME).read_text())["counts"]
    assert (counts["done"], counts["failed"]) == (1, 1)
    assert sorted(p.name for p in (out / WORK_DIR).iterdir()) == ["earlier", "good"]
    assert Path(json.loads((out / "good.json").read_text())["inputs"]["pan"]).is_file()
    assert (out / "bad.json").read_text() == "my notes\n"
    made = json.loads((out / "good.item.json").read_text())  # as run_batch writes it: linked to its source Item
    assert any(link["rel"] == "derived_from" for link in made["links"]), made["links"]
