"""Fan scenes out over a Dask distributed cluster: one task per scene, each worker loading the model once.

The worker-level cache is ddrf.scenes.engines' module dict of Fusers (keyed by model, backend, steps, threads):
a worker process imports the module once and keeps it, so every scene it runs after the first reuses the sessions.
Scenes are independent and write their own files atomically, so a lost worker costs only its scene.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Callable

from ddrf.scenes.engines import EngineSpec
from ddrf.scenes.jobs import SceneJob, run_job
from ddrf.scenes.streaming import RunSettings


def run_on_cluster(address: str, jobs: list[SceneJob], spec: EngineSpec, settings: RunSettings,
                   done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run `jobs` on the scheduler at `address`; returns one entry per job, in the order given."""
    from distributed import Client, as_completed

    settings = dataclasses.replace(settings, progress=False)  # no tile bars on workers
    run_id = uuid.uuid4().hex[:8]
    entries: dict[int, dict[str, Any]] = {}
    with Client(address, timeout="30s") as client:
        futures = {client.submit(run_job, job, spec, settings, key=f"ddrf-run-{run_id}-{i}", pure=False): i
                   for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                entry = future.result()
            except Exception as exc:  # the worker died or the task could not run
                entry = {"name": jobs[i].name, "source": jobs[i].source, "output": str(jobs[i].raster),
                         "status": "failed", "error": f"{jobs[i].source}: worker failed ({exc})"}
            entries[i] = entry
            if done is not None:
                done(entry)
    return [entries[i] for i in range(len(jobs))]
