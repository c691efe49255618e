"""Sweeps as flows: one pipeline run per point of a sweep, sharing every stage points share.

    python -m flows.sweep --config configs/study.yaml [--grids lr_check] [--runs-dir runs] [--dry-run]
    python -m flows.sweep --config configs/tiny.yaml --set model.memory_slots=4,8,16,32 \\
        --set train.seed=1337,1 [--name NAME] [--deployment sweep-point/sweep-point-cpu]

The points come from the config's `sweep` section, or from `--set` (configs/sweep.py). Under
`<runs-dir>/<name>` (default name: "<config name>-sweep"):

    configs/<point>.yaml   each point's resolved config (configs/up-<key>.yaml: upstream runs)
    upstream/up-<key>/     ingest .. shards, run once per distinct upstream configuration: a sweep
                           over training settings extracts once
    points/<point>/        the point's run folder. Its upstream stages are adopted from
                           upstream/ (tasks/reuse.py: outputs hard-linked, warehouse copied), and
                           a training stage whose cache key another point's already has is adopted
                           from that point with its evaluations (a sweep over M trains and
                           evaluates `window` once per seed); the rest (the other trainings,
                           evaluate, report) runs here
    warehouse.duckdb       sweep_points and sweep_metrics (python -m warehouse.sql --run <folder>)
    report/sweep.md, *.png the sweep report (evaluation/sweep.py)

Each point is the `sweep-point` flow, a subflow of `sweep`, cached like a stage: a point whose
stages are all current runs nothing. With `--deployment` a point runs on that deployment's work
pool instead (prefect.yaml: sweep-point-cpu, sweep-point-gpu; the workers must see the same runs
folder), still one point at a time. A point that fails is reported as failed and the sweep goes
on; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from flows.pipeline import _print_table, pipeline, run_dir_of  # sets Prefect's environment first
from flows.process_group import reaped_children
from prefect import flow

from configs.fingerprint import config_fingerprint
from configs.schema import (ConfigError, RunConfig, dump_config, exit_on_config_error, load_config,
                            stage_section)
from configs.sweep import (CONFIGS, POINTS, UPSTREAM, GridConfig, Point, SweepPlan, best_points,
                           default_sweep_name, point_run_dir, sweep_plan)
from tasks.reuse import adopt_stages, folder_with_stage, link_tree, stage_key, stale_stages
from tasks.stage import StageSpec, is_current, plan_stages
from warehouse.run_lock import run_lock
from warehouse.shard_io import write_text_atomically


def upstream_specs(plan: list[StageSpec]) -> list[StageSpec]:
    """The stages every training reads from: those before the first training stage."""
    first = next(i for i, spec in enumerate(plan) if spec.variant is not None)
    return plan[:first]


def upstream_name(cfg: RunConfig) -> str:
    """The upstream run a point shares with every point of the same upstream settings."""
    sections = {s.name: stage_section(cfg, s.section) for s in upstream_specs(plan_stages(cfg))}
    return f"up-{config_fingerprint(sections)[:10]}"


def write_config(cfg: RunConfig, sweep_dir: Path) -> Path:
    """configs/<name>.yaml of the sweep folder: what a point's (or upstream run's) flow loads."""
    return write_text_atomically(dump_config(cfg), Path(sweep_dir) / CONFIGS / f"{cfg.name}.yaml")


def ensure_upstream(cfg: RunConfig, sweep_dir: Path) -> Path:
    """Run the shared upstream stages for `cfg`'s upstream settings where they are not current."""
    up_cfg = cfg.model_copy(update={"name": upstream_name(cfg)})
    up_dir = Path(sweep_dir) / UPSTREAM / up_cfg.name
    plan = plan_stages(up_cfg)
    todo = stale_stages(up_cfg, up_dir, plan, [s.name for s in upstream_specs(plan)])
    if todo:
        pipeline(config=str(write_config(up_cfg, sweep_dir)), runs_dir=str(up_dir.parent),
                 stages=todo)
    return up_dir


