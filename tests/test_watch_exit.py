"""Two promises of every `ddrf-run` invocation, kept by watch mode and by json logs too:

- the exit code: 0 all done, 1 some scene failed (the others ran), 2 usage. A watcher stopped by SIGTERM or SIGINT
  exits 1 when a scene it handled in this run failed (earlier runs' failures do not count), else 0;
- with `--log-format json` every message is one JSON object per line on stderr, usage errors (exit 2) included."""
from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from test_watch import WatchProcess, scene_state

from scenes_fixtures import SAMPLE


def bad_scene(folder: Path) -> Path:
    """A scene directory whose PAN is no raster: the watcher marks it failed at once, with its reason."""
    folder.mkdir()
    (folder / "x_B8.TIF").write_bytes(b"not a raster")
    return folder


def stopped_line(watcher: WatchProcess) -> dict[str, Any]:
    return next(e for e in watcher.events() if e["event"] == "stopped")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_watcher_that_saw_a_scene_fail_exits_1(tmp_path: Path, signum: signal.Signals) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    watcher = WatchProcess(inbox, out, tmp_path / "watch.log", "--method", "GSA", "--settle", "0")
    watcher.wait("watching", lambda: any(e["event"] == "watching" for e in watcher.events()))
    bad_scene(inbox / "bad")
    watcher.wait("bad fails", lambda: scene_state(watcher, "bad") == "failed")
    assert watcher.stop(signum) == 1, watcher.log.read_text()[-2000:]
    assert stopped_line(watcher)["failed"] == 1 and stopped_line(watcher)["signal"] == signum.name


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_watcher_with_only_earlier_failures_exits_0(tmp_path: Path, signum: signal.Signals) -> None:
    """A scene that failed in an earlier run is not retried, so this run handled no failure: exit 0."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    bad_scene(inbox / "bad")
    (out / "ddrf-watch-status.json").write_text(json.dumps({"scenes": {"bad": {
        "status": "failed", "source": str(inbox / "bad"), "reason": "x_B8.TIF: not a raster"}}}))
    watcher = WatchProcess(inbox, out, tmp_path / "watch.log", "--method", "GSA", "--settle", "0")
    watcher.wait("watching", lambda: any(e["event"] == "watching" for e in watcher.events()))
    assert watcher.stop(signum) == 0, watcher.log.read_text()[-2000:]
    assert not [e for e in watcher.events() if e["event"] == "scene"]  # the failed scene was not run again
    assert stopped_line(watcher)["failed"] == 1  # the status file still lists it


# ------------------------------------------------------------------ usage errors with --log-format json
def run_cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from ddrf.scenes.command import app

    return CliRunner().invoke(app, list(args))


def usage_cases(tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments, what the message must name): refusals of ddrf-run's own checks, early and late in the run."""
    (tmp / "inbox").mkdir()
    pan = next(SAMPLE.glob("*_B8.TIF"))
    return [
        (["--pan", str(pan), "-o", str(tmp / "x.tif"), "--method", "GSA"], "--ms MS.tif is missing"),
        ([str(SAMPLE), "-o", str(tmp / "out"), "--method", "GSA", "--bands", "red,,blue"], "--bands 'red,,blue'"),
        (["--watch", str(tmp / "inbox"), "-o", str(tmp / "out.tif"), "--method", "GSA"],
         f"{tmp / 'out.tif'}: with --watch, -o names an output directory"),
    ]


def test_usage_errors_are_one_json_line_in_json_mode(tmp_path: Path) -> None:
    for args, needle in usage_cases(tmp_path):
        result = run_cli(*args, "--log-format", "json")
        assert result.exit_code == 2, (args, result.output, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        record = json.loads(lines[0])
        assert record["event"] == "usage" and record["level"] == "error" and record["exit_code"] == 2, record
        assert needle in record["message"] and "time" in record, record

        # the plain-text mode is unchanged, with the same message (and one invocation's format does not leak into
        # the next one in the same process)
        plain = run_cli(*args)
        assert plain.exit_code == 2 and plain.stderr == f"ddrf-run: {record['message']}\n", plain.stderr


def test_unknown_log_format_is_a_plain_usage_line(tmp_path: Path) -> None:
    """Before the format is known, the refusal of the format itself can only be plain text."""
    result = run_cli(str(SAMPLE), "-o", str(tmp_path / "out"), "--method", "GSA", "--log-format", "yaml")
    assert result.exit_code == 2 and result.stderr.startswith("ddrf-run: unknown --log-format 'yaml'")


def json_records(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object (json.loads raises on a line of plain text)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_dry_run_in_json_mode_prints_only_json_lines(tmp_path: Path) -> None:
    """--dry-run --log-format json: the plan, the tile and halo notes and a scene's refusal are JSON records too,
    the plan with its numbers as fields; the text mode keeps its lines."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "inbox").mkdir()
    args = [str(SAMPLE), str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--dry-run", "--tile", "250",
            "--halo", "8", "--threads", "1"]
    result = run_cli(*args, "--log-format", "json")
    assert result.exit_code == 1, result.output
    records = json_records(result.stdout) + json_records(result.stderr)
    plan = next(r for r in records if r["event"] == "plan")
    assert plan["scene"] == SAMPLE.name and plan["windows"] >= 1 and plan["model"]["name"] == "landsat_ratio2"
    assert plan["fits"] is True and plan["output_bytes"] > 0 and SAMPLE.name in plan["message"]
    notes = [r["message"] for r in records if r["event"] == "note"]
    assert any("run as tile 256" in n for n in notes) and any("--halo 8 is below" in n for n in notes), notes
    assert any(r["event"] == "scene" and r["status"] == "failed" and "empty" in r["error"] for r in records)
    watch = run_cli("--watch", str(tmp_path / "inbox"), "-o", str(tmp_path / "out"), "--dry-run", "--method", "GSA",
                    "--log-format", "json")
    assert watch.exit_code == 0 and json_records(watch.stdout)[0]["scenes"] == 0, watch.output
    plain = run_cli(*args)
    assert plain.stdout.startswith(f"{SAMPLE.name}: 256 x 512 PAN px") and "ddrf-run: --tile 250" in plain.stderr
    assert not (tmp_path / "out").exists()
