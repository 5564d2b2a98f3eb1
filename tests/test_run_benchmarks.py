"""benchmarks/run_benchmarks.py --only: the page block renders the sections that ran and leaves out the others."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports doc_blocks beside it
SPEC = importlib.util.spec_from_file_location("run_benchmarks", ROOT / "benchmarks" / "run_benchmarks.py")
assert SPEC and SPEC.loader
run_benchmarks = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(run_benchmarks)


def test_a_run_of_some_sections_renders_without_the_others(tmp_path: Path) -> None:
    data = {"facts": {"params": 1e6, "encode_flops_256": 1e9, "denoise_flops_256": 1e10}, "environment": {},
            "common": {"tile": 256, "steps": 1, "runs": 1, "warmup": 0, "threads": 2}, "created": "now",
            "command": "python benchmarks/run_benchmarks.py --only f", "minutes": 0.1, "reps": 1,
            "load_before": [0.0], "load_after": [0.0], "model_text": "a model\n", "matmul_gflops": 100.0}
    page = tmp_path / "BENCHMARKS.md"
    run_benchmarks.write_report(page, data)
    text = page.read_text()
    assert "### (f) Achieved GFLOP/s" in text and "100.0 GFLOP/s" in text
    assert "### (a)" not in text and "### (e)" not in text
