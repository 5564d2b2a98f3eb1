"""ddrf-run throughput and memory where users run it, side by side in one run; writes a block of docs/BENCHMARKS.md.

    python benchmarks/scene_throughput.py                            # 2048 x 2048 PAN, 3 alternated repetitions
    python benchmarks/scene_throughput.py --before /tmp/before13     # also an older checkout, alternated with this one

In one process, every command in its own child (its peak RSS is its own, from wait4):
- throughput (PAN megapixels per wall-clock second of the whole command) of the default `ddrf-run`, of
  `ddrf-run --method MTF-GLP-HPM`, of `gdal_pansharpen.py -r cubic` (when GDAL's script is installed) and, with
  --before, of `ddrf-run` from another checkout (PYTHONPATH), on one scene mirrored from the sample scene; the
  commands alternate within each repetition (the order rotates), so load drifts fall on all of them;
- the numpy fp32 matmul rate (2048^3, median of 7, BLAS threads = --threads or all cores), measured before and
  after the repetitions: every throughput is also given per matmul GFLOP/s, comparable across machines;
- peak RSS of the default `ddrf-run` against the scene width (--memory sizes).
The machine may be shared: the load average is recorded before and after, and only ratios within a run are meant
to be compared.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from doc_blocks import write_block  # noqa: E402
from run_benchmarks import LANDSAT_FILES, make_scene  # noqa: E402

DDRF_RUN = Path(sys.executable).with_name("ddrf-run")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> float:
    return os.getloadavg()[0]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one child process."""
    start, before = time.perf_counter(), load()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    error = proc.stderr.read().decode(errors="replace")[-400:] if proc.stderr else ""
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024,
            "exit": os.waitstatus_to_exitcode(status), "load": before, "error": error if status else ""}


def matmul_gflops(threads: int | None, n: int = 2048, repeats: int = 7) -> float:
    """Median fp32 numpy matmul rate in a fresh process (median, like the throughputs it normalises)."""
    code = (f"import numpy as np, time, statistics; a = np.random.rand({n}, {n}).astype(np.float32); b = a.T.copy();"
            f" a @ b; ts = [(lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter())"
            f" for _ in range({repeats})]; print(2 * {n} ** 3 / statistics.median(ts) / 1e9)")
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                check=True).stdout)


def ddrf_run(code: Path, scene: Path, out: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=str(code))
    return [str(DDRF_RUN), str(scene), "-o", str(out), "--no-progress", "--overwrite", *args], env


def gdal_command(scene: Path, out: Path, threads: int | None) -> list[str] | None:
    script = shutil.which("gdal_pansharpen.py")
    if script is None:
        return None
    name = scene.name.replace("LC8_SYNTH_", "")
    bands = [str(next(scene.glob(f"*_{LANDSAT_FILES[b]}.TIF"))) for b in ("blue", "green", "red", "nir")]
    pan = str(next(scene.glob(f"*_{LANDSAT_FILES['pan']}.TIF")))
    return [script, pan, *bands, str(out / f"gdal_{name}.tif"), "-r", "cubic", "-threads", str(threads or "ALL_CPUS"),
            "-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", "-q"]


def commands(scene: Path, tmp: Path, threads: int | None, before: Path | None,
             tilings: list[tuple[int, int]] | None = None, model: Path | None = None,
             others: list[Path] | None = None) -> dict[str, Any]:
    """Name -> (argv, env) of every contender on `scene`; `tilings`: (tile, halo) runs of this checkout besides
    its defaults; `model`: every ddrf-run fuses with it (default: the bundled model that fits the scene); `others`:
    this checkout with each of these models as well, its default window."""
    threads_only = ["--threads", str(threads)] if threads else []
    thread_args = threads_only + (["--model", str(model)] if model else [])
    runs: dict[str, Any] = {"ddrf-run (this checkout)": ddrf_run(ROOT, scene, tmp / "after", thread_args),
                            "ddrf-run --method MTF-GLP-HPM": ddrf_run(ROOT, scene, tmp / "mtf",
                                                                       ["--method", "MTF-GLP-HPM"])}
    for tile, halo in tilings or []:
        runs[f"ddrf-run --tile {tile} --halo {halo}"] = ddrf_run(
            ROOT, scene, tmp / f"t{tile}h{halo}", [*thread_args, "--tile", str(tile), "--halo", str(halo)])
    for k, other in enumerate(others or []):
        runs[f"ddrf-run --model {other}"] = ddrf_run(ROOT, scene, tmp / f"other{k}",
                                                     [*threads_only, "--model", str(other)])
    if before is not None:
        runs[f"ddrf-run ({before})"] = ddrf_run(before, scene, tmp / "before", thread_args)
    gdal = gdal_command(scene, tmp, threads)
    if gdal is not None:
        runs["gdal_pansharpen.py -r cubic"] = (gdal, None)
    return runs


