"""STAC Item input at a ground station: a failing Item scene's one line names the asset file at fault, not the band
wrapper VRT in OUT/.ddrf-stac/ (which the failure removes, so the named file would not even exist)."""
from __future__ import annotations

import json
from pathlib import Path

import rasterio
from rasterio.windows import Window
from stac_fixtures import landsat_item, make_cogs
from typer.testing import CliRunner

from ddrf.scenes.command import app


def test_an_asset_of_another_size_is_named_in_the_error(tmp_path: Path) -> None:
    cogs = make_cogs(tmp_path / "cogs")
    nir = tmp_path / "cogs" / "LC08_B5.TIF"
    with rasterio.open(nir) as src:  # a NIR asset of another size: a cut-off download re-tiled, another grid
        window = Window(0, 0, src.width // 2, src.height // 2)
        profile = {**src.profile, "width": window.width, "height": window.height,
                   "transform": src.window_transform(window), "tiled": False}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        data = src.read(window=window)
    with rasterio.open(nir, "w", **profile) as dst:
        dst.write(data)
    item = tmp_path / "item.json"
    item.write_text(json.dumps(landsat_item(cogs, str(tmp_path / "cogs"))))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(item), "-o", str(out), "--method", "GSA", "--threads", "1"])
    assert result.exit_code == 1, result.output
    error = json.loads((out / "ddrf-run-summary.json").read_text())
    failed = [line for line in result.output.splitlines() if "failed LC08" in line]
    assert failed and failed[0].endswith(f"{nir}: MS grid differs from LC08_B2.TIF (geotransform or size)"), \
        result.output  # before: OUT/.ddrf-stac/<id>/ms_nir.vrt: ... from ms_blue.vrt
    assert [e["error"] for e in error["scenes"]] == [failed[0].split("failed LC08_L1TP_020039_20150804: ")[1]]
    assert [e["source"] for e in error["scenes"]] == [str(item)]  # was the removed wrapper OUT/.ddrf-stac/<id>/pan.vrt
    assert not (out / ".ddrf-stac").exists()


def test_an_item_missing_an_asset_fails_alone_in_a_batch(tmp_path: Path) -> None:
    """One Item's NIR file is absent: that scene fails with one line naming the Item and the file, recorded in the
    run summary; the other Item is fused (before: a usage error, exit 2, nothing fused)."""
    from test_output_guards import write_item

    good = write_item(tmp_path / "items" / "good.json", item_id="good")
    gone = tmp_path / "items" / "missing_B5.TIF"
    part = write_item(tmp_path / "items" / "part.json", item_id="part", B5=gone)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(good), str(part), "-o", str(out), "--method", "GSA", "--no-progress"])
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "ddrf-run-summary.json").read_text())
    status = {e["name"]: (e["status"], e.get("error", "")) for e in summary["scenes"]}
    assert status["good"][0] == "done" and (out / "good.tif").is_file()
    assert status["part"][0] == "failed" and status["part"][1].startswith(f"{part}: nir asset {gone}: cannot open")
    assert [line for line in result.output.splitlines() if status["part"][1] in line], result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in (out / ".ddrf-stac").iterdir()) == ["good"]  # the failed Item's wrappers went


def test_an_item_scene_is_named_by_its_item_id(tmp_path: Path) -> None:
    """The scene's plan line and its report's scene.name said `pan` (the PAN band wrapper's name) for every Item."""
    from test_output_guards import write_item

    item = write_item(tmp_path / "items" / "x.json", item_id="LC08_pass_7")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(item), "-o", str(out), "--method", "GSA", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "ddrf-run: LC08_pass_7: 256 x 512 PAN px" in result.output, result.output
    assert json.loads((out / "LC08_pass_7.json").read_text())["scene"]["name"] == "LC08_pass_7"
