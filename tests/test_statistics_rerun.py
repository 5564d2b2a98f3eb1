"""A rerun into a finished output keeps it only when it was made with the --statistics-from this run asks for:
another scene's normalisation gives other pixels (the seams --statistics-from exists to remove)."""
from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from ddrf.scenes.command import app
from scenes_fixtures import SAMPLE, TINY_MODEL


def run(scene: Path, out: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(scene), "-o", str(out), "--model", str(TINY_MODEL), "--no-progress",
                                      "--threads", "1", *options])
    return result.exit_code, result.output


def test_a_rerun_with_other_statistics_is_refused_not_skipped(tmp_path: Path) -> None:
    scene, other, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    shutil.copytree(SAMPLE, scene)
    shutil.copytree(SAMPLE, other)
    assert run(scene, out, "--statistics-from", str(other))[0] == 0
    code, output = run(scene, out)  # its own statistics now: the output on disk is not what is asked
    assert code == 1 and f"statistics (from {other}, asked its own scene)" in output, output
    assert run(scene, out, "--statistics-from", str(other))[0] == 0  # the same reference: kept
    code, output = run(scene, tmp_path / "own")
    assert code == 0
    code, output = run(scene, tmp_path / "own", "--statistics-from", str(scene))  # itself: the plain run's pixels
    assert code == 0 and "finished output exists" in output, output