def adopt_shared_stages(cfg: RunConfig, run_dir: Path, sweep_dir: Path) -> dict[str, str]:
    """Adopt the upstream stages, and each training another point already did; returns
    {stage: the folder it came from}."""
    plan = plan_stages(cfg)
    upstream = upstream_specs(plan)
    adopted = {}
    if stale_stages(cfg, run_dir, plan, [s.name for s in upstream]):
        up_dir = ensure_upstream(cfg, sweep_dir)
        adopt_stages(up_dir, run_dir, upstream, warehouse=True)
        adopted.update({s.name: f"{UPSTREAM}/{up_dir.name}" for s in upstream})
    others = sorted(p for p in (Path(sweep_dir) / POINTS).iterdir() if p.is_dir() and p != run_dir)
    for spec in plan:
        key = stage_key(cfg, run_dir, spec, plan) if spec.variant else None
        if key is None or is_current(run_dir, spec, key):
            continue
        source = folder_with_stage(spec, key, others)
        if source is not None:
            adopt_stages(source, run_dir, [spec], warehouse=False)
            evaluations = source / "eval" / f"{spec.variant}.json"
            if evaluations.is_file():  # the evaluate stage reuses those of this checkpoint
                link_tree(evaluations, run_dir / "eval" / evaluations.name)
            adopted[spec.name] = f"{POINTS}/{source.name}"
    return adopted


@flow(name="sweep-point", log_prints=True)
def sweep_point(config: str, sweep_dir: str) -> dict[str, Any]:
    """One point: adopt what other runs of the sweep already did, run the rest of its pipeline."""
    cfg = load_config(config)
    sweep_dir_path = Path(sweep_dir)
    run_dir = run_dir_of(cfg, sweep_dir_path / POINTS)
    with run_lock(run_dir):  # adopting writes the point's folder too
        adopted = adopt_shared_stages(cfg, run_dir, sweep_dir_path)
        plan = plan_stages(cfg)
        todo = stale_stages(cfg, run_dir, plan, [s.name for s in plan])
        if todo:
            pipeline(config=config, runs_dir=str(sweep_dir_path / POINTS), stages=todo)
    status = "ran" if todo else ("adopted" if adopted else "cached")
    print(f"point {cfg.name}: {status}; ran {', '.join(todo) or 'nothing'}; adopted "
          f"{', '.join(f'{k} from {v}' for k, v in adopted.items()) or 'nothing'}")
    return {"point": cfg.name, "status": status, "ran": todo, "adopted": adopted}


def run_point(point: Point, sweep_dir: Path, deployment: str | None) -> str:
    """A point's status: ran / adopted / cached, or failed: <why>."""
    config = str(write_config(point.config, sweep_dir))
    if deployment:
        from prefect.deployments import run_deployment
        run = run_deployment(name=deployment, timeout=None,
                             parameters={"config": config, "sweep_dir": str(sweep_dir)})
        return "ran" if run.state is not None and run.state.is_completed() else \
            f"failed: {run.state.name if run.state else 'no state'}"
    state = sweep_point(config=config, sweep_dir=str(sweep_dir), return_state=True)
    if not state.is_completed():
        message = (state.message or state.name).strip().splitlines() or [state.name]
        return f"failed: {message[0]}"
    return state.result()["status"]


def load_plan(config: str, sets: list[str] | None, grids: list[str] | None = None) -> SweepPlan:
    path = Path(config)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    return sweep_plan(yaml.safe_load(path.read_text(encoding="utf-8")), str(path), sets, grids)


def sweep_dir_of(plan: SweepPlan, runs_dir: str | Path, name: str | None) -> Path:
    return Path(runs_dir).resolve() / (name or default_sweep_name(plan.base))


@flow(name="sweep", log_prints=True)
def sweep(config: str, runs_dir: str = "runs", sets: list[str] | None = None,
          name: str | None = None, deployment: str | None = None,
          grids: list[str] | None = None) -> dict[str, str]:
    """Every point of the sweep in turn, then the sweep report; returns each point's status."""
    from evaluation.sweep import best_of_grid, build_sweep_report, sweep_metrics
    plan = load_plan(config, sets, grids)
    sweep_dir = sweep_dir_of(plan, runs_dir, name)
    (sweep_dir / POINTS).mkdir(parents=True, exist_ok=True)
    statuses = {}
    for point in list(plan.points):
        statuses[point.name] = run_point(point, sweep_dir, deployment)
        print(f"point {point.name}: {statuses[point.name]}")
    for grid in plan.sweep.grids:  # each variant again at its best value (configs/sweep.py)
        if grid.then:
            best = best_of_grid(plan, grid, sweep_metrics(plan, sweep_dir))
            for point in best_points(plan, grid, best):
                if point.name not in statuses:
                    statuses[point.name] = run_point(point, sweep_dir, deployment)
                    print(f"point {point.name} ({grid.name}, then): {statuses[point.name]}")
    command = " ".join(["python -m flows.sweep --config", config,
                        *(f"--set {s}" for s in sets or []),
                        *([f"--grids {','.join(grids)}"] if grids else [])])
    report = build_sweep_report(plan, sweep_dir, statuses, command)
    print(f"sweep report: {sweep_dir / report['outputs'][0]}")
    return statuses


