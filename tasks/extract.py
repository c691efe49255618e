"""The extract stage inside a flow: every docs shard one Prefect task run, mapped over a task
runner (extraction/stage.py does the work).

`extract.workers` processes by default (Prefect's ProcessPoolTaskRunner; one vLLM engine and its
GPUs per worker), or the task runner `extract.task_runner` names ("module:Class", with
`extract.task_runner_options` as its arguments), e.g. a Dask cluster:

    extract:
      task_runner: prefect_dask:DaskTaskRunner       # pip install prefect-dask
      task_runner_options: {address: "tcp://scheduler:8786"}

One worker and no task runner: the shards run in this process. The warehouse is loaded by this
process alone, after every shard is written.
"""
from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from configs.schema import RunConfig
from extraction.stage import (MapShards, ShardJob, _claim_devices, device_claims, gpus_per_worker,
                              run_extract)


def extract_with_task_runner(cfg: RunConfig, run_dir: Path,
                             on_progress: Callable[[int, int], None] | None = None,
                             shards: str | None = None) -> dict[str, Any]:
    return run_extract(cfg, run_dir, on_progress, map_shards=task_runner_map(cfg), shards=shards)


def make_task_runner(cfg: RunConfig):
    """The configured Prefect task runner (a process pool of extract.workers by default)."""
    if cfg.extract.task_runner:
        module, _, name = cfg.extract.task_runner.partition(":")
        return getattr(importlib.import_module(module), name)(**cfg.extract.task_runner_options)
    from prefect.task_runners import ProcessPoolTaskRunner
    workers, gpus = cfg.extract.workers, gpus_per_worker(cfg)
    return ProcessPoolTaskRunner(max_workers=workers, initializer=_claim_devices,
                                 initargs=(device_claims(workers), workers, gpus))


@contextmanager
def _workers_report_here() -> Iterator[None]:
    """Worker processes report to this flow's API. On Prefect's ephemeral API that is a temporary
    server of this process; without its address every worker would start one of its own (~10 s)."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    servers = [s for s in SubprocessASGIServer._instances.values() if s.running]
    if servers:
        os.environ["PREFECT_API_URL"] = servers[0].api_url
    try:
        yield
    finally:
        if servers:
            os.environ.pop("PREFECT_API_URL", None)


def task_runner_map(cfg: RunConfig) -> MapShards | None:
    """Shards as task runs on the configured runner, or None (in this process) for one worker."""
    if cfg.extract.workers == 1 and not cfg.extract.task_runner:
        return None
    from prefect import task

    @task(name="extract-shard", task_run_name="extract-shard-{index}")
    def extract_one(work: Callable[[ShardJob], dict[str, int]], job: ShardJob,
                    index: int) -> dict[str, int]:
        return work(job)

    def run(work: Callable[[ShardJob], dict[str, int]],
            jobs: list[ShardJob]) -> Iterator[dict[str, int]]:
        if not jobs:
            return
        with _workers_report_here(), make_task_runner(cfg) as runner:
            futures = [runner.submit(extract_one, {"work": work, "job": job, "index": job.index})
                       for job in jobs]
            for future in futures:
                yield future.result()
    return run
