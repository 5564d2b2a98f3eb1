"""Faults: a full disk (a file-size limit, as `ulimit -f` sets) in ddrf-run, ddrf-export and ddrf-train checkpoints;
SIGKILL at several moments of a multi-window scene, then a rerun; SIGTERM; two runs on one output; a crafted
resume.pt. Each command runs as its own process, as at a ground station."""
from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from scenes_fixtures import SAMPLE, TINY_MODEL

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
KILL_ARGS = ["--tile", "64", "--halo", "8", "--batch", "1", "--threads", "1", "--no-progress", "--seed", "3"]


def command(app: str, *args: str) -> list[str]:
    return [sys.executable, "-c", f"import ddrf.cli as c; c.{app}()", *map(str, args)]


def limited(kbytes: int):
    """preexec_fn: a file-size limit (as `ulimit -f`), so a write fails part-way with EFBIG."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (kbytes * 1024, kbytes * 1024))
    return apply


def stray(folder: Path) -> list[str]:
    """Temporaries and locks a run must not leave behind."""
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def one_line_naming(stderr: str, name: str, problem: str) -> bool:
    return any(name in line and problem in line for line in stderr.splitlines()) and "Traceback" not in stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(TINY_MODEL, tmp_path_factory.mktemp("faults") / "model"))


@pytest.fixture(scope="module")
def reference(model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """An uninterrupted multi-window run (and how long it took)."""
    out = tmp_path_factory.mktemp("reference")
    start = time.perf_counter()
    proc = subprocess.run(command("run_app", SAMPLE, "-o", out, "--model", model, *KILL_ARGS), env=ENV,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out / f"{SAMPLE.name}.tif", time.perf_counter() - start


def test_ddrf_run_disk_full_then_room(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = command("run_app", SAMPLE, "-o", out, "--method", "Brovey", "--no-progress")
    full = subprocess.run(args, env=ENV, capture_output=True, text=True, preexec_fn=limited(200))
    assert full.returncode == 1, full.stderr
    assert one_line_naming(full.stderr, f"{SAMPLE.name}.tif", "cannot write the output"), full.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ddrf-run-summary.json"]  # no raster, report or temporary
    room = subprocess.run(args, env=ENV, capture_output=True, text=True)
    assert room.returncode == 0, room.stderr
    assert (out / f"{SAMPLE.name}.tif").is_file() and not stray(out)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_gives_the_uninterrupted_output(model: Path, reference: tuple[Path, float],
                                                                         tmp_path: Path) -> None:
    expected, seconds = reference
    args_for = lambda out: command("run_app", SAMPLE, "-o", out, "--model", model, *KILL_ARGS)  # noqa: E731
    mid_write = 0
    for k, moment in enumerate((0.3, 0.55, 0.8, 0.95)):
        out = tmp_path / f"kill{k}"
        proc = subprocess.Popen(args_for(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(moment * seconds)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        final = out / expected.name
        assert not final.exists() or np.array_equal(read(final), read(expected))  # whole or absent, never partial
        mid_write += any(name.endswith(".ddrf-part") for name in stray(out))
        rerun = subprocess.run(args_for(out), env=ENV, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        np.testing.assert_array_equal(read(final), read(expected))
        assert not stray(out), stray(out)
    assert mid_write >= 1  # at least one kill landed while the raster was being written


def test_sigterm_removes_the_temporaries(model: Path, reference: tuple[Path, float], tmp_path: Path) -> None:
    out = tmp_path / "term"
    proc = subprocess.Popen(command("run_app", SAMPLE, "-o", out, "--model", model, *KILL_ARGS), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob(".*.ddrf-part")) and time.time() < deadline:  # wait until it is writing
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert not stray(out) and not (out / reference[0].name).exists(), stray(out)


def test_two_runs_on_one_output_never_touch_each_others_work(model: Path, reference: tuple[Path, float],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "twice"
    args = command("run_app", SAMPLE, "-o", out, "--model", model, *KILL_ARGS)
    first = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob(".*.ddrf-part")) and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # hold the first mid-write, so the second surely meets it (no timing race)
    try:
        second = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err  # the first was not disturbed
    assert second.returncode == 1 and one_line_naming(second.stderr, reference[0].name, "another process"), \
        second.stderr
    np.testing.assert_array_equal(read(out / reference[0].name), read(reference[0]))
    assert not stray(out)


# ------------------------------------------------------------------ training side (needs torch)
@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from test_train import tiny

    from ddrf.train.loop import train

    run = tmp_path_factory.mktemp("train") / "run"
    train(tiny(f"fusebox:{ROOT / 'tests' / 'data' / 'landsat7'}", "optim.steps=4", "optim.batch=2"), run,
          stop_at=2)
    return run


TRAIN_ARGS = ["configs/landsat7_small_cpu.yaml", "data.source=fusebox:tests/data/landsat7", "data.patch=16",
              "model.overrides={base_width: 8, channel_mults: [1, 2], time_dim: 32, dropout: 0.0}", "optim.batch=2",
              "optim.steps=3", "optim.threads=1", "optim.device=cpu", "log.progress=false"]


def test_ddrf_train_checkpoint_disk_full_then_room(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "run"
    full = subprocess.run(command("train_app", *TRAIN_ARGS, "--out", run), env=ENV, cwd=ROOT, capture_output=True,
                          text=True, preexec_fn=limited(40))
    assert full.returncode == 1, full.stderr
    assert one_line_naming(full.stderr, "model.safetensors", "cannot write"), full.stderr
    assert not (run / "model.safetensors").exists() and not (run / "resume.pt").exists() and not stray(run)
    room = subprocess.run(command("train_app", *TRAIN_ARGS, "--out", run, "--overwrite"), env=ENV, cwd=ROOT,
                          capture_output=True, text=True)
    assert room.returncode == 0, room.stderr
    assert (run / "model.safetensors").is_file() and (run / "resume.pt").is_file() and not stray(run)


def test_ddrf_export_disk_full_then_room(short_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = command("export_app", "onnx", short_run, "-o", out, "--no-fp16")
    full = subprocess.run(args, env=ENV, capture_output=True, text=True, preexec_fn=limited(60))
    assert full.returncode == 1, full.stderr
    assert one_line_naming(full.stderr, ".onnx", "cannot write"), full.stderr
    assert not out.exists() or not any(out.iterdir())  # no graph, no card, no temporary
    room = subprocess.run(args, env=ENV, capture_output=True, text=True)
    assert room.returncode == 0, room.stderr
    assert (out / "card.json").is_file() and not stray(out)


class Planted:
    """What an attacker pickles: unpickling calls Path.touch on a marker file (any callable would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_malicious_resume_state_is_refused(short_run: Path, tmp_path: Path) -> None:
    from ddrf.train.checkpoint import RESUME, load_resume

    run = Path(shutil.copytree(short_run, tmp_path / "run"))
    assert load_resume(run)["step"] == 2  # our own resume state loads with weights_only=True
    marker = tmp_path / "pwned"
    import torch

    torch.save({"step": 2, "payload": Planted(marker)}, run / RESUME)
    with pytest.raises(ValueError, match="refused or unreadable resume state"):
        load_resume(run)
    assert not marker.exists()  # the planted code never ran
    with open(run / RESUME, "wb") as f:  # a plain pickle, not even a torch file
        pickle.dump(Planted(marker), f)
    with pytest.raises(ValueError, match=RESUME):
        load_resume(run)
    assert not marker.exists()


# ------------------------------------------------------------------ SIGTERM before the run loop's own stop
DURING = """
import importlib, os, resource, signal, sys

module_name, name = sys.argv[1].split(":")  # the call during which the fault comes, the first time it is made
fault = sys.argv[2]  # sigterm: a real SIGTERM to itself; a number: the file-size limit (as ulimit -f) in bytes
module = importlib.import_module(module_name)
real = getattr(module, name)

def hooked(*args, **kwargs):
    if not getattr(hooked, "done", False):
        hooked.done = True
        if fault == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(fault), int(fault)))
    return real(*args, **kwargs)

setattr(module, name, hooked)
sys.argv = ["ddrf-run", *sys.argv[3:]]
import ddrf.cli
ddrf.cli.run_app()
"""


def during(call: str, fault: str, *args: object) -> subprocess.CompletedProcess[str]:
    """ddrf-run `args`, meeting `fault` (DURING) as `call` ("module:function") is first made."""
    return subprocess.run([sys.executable, "-c", DURING, call, fault, *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=300)


def sigterm_during(call: str, *args: object) -> subprocess.CompletedProcess[str]:
    """ddrf-run `args`, sent a real SIGTERM by itself as `call` is first made."""
    return during(call, "sigterm", *args)


def abandoned_with_summary(proc: subprocess.CompletedProcess[str], out: Path) -> list[str]:
    assert proc.returncode == 1 and "Aborted" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    return [e["status"] for e in json.loads((out / "ddrf-run-summary.json").read_text())["scenes"]]


def test_sigterm_while_the_model_loads_is_the_documented_stop(model: Path, tmp_path: Path) -> None:
    """A SIGTERM during the model's preload, before the run loop's handler is in place, ended in exit 130 with no
    summary (a batch) and no `stopped` line (a watcher). Now it is the SIGTERM of a running ddrf-run: a batch
    abandons its scenes and writes its summary (exit 1); a watcher says `stopped` (exit 0, no scene failed)."""
    out = tmp_path / "out"
    batch = sigterm_during("ddrf.scenes.engines:get_engine", SAMPLE, "-o", out, "--model", model, *KILL_ARGS)
    assert abandoned_with_summary(batch, out) == ["abandoned"]
    assert sorted(p.name for p in out.iterdir()) == ["ddrf-run-summary.json"], stray(out)
    inbox, watched = tmp_path / "inbox", tmp_path / "watched"
    shutil.copytree(SAMPLE, inbox / "a")
    watch = sigterm_during("ddrf.scenes.engines:get_engine", "--watch", inbox, "-o", watched, "--model", model,
                           "--settle", "0", "--log-format", "json", *KILL_ARGS)
    events = [json.loads(line) for line in watch.stderr.splitlines() if line.startswith("{")]
    assert watch.returncode == 0 and "Aborted" not in watch.stderr, watch.stderr
    assert events[-1]["event"] == "stopped" and events[-1]["signal"] == "SIGTERM", watch.stderr
    assert not list(watched.glob("*.tif")) and not stray(watched), stray(watched)


@pytest.mark.parametrize("call", ["ddrf.scenes.distributed:connect", "distributed:as_completed"])
def test_sigterm_before_or_while_a_dask_cluster_runs_the_scenes(model: Path, tmp_path: Path, call: str) -> None:
    """--scheduler: a SIGTERM while connecting (before any scene is sent) or once the scenes are on the cluster ends
    as in a local batch: the scenes not back are abandoned, the summary written, exit 1."""
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        proc = sigterm_during(call, SAMPLE, "-o", out, "--method", "Brovey", "--scheduler", c.scheduler_address,
                              "--no-progress")
    assert abandoned_with_summary(proc, out) == ["abandoned"]


def test_a_full_disk_at_the_run_summary_is_one_line_and_the_closing_list(tmp_path: Path) -> None:
    """The disk full (here a file-size limit) when the run summary is written, after the scenes: a long traceback,
    and no closing list of the outputs the run did publish. Now one line naming the summary, the list, exit 1."""
    out = tmp_path / "out"
    proc = during("ddrf.scenes.report:write_summary", "100", SAMPLE, "-o", out, "--method", "Brovey",
                  "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert one_line_naming(proc.stderr, "ddrf-run-summary.json", "cannot write the run summary"), proc.stderr
    assert f"done {out / SAMPLE.name}.tif" in proc.stderr, proc.stderr
    assert not (out / "ddrf-run-summary.json").exists() and not stray(out), stray(out)


CTRL_C_TWICE = """
import os, signal, sys
import ddrf.scenes.jobs as jobs
import ddrf.scenes.writer as writer

fuse_into, abort = jobs.fuse_into, writer.RasterSink.abort

def first(*args, **kwargs):  # Ctrl-C once the output's temporary is open
    os.kill(os.getpid(), signal.SIGINT)
    return fuse_into(*args, **kwargs)

def again(self):  # and again while the scene unwinds, before its temporary is removed
    os.kill(os.getpid(), signal.SIGINT)
    return abort(self)

jobs.fuse_into, writer.RasterSink.abort = first, again
sys.argv = ["ddrf-run", *sys.argv[1:]]
import ddrf.cli
ddrf.cli.run_app()
"""


def test_ctrl_c_twice_still_unwinds_the_scene_and_writes_the_summary(tmp_path: Path) -> None:
    """A second Ctrl-C while the first unwinds cut the clean-up short: the output's temporary was left, and (later
    in the unwinding) the summary was not written, exit 130. Now it is ignored until the run has unwound."""
    out = tmp_path / "out"
    # SIGINT as on a terminal: a test run started in the background (CI, `cmd &`) has it ignored, and a child inherits
    # that, so ddrf-run rightly installs no Ctrl-C handler and the run finished (exit 0)
    proc = subprocess.run([sys.executable, "-c", CTRL_C_TWICE, SAMPLE, "-o", out, "--method", "Brovey",
                           "--no-progress"], env=ENV, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert abandoned_with_summary(proc, out) == ["abandoned"]
    assert sorted(p.name for p in out.iterdir()) == ["ddrf-run-summary.json"], stray(out)


def test_a_catalogue_the_full_disk_refuses_names_the_catalogue_not_the_item(tmp_path: Path) -> None:
    """The disk full (a file-size limit) as the Item is linked into --stac-catalog: the scene failed with
    `OUT/X.tif: STAC Item not written (...)`, though the Item was written and only the catalogue was not. Now the line
    names the catalogue and the Item it lacks; the next run with room links it."""
    out, catalog = tmp_path / "out", tmp_path / "cat"
    args = [SAMPLE, "-o", out, "--method", "Brovey", "--stac-catalog", catalog, "--no-progress"]
    full = during("ddrf.scenes.stac_out:add_to_catalog", "100", *args)
    item = f"{SAMPLE.name}.item.json"
    assert full.returncode == 1, full.stderr
    assert one_line_naming(full.stderr, str(catalog / "catalog.json"), f"{item} not linked"), full.stderr
    assert "STAC Item not written" not in full.stderr and (out / item).is_file()
    assert not catalog.exists() or not any(catalog.iterdir())  # no catalogue, temporary or lock
    room = subprocess.run(command("run_app", *args), env=ENV, capture_output=True, text=True)
    assert room.returncode == 0 and item in (catalog / "catalog.json").read_text(), room.stderr