# ---------------------------------------------------------------- the plan, without running

def planned_trainings(plan: SweepPlan) -> list[dict[str, str]]:
    """Per point: the upstream run it uses, the variants it trains and those it adopts from an
    earlier point (training identity: upstream settings + the variant's train section)."""
    first: dict[str, str] = {}
    rows = []
    for point in plan.points:
        cfg = point.config
        up = upstream_name(cfg)
        trains, adopts = [], []
        for variant in cfg.train.variants:
            identity = config_fingerprint([up, variant, stage_section(cfg, "train", variant)])
            if identity in first:
                adopts.append(f"{variant} ({first[identity]})")
            else:
                first[identity] = point.name
                trains.append(variant)
        grids = [g for g, names in plan.grid_points.items() if point.name in names]
        rows.append({"point": point.name, "grids": ",".join(grids), "upstream": up,
                     "trains": ", ".join(trains) or "-", "adopts": ", ".join(adopts) or "-"})
    return rows


def dry_run(plan: SweepPlan, sweep_dir: Path) -> list[dict[str, str]]:
    """The plan with each point's status where its folder exists (cached: nothing to run)."""
    rows = planned_trainings(plan)
    for row, point in zip(rows, plan.points):
        run_dir = point_run_dir(sweep_dir, point.name)
        stages = plan_stages(point.config)
        todo = stale_stages(point.config, run_dir, stages, [s.name for s in stages]) \
            if run_dir.is_dir() else ["all"]
        row["status"] = "cached" if not todo else "will run"
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="a run config, e.g. configs/study.yaml")
    ap.add_argument("--set", action="append", dest="sets", metavar="SETTING=V1,V2",
                    help="a setting and its values (repeatable); replaces the config's grids")
    ap.add_argument("--grids", metavar="NAME,...",
                    help="run only these of the config's grids (their points keep their folders, "
                         "so a later full sweep reuses them)")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--name", help="the sweep folder's name (default: <config name>-sweep)")
    ap.add_argument("--deployment", help="run each point on this deployment's work pool")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    args = ap.parse_args(argv)
    try:
        grids = [g.strip() for g in args.grids.split(",") if g.strip()] if args.grids else None
        plan = load_plan(args.config, args.sets, grids)
    except ConfigError as err:
        exit_on_config_error(err)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sweep_dir = sweep_dir_of(plan, args.runs_dir, args.name)
    if args.dry_run:
        rows = dry_run(plan, sweep_dir)
        trained = sum(len(r["trains"].split(", ")) for r in rows if r["trains"] != "-")
        adopted = sum(len(r["adopts"].split(", ")) for r in rows if r["adopts"] != "-")
        print(f"sweep {sweep_dir}: {len(rows)} points, {len({r['upstream'] for r in rows})} upstream "
              f"run(s), {trained} trainings, {adopted} adopted from an earlier point\n")
        _print_table(rows, ["point", "grids", "status", "trains", "adopts"])
        for grid in plan.sweep.grids:
            if grid.then:
                variants = {v for p in plan.grid_points[grid.name]
                            for v in plan.point(p).config.train.variants}
                rounds = len(GridConfig(name=grid.name, set=grid.then).combinations())
                then = ", ".join(f"{k}={v}" for k, v in grid.then.items())
                print(f"\nthen, after grid {grid.name}: each of its {len(variants)} variants again "
                      f"at its best {grid.best_of} with {then}: up to {len(variants) * rounds} "
                      "trainings more (fewer where another point trains that already)")
        return 0
    with reaped_children():  # nothing the sweep starts outlives it (flows/process_group.py)
        statuses = sweep(config=str(Path(args.config).resolve()), runs_dir=args.runs_dir,
                         sets=args.sets, name=args.name, deployment=args.deployment,
                         grids=grids)
    failed = {p: s for p, s in statuses.items() if s.startswith("failed")}
    for point, status in failed.items():
        print(f"error: point {point} {status}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # as flows.pipeline: the last line stays ours
