"""The pipeline: ingest -> tokenizer -> extract -> canonicalize -> shards -> train -> evaluate -> report.

    python -m flows.pipeline --config configs/tiny.yaml [--runs-dir runs] [--stages a,b]
                             [--force a] [--dry-run]

The config is validated before anything is written (a bad one exits with status 2). Each stage
is a Prefect task around a plain function (the table in tasks/stage.py), keyed by its own
settings, its upstream manifests and its code (its import closure): a second run with nothing changed skips every stage, changing one stage's
settings reruns it and what follows, and `--force` reruns the named stages. `train` names every
training variant. The flow runs on Prefect's ephemeral API (nothing to start by hand), or as the
deployments in prefect.yaml.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

# Before prefect is imported: no analytics, and a start-up timeout a slow 2-core machine meets.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from prefect import flow, task

from configs.schema import RunConfig, dump_config, load_config, load_config_or_exit
from flows.process_group import reaped_children
from tasks.stage import (MissingUpstream, StageSpec, cache_key, is_current, plan_stages,
                         read_manifest, select_stages, stage_task, upstream_fingerprints)
from warehouse.run_folder import RUN_CONFIG
from warehouse.run_lock import RunLocked, run_lock
from warehouse.shard_io import write_text_atomically


def run_dir_of(cfg: RunConfig, runs_dir: str | Path) -> Path:
    return Path(runs_dir).resolve() / cfg.name


def _force_set(force: list[str] | None, plan: list[StageSpec]) -> set[str]:
    return {s.name for s in select_stages(plan, force)} if force else set()


SHARD_RANGE_STAGES = ["extract"]


@flow(name="pipeline", log_prints=True)
def pipeline(config: str, runs_dir: str = "runs", stages: list[str] | None = None,
             force: list[str] | None = None, shards: str | None = None) -> dict[str, dict[str, Any]]:
    """Run the selected stages of the run `config` describes (all by default); with `shards`
    ("0:4"), extract that range of docs shards only (see extraction/stage.py)."""
    cfg = load_config(config)
    run_dir = run_dir_of(cfg, runs_dir)
    if shards is not None:
        if stages != SHARD_RANGE_STAGES:
            raise ValueError("a shard range runs the extract stage alone: --stages extract --shards A:B")
        with run_lock(run_dir, shared=True):  # other shard ranges may run beside it
            return {"extract": extract_shard_range(cfg, str(run_dir), shards)}
    with run_lock(run_dir):
        write_text_atomically(dump_config(cfg), run_dir / RUN_CONFIG)
        return _run_stages(cfg, run_dir, stages, force)


@task(name="extract-shard-range")
def extract_shard_range(cfg: RunConfig, run_dir: str, shards: str) -> dict[str, Any]:
    """Extract one range of docs shards (no manifest, no warehouse: a later full run loads it)."""
    from tasks.extract import extract_with_task_runner
    t0 = time.perf_counter()
    result = extract_with_task_runner(cfg, Path(run_dir), shards=shards)
    return {"status": f"ran shards {shards}", "seconds": round(time.perf_counter() - t0, 1),
            "rows": {**result["rows"], **result["counters"]}}


def _run_stages(cfg: RunConfig, run_dir: Path, stages: list[str] | None,
                force: list[str] | None) -> dict[str, dict[str, Any]]:
    plan = plan_stages(cfg)
    forced = _force_set(force, plan)
    summary: dict[str, dict[str, Any]] = {}
    for spec in select_stages(plan, stages):
        upstream = upstream_fingerprints(run_dir, spec, plan)
        key = cache_key(cfg, spec, upstream)
        refresh = spec.name in forced or not is_current(run_dir, spec, key)
        task = stage_task(spec).with_options(result_storage=run_dir / ".prefect",
                                             refresh_cache=refresh)
        t0 = time.perf_counter()
        state = task(spec, cfg, str(run_dir), key, upstream, return_state=True)
        manifest = state.result()  # raises the stage's error when it failed
        summary[spec.name] = {"status": "cached" if state.name == "Cached" else "ran",
                              "seconds": round(time.perf_counter() - t0, 1),
                              "rows": manifest.get("rows", {})}
    return summary


def missing_upstream(cfg: RunConfig, runs_dir: str | Path, stages: list[str] | None) -> str | None:
    """Why the selected stages cannot start (an upstream stage outside them never ran), or None."""
    run_dir = run_dir_of(cfg, runs_dir)
    plan = plan_stages(cfg)
    selected = {s.name for s in select_stages(plan, stages)}
    by_name = {s.name: s for s in plan}
    for spec in select_stages(plan, stages):
        for name in spec.upstream:
            if name not in selected and read_manifest(run_dir, by_name[name]) is None:
                return (f"stage {spec.name!r} needs stage {name!r}, which has not run in {run_dir}: "
                        f"run it first or add it to --stages")
    return None


def dry_run(cfg: RunConfig, config_path: str, runs_dir: str | Path, stages: list[str] | None,
            force: list[str] | None) -> list[dict[str, str]]:
    """The planned stages, their cache status and the commands they would run; writes nothing."""
    from tasks.train import torchrun_command
    run_dir = run_dir_of(cfg, runs_dir)
    plan = plan_stages(cfg)
    forced = _force_set(force, plan)
    rows, will_run = [], set()
    for spec in select_stages(plan, stages):
        if spec.name in forced:
            status = "forced"
        elif will_run & set(spec.upstream):
            status = "after upstream"
        else:
            try:
                key = cache_key(cfg, spec, upstream_fingerprints(run_dir, spec, plan))
                status = "cached" if is_current(run_dir, spec, key) else "will run"
            except MissingUpstream:
                status = "after upstream" if set(spec.upstream) & {s.name for s in plan} else "will run"
        if status != "cached":
            will_run.add(spec.name)
        if spec.variant:
            cmd = " ".join(torchrun_command(run_dir, spec.variant, cfg.train.nproc_per_node,
                                            resume=False))
        else:
            cmd = f"python -m flows.pipeline --config {config_path} " \
                  f"--runs-dir {run_dir.parent} --stages {spec.name}"
        rows.append({"stage": spec.name, "status": status, "command": cmd})
    return rows


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def _csv_list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="a run config, e.g. configs/tiny.yaml")
    ap.add_argument("--runs-dir", default="runs", help="where run folders live (default: runs)")
    ap.add_argument("--stages", help="comma-separated stages to run (default: all)")
    ap.add_argument("--force", help="comma-separated stages to rerun even if cached")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    ap.add_argument("--shards", metavar="START:STOP",
                    help="with --stages extract: extract these docs shards only (several such "
                         "runs may share a run folder; a full run then loads the warehouse)")
    args = ap.parse_args(argv)
    cfg = load_config_or_exit(args.config)
    stages, force = _csv_list(args.stages), _csv_list(args.force)
    if args.shards is not None and (stages != SHARD_RANGE_STAGES or force or args.dry_run):
        print("error: --shards goes with --stages extract alone (no --force, no --dry-run)",
              file=sys.stderr)
        return 2
    try:
        select_stages(plan_stages(cfg), (stages or []) + (force or []))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        from model.resources import plan_lines, training_plan
        _print_table(dry_run(cfg, args.config, args.runs_dir, stages, force), ["stage", "status", "command"])
        print(f"\ntraining plan per variant ({cfg.train.steps} steps; one process's memory at "
              f"device_batch_size {cfg.train.device_batch_size}; estimates: model/resources.py)")
        print("\n".join(plan_lines([training_plan(cfg, v) for v in cfg.train.variants],
                                   cfg.train.nproc_per_node)))
        return 0
    problem = missing_upstream(cfg, args.runs_dir, stages)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        with run_lock(run_dir_of(cfg, args.runs_dir), shared=args.shards is not None), \
                reaped_children():
            # refused here, before Prefect starts; nothing started outlives this command
            summary = pipeline(config=str(Path(args.config).resolve()), runs_dir=args.runs_dir,
                               stages=stages, force=force, shards=args.shards)
    except RunLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the stage's log above has the details; end on one clear line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"error: pipeline failed: {type(err).__name__}: {first}", file=sys.stderr)
        return 1
    rows = [{"stage": k, **v} for k, v in summary.items()]
    print()
    _print_table(rows, ["stage", "status", "seconds", "rows"])
    report = Path(args.runs_dir).resolve() / cfg.name / "report" / "report.md"
    if report.is_file():
        print(f"\nreport: {report}")
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit now: Prefect's exit handlers would log after the last line; the reaper
    # (flows/process_group.py) ends its temporary API server once this process is gone.
    os._exit(status)