def report_figures(out: Path, scene: Path) -> dict[str, float | None]:
    """From ddrf-run's report: PAN pixels the model ran per output pixel (windows fused x window area / scene area:
    1 + the halo overhead; a staged model's stage 3 only), and the seconds the model ran (`timings_s.fuse`, plus
    `scene_pass`: the scene statistics and a staged model's stages 1 and 2)."""
    report = out / f"{scene.name}.json"
    if not report.is_file():
        return {"window_work": None, "model_s": None}
    doc = json.loads(report.read_text())
    tiling, size = doc["tiling"], doc["scene"].get("fused_window", doc["scene"])  # older reports: the PAN grid
    work = (tiling["windows_fused"] * tiling["tile"][0] * tiling["tile"][1] / (size["height"] * size["width"])
            if "windows_fused" in tiling else None)  # older reports lack it
    seconds = doc.get("timings_s", {})
    model_s = None if "fuse" not in seconds else seconds["fuse"] + seconds.get("scene_pass", 0.0)
    return {"window_work": work, "model_s": model_s}


def throughput(scene: Path, tmp: Path, reps: int, threads: int | None, before: Path | None,
               tilings: list[tuple[int, int]], model: Path | None = None,
               others: list[Path] | None = None) -> dict[str, Any]:
    runs = commands(scene, tmp, threads, before, tilings, model, others)
    names = list(runs)
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            log(f"rep {rep + 1}/{reps}: {name}")
            results[name].append(timed(*runs[name]))
            out = Path(runs[name][0][runs[name][0].index("-o") + 1]) if "-o" in runs[name][0] else None
            results[name][-1].update(report_figures(out, scene) if out else {})
    return {"commands": {n: " ".join(runs[n][0]) for n in names}, "results": results}


def outputs_equal(tmp: Path, scene: Path) -> dict[str, Any] | None:
    """Largest difference between this checkout's and the --before checkout's raster (DN)."""
    import numpy as np
    import rasterio

    a, b = tmp / "after" / f"{scene.name}.tif", tmp / "before" / f"{scene.name}.tif"
    if not (a.is_file() and b.is_file()):
        return None
    with rasterio.open(a) as x, rasterio.open(b) as y:
        diff = np.abs(x.read().astype(np.int64) - y.read().astype(np.int64))
    return {"max_abs_dn": int(diff.max()), "pixels_differing": int((diff > 0).any(axis=0).sum())}


def memory(sizes: list[tuple[int, int]], tmp: Path, threads: int | None, before: Path | None,
           model: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    args = (["--threads", str(threads)] if threads else []) + (["--model", str(model)] if model else [])
    for height, width in sizes:
        scene = make_scene(tmp / "memory", height, width)
        for label, code in [("this checkout", ROOT)] + ([(str(before), before)] if before else []):
            log(f"memory {width}x{height}: {label}")
            run = timed(*ddrf_run(code, scene, tmp / "memory-out", args))
            rows.append({"width": width, "height": height, "code": label, **run})
            shutil.rmtree(tmp / "memory-out", ignore_errors=True)
        shutil.rmtree(scene)
    return rows


def summarise(runs: list[dict[str, Any]], megapixels: float) -> dict[str, Any]:
    ok = [r for r in runs if r["exit"] == 0]
    if not ok:
        return {"runs": len(runs), "error": runs[0]["error"] if runs else "not run"}
    wall = statistics.median(r["wall_s"] for r in ok)
    shares = [r["model_s"] / r["wall_s"] for r in ok if r.get("model_s")]
    return {"runs": len(ok), "wall_s": [round(r["wall_s"], 2) for r in ok], "median_wall_s": wall,
            "mp_per_s": megapixels / wall, "median_cpu_s": statistics.median(r["cpu_s"] for r in ok),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in ok), "window_work": ok[0].get("window_work"),
            "model_share": statistics.median(shares) if shares else None}


