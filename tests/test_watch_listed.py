"""`ddrf-run --watch` and band files a scene's Landsat MTL names: a copy that pauses for longer than --settle between
two files (a slow link) must not be fused with the bands present so far. The scene waits (its reason naming the
absent files) until they arrive, or until nothing changed for --wait-listed seconds (a delivery that truly lacks a
band): then it is fused with the bands present and says so. A --ready-file marker means the producer says the scene
is complete: no waiting for listed files."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from test_watch import SAMPLE, WatchProcess, scene_state

from ddrf.scenes.watch import Readiness

STEM = SAMPLE.name  # LC80200392015216LGN00
EXTRA = ("_B1.TIF", "_B6.TIF", "_B7.TIF")  # named in the sample's MTL but not bundled: made here from B2


def deliver_full(dest: Path, leave_out: tuple[str, ...] = ()) -> None:
    """The sample scene with every band file its MTL names (B1, B6, B7 copied from B2, same grid), except the files
    whose names end in `leave_out` (still on the slow link)."""
    dest.mkdir()
    for path in sorted(SAMPLE.iterdir()):
        if not path.name.endswith(leave_out):
            shutil.copy(path, dest / path.name)
    for suffix in EXTRA:
        if not suffix.endswith(leave_out):
            shutil.copy(SAMPLE / f"{STEM}_B2.TIF", dest / f"{STEM}{suffix}")


def arrive(dest: Path, *suffixes: str) -> None:
    for suffix in suffixes:
        source = SAMPLE / f"{STEM}{suffix}"
        shutil.copy(source if source.exists() else SAMPLE / f"{STEM}_B2.TIF", dest / f"{STEM}{suffix}")


def bands_missing(out: Path, name: str) -> dict[str, Any]:
    def find(node: Any) -> Any:
        if isinstance(node, dict):
            if "bands_missing" in node:
                return node["bands_missing"]
            return next((f for f in map(find, node.values()) if f is not None), None)
        if isinstance(node, list):
            return next((f for f in map(find, node) if f is not None), None)
        return None

    found = find(json.loads((out / f"{name}.json").read_text()))
    assert found is not None, (out / f"{name}.json").read_text()[:2000]
    return found


def started(watcher: WatchProcess) -> None:
    watcher.wait("watching", lambda: any(e["event"] == "watching" for e in watcher.events()))


def test_readiness_waits_for_listed_files_then_gives_up(tmp_path: Path) -> None:
    """The decision itself, on a fake clock: settled but lacking a listed file is not ready; an arrival restarts the
    clock; --wait-listed seconds without a change: ready, with what it lacks."""
    clock = [0.0]
    readiness = Readiness(1.0, None, clock=lambda: clock[0], wait_listed_s=10.0)
    scene = tmp_path / "s"
    deliver_full(scene, leave_out=("_B5.TIF", "_B6.TIF"))
    assert not readiness.ready(scene)  # first seen now
    clock[0] = 5.0  # settled, but B5 and B6 are named in the MTL and absent
    verdict = readiness.check(scene)
    assert not verdict.ready and f"{STEM}_B5.TIF" in verdict.reason and f"{STEM}_B6.TIF" in verdict.reason
    arrive(scene, "_B5.TIF")  # the link resumes: the clock starts again
    assert not readiness.ready(scene)
    clock[0] = 14.0  # 9 s quiet: settled, still waiting for B6
    verdict = readiness.check(scene)
    assert not verdict.ready and f"{STEM}_B6.TIF" in verdict.reason and "_B5.TIF" not in verdict.reason
    clock[0] = 15.5  # 10.5 s quiet: fused without B6, and says so
    verdict = readiness.check(scene)
    assert verdict.ready and f"{STEM}_B6.TIF" in verdict.reason and "--wait-listed" in verdict.reason
    arrive(scene, "_B6.TIF")  # complete: ready once settled, nothing to say
    assert not readiness.ready(scene)
    clock[0] = 17.0
    assert readiness.check(scene) == (True, None)


def test_scene_waits_for_band_files_its_mtl_names(tmp_path: Path) -> None:
    """The slow-link copy: B4 and B5 arrive long after --settle; the scene waits for them, then is fused whole."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    watcher = WatchProcess(inbox, out, tmp_path / "watch.log", "--method", "GSA", "--settle", "0.3")
    started(watcher)
    deliver_full(inbox / "a", leave_out=("_B4.TIF", "_B5.TIF"))
    watcher.wait("a waiting for B4, B5",
                 lambda: f"{STEM}_B5.TIF" in watcher.status().get("a", {}).get("reason", ""))
    time.sleep(1.5)  # five times --settle: still waiting
    entry = watcher.status()["a"]
    assert entry["status"] == "waiting" and not (out / "a.tif").exists()
    assert f"{STEM}_B4.TIF" in entry["reason"] and "named in the MTL" in entry["reason"]
    arrive(inbox / "a", "_B4.TIF", "_B5.TIF")
    watcher.wait("a done", lambda: scene_state(watcher, "a") == "done")
    assert watcher.stop() == 0
    assert bands_missing(out, "a") == {}  # fused with every band
    assert "reason" not in watcher.status()["a"]
    assert not [e for e in watcher.events() if e["event"] == "incomplete"]


