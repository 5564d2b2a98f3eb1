"""Fan scenes out over a Dask distributed cluster: one task per scene, each worker loading the model once.

The worker-level cache is ddrf.scenes.engines' module dict of Fusers (keyed by model, backend, steps, threads):
a worker process imports the module once and keeps it, so every scene it runs after the first reuses the sessions.
Scenes are independent and write their own files atomically, so a lost worker costs only its scene.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any, Callable

from ddrf.scenes.engines import EngineSpec
from ddrf.scenes.jobs import SceneJob, run_job
from ddrf.scenes.streaming import RunSettings

if TYPE_CHECKING:
    from distributed import Client


class SchedulerUnreachable(RuntimeError):
    """No Dask scheduler answers at the address given (or Dask's distributed package is not installed)."""


def connect(address: str) -> "Client":
    """A client of the scheduler at `address`, within Dask's connect timeout (distributed.comm.timeouts.connect,
    30 s by default; DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT sets it)."""
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerUnreachable("--scheduler needs Dask's distributed package: pip install 'ddrf-edge[dist]'")
    try:
        return Client(address)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:  # refused, timed out, or not an address
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SchedulerUnreachable(f"--scheduler {address}: no Dask scheduler answers there ({reason})") from None


def run_on_cluster(client: "Client", jobs: list[SceneJob], spec: EngineSpec, settings: RunSettings,
                   done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run `jobs` through `client` (its caller's, connected once: `connect`); returns one entry per job, in the order
    given. After SIGTERM (also one before the scenes were sent) the scenes not back yet are cancelled and
    `abandoned`, as in a local batch."""
    from distributed import as_completed

    from ddrf.scenes.progress import GracefulStop

    settings = dataclasses.replace(settings, progress=False)  # no tile bars on workers
    run_id = uuid.uuid4().hex[:8]
    entries: dict[int, dict[str, Any]] = {}
    with GracefulStop() as stop:
        futures = {} if stop.requested else {
            client.submit(run_job, job, spec, settings, key=f"ddrf-run-{run_id}-{i}", pure=False): i
            for i, job in enumerate(jobs)}
        waiting = as_completed(futures)
        while not (waiting.is_empty() or stop.requested):
            for future in waiting.next_batch(block=False):
                entries[futures[future]] = result_of(future, jobs[futures[future]])
                if done is not None:
                    done(entries[futures[future]])
            stop.idle(stop.IDLE_SLICE_S)  # as_completed's own wait would not see the stop
        client.cancel([future for future, i in futures.items() if i not in entries])
    return [entries.get(i) or cancelled(job) for i, job in enumerate(jobs)]


def result_of(future: Any, job: SceneJob) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # the worker died or the task could not run
        return {"name": job.name, "source": job.source, "output": str(job.raster), "status": "failed",
                "error": f"{job.source}: worker failed ({exc})"}


def cancelled(job: SceneJob) -> dict[str, Any]:
    """A scene not back when SIGTERM came: a task already running goes on (Dask cannot interrupt it), publishing its
    files whole or not at all."""
    from ddrf.scenes.runner import abandoned

    return {**abandoned(job), "error": "stopped by SIGTERM before the cluster returned it; a worker already fusing "
                                       "it finishes it, publishing it whole or not at all"}