def markdown(data: dict[str, Any]) -> str:
    mm = statistics.median(data["matmul_gflops"])
    lines = ["## Scene throughput and memory (benchmarks/scene_throughput.py)\n",
             f"Generated {data['created']} by `{data['command']}` ({data['minutes']:.1f} min). Load average "
             f"(1 min) {data['load_before']:.1f} before, {data['load_after']:.1f} after, on {os.cpu_count()} cores; "
             f"numpy fp32 matmul {', '.join(f'{g:.1f}' for g in data['matmul_gflops'])} GFLOP/s (before, after; "
             f"median of 7 each). Scene: the sample scene mirrored to {data['scene']} PAN ({data['megapixels']:.2f} "
             f"MP), {data['reps']} repetitions, the order of the commands rotating. MP/s = PAN megapixels over the "
             "median wall time of the whole command (start-up and model load included); model % = the model's seconds "
             "(the report's `timings_s.fuse`) over that command's wall time, median over the runs.\n",
             "| command | runs | wall s (each) | MP/s | MP/s per matmul GFLOP/s (x1000) | median CPU s "
             "| peak RSS MiB | model px per output px | model % of wall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in data["throughput"].items():
        if "error" in s:
            lines.append(f"| {name} | 0 | failed: {s['error'][-80:]!r} | | | | | | |")
            continue
        work = f"{s['window_work']:.2f}" if s.get("window_work") else ""
        share = f"{100 * s['model_share']:.1f}" if s.get("model_share") else ""
        lines.append(f"| {name} | {s['runs']} | {', '.join(f'{w:.1f}' for w in s['wall_s'])} | {s['mp_per_s']:.3f} "
                     f"| {1000 * s['mp_per_s'] / mm:.2f} | {s['median_cpu_s']:.1f} | {s['peak_rss_mib']:.0f} | {work} "
                     f"| {share} |")
    ref = data["throughput"].get("ddrf-run (this checkout)", {})
    lines.append("")
    for name, s in data["throughput"].items():
        if "mp_per_s" in s and "mp_per_s" in ref and name != "ddrf-run (this checkout)":
            lines.append(f"- this checkout's ddrf-run / {name}: **x{ref['mp_per_s'] / s['mp_per_s']:.2f}** "
                         "throughput (median wall against median wall, same run).")
    if data.get("equal"):
        lines.append(f"- Output of this checkout against --before: max |difference| {data['equal']['max_abs_dn']} DN, "
                     f"{data['equal']['pixels_differing']} pixels differ.")
    lines += ["\nCommands:", *[f"- `{c}`" for c in data["commands"].values()]]
    if data["memory"]:
        lines += ["\n### Peak RSS against scene size (default ddrf-run, one run each)\n",
                  "| PAN width x height | code | peak RSS MiB | wall s | load |", "|---|---|---|---|---|"]
        lines += [f"| {r['width']} x {r['height']} | {r['code']} | {r['peak_rss_mib']:.0f} | {r['wall_s']:.0f} | "
                  f"{r['load']:.1f} |" if r["exit"] == 0 else f"| {r['width']} x {r['height']} | {r['code']} | "
                  f"failed | | |" for r in data["memory"]]
    return "\n".join(lines)


def parse_tiling(text: str) -> tuple[int, int]:
    tile, halo = (int(v) for v in text.split("/"))
    return tile, halo


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="2048x2048", help="PAN WIDTHxHEIGHT of the throughput scene")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, help="--threads for ddrf-run and GDAL, BLAS threads (default: all)")
    p.add_argument("--before", type=Path, help="another checkout's root, run alternately (PYTHONPATH)")
    p.add_argument("--tilings", default="", help="TILE/HALO,... : also this checkout at these windows")
    p.add_argument("--model", type=Path, help="every ddrf-run fuses with this model directory (default: bundled)")
    p.add_argument("--also-model", type=Path, action="append", default=[],
                   help="also ddrf-run --model DIR, alternated with the rest (repeatable)")
    p.add_argument("--memory", default="2048x2048,16384x512,8192x8192", help="WxH scenes for the RSS table ('' none)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    started = time.perf_counter()
    data: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reps": args.reps,
                            "command": "python benchmarks/scene_throughput.py " + " ".join(argv),
                            "load_before": load(), "scene": args.size}
    data["matmul_gflops"] = [matmul_gflops(args.threads)]
    with tempfile.TemporaryDirectory(prefix="ddrf-throughput-") as name:
        tmp = Path(name)
        height, width = parse_size(args.size)
        scene = make_scene(tmp / "scene", height, width)
        data["megapixels"] = height * width / 1e6
        measured = throughput(scene, tmp, args.reps, args.threads, args.before,
                              [parse_tiling(t) for t in args.tilings.split(",") if t], args.model,
                              args.also_model)
        data["commands"] = measured["commands"]
        data["throughput"] = {n: summarise(r, data["megapixels"]) for n, r in measured["results"].items()}
        data["raw"] = measured["results"]
        data["equal"] = outputs_equal(tmp, scene) if args.before else None
        data["matmul_gflops"].append(matmul_gflops(args.threads))
        sizes = [parse_size(s) for s in args.memory.split(",") if s]
        data["memory"] = memory(sizes, tmp, args.threads, None, args.model)
    data["load_after"], data["minutes"] = load(), (time.perf_counter() - started) / 60
    write_block(args.out, "scene_throughput", markdown(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