def watching_a_delivery_without_nir(tmp_path: Path, *options: str) -> tuple[WatchProcess, Path]:
    """A GSA watcher with these options, started, and scene `a` delivered whole but for its NIR band (B5)."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    watcher = WatchProcess(inbox, out, tmp_path / "watch.log", "--method", "GSA", *options)
    started(watcher)
    deliver_full(inbox / "a", leave_out=("_B5.TIF",))
    return watcher, out


def test_wait_listed_runs_out_and_fuses_the_bands_present(tmp_path: Path) -> None:
    """A delivery that truly lacks the NIR band: after --wait-listed it is fused without it, and says why."""
    watcher, out = watching_a_delivery_without_nir(tmp_path, "--settle", "0.2", "--wait-listed", "1.5")
    delivered = time.monotonic()
    watcher.wait("a waiting", lambda: scene_state(watcher, "a") == "waiting")
    watcher.wait("a done", lambda: scene_state(watcher, "a") == "done")
    assert time.monotonic() - delivered >= 1.4  # not before --wait-listed ran out
    assert watcher.stop() == 0
    reason = watcher.status()["a"]["reason"]
    assert f"fused without {STEM}_B5.TIF named in the MTL" in reason and "--wait-listed 1.5 s" in reason
    said = [e for e in watcher.events() if e["event"] == "incomplete"]
    assert len(said) == 1 and said[0]["name"] == "a" and f"{STEM}_B5.TIF" in said[0]["reason"]
    assert set(bands_missing(out, "a")) == {"nir"}


def test_ready_file_means_complete_without_waiting_for_listed_files(tmp_path: Path) -> None:
    """With --ready-file the producer says the scene is complete: fused at once with the bands present, although
    --settle and --wait-listed (default 600 s) are long."""
    watcher, out = watching_a_delivery_without_nir(tmp_path, "--settle", "600", "--ready-file", "*_MTL.txt")
    watcher.wait("a done", lambda: scene_state(watcher, "a") == "done", timeout=30)
    assert watcher.stop() == 0
    assert set(bands_missing(out, "a")) == {"nir"}
    assert "reason" not in watcher.status()["a"]


PLEIADES = Path(__file__).parent / "data" / "scenes" / "naming" / "pleiades"


def deliver_dimap(dest: Path, leave_out: str | None = None) -> dict[str, Path]:
    """The Pleiades naming fixture with a DIMAP document per product naming its image file (as Airbus deliveries
    do), except the image whose name contains `leave_out` (still on the link). Returns image name -> document."""
    dest.mkdir()
    documents = {}
    for image in sorted(PLEIADES.glob("IMG_*.TIF")):
        document = dest / image.name.replace("IMG_", "DIM_").replace("_R1C1.TIF", ".XML")
        document.write_text("<Dimap_Document><Raster_Data><Data_Access><Data_Files>"
                            f"<Data_File tile_R='1' tile_C='1'><DATA_FILE_PATH href='{image.name}'/></Data_File>"
                            "</Data_Files></Data_Access></Raster_Data></Dimap_Document>")
        documents[image.name] = document
        if leave_out is None or leave_out not in image.name:
            shutil.copy(image, dest / image.name)
    return documents


def test_readiness_waits_for_image_files_a_dimap_document_names(tmp_path: Path) -> None:
    """A Pleiades delivery whose MS image is still on the link: settled, it waits, naming the file and the DIMAP
    document that lists it; once the image arrives and the scene settles, it is ready."""
    clock = [0.0]
    readiness = Readiness(1.0, None, clock=lambda: clock[0], wait_listed_s=10.0)
    scene = tmp_path / "phr"
    documents = deliver_dimap(scene, leave_out="_MS_")
    missing = next(name for name in documents if "_MS_" in name)
    assert not readiness.ready(scene)  # first seen now
    clock[0] = 5.0
    verdict = readiness.check(scene)
    assert not verdict.ready and f"{missing} named in {documents[missing].name}" in verdict.reason, verdict
    shutil.copy(PLEIADES / missing, scene / missing)
    assert not readiness.ready(scene)  # a change: the clock starts again
    clock[0] = 6.5
    assert readiness.check(scene) == (True, None)


def test_a_watched_dimap_delivery_is_fused_once_its_images_arrive(tmp_path: Path) -> None:
    """Through the watcher: the scene stays waiting for the MS image its DIMAP document names, long after --settle,
    then is fused with it."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    watcher = WatchProcess(inbox, out, tmp_path / "watch.log", "--method", "GSA", "--settle", "0.3")
    started(watcher)
    missing = next(name for name in deliver_dimap(inbox / "phr", leave_out="_MS_") if "_MS_" in name)
    watcher.wait("phr waiting for its MS image", lambda: missing in watcher.status().get("phr", {}).get("reason", ""))
    time.sleep(1.5)  # five times --settle: still waiting
    assert watcher.status()["phr"]["status"] == "waiting" and not (out / "phr.tif").exists()
    shutil.copy(PLEIADES / missing, inbox / "phr" / missing)
    watcher.wait("phr done", lambda: scene_state(watcher, "phr") == "done")
    assert watcher.stop() == 0
    assert bands_missing(out, "phr") == {}
