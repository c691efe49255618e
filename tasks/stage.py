"""The stages of the pipeline, one table, and what every stage task shares: keys, manifests, progress.

    STAGE_TABLE            name, entry function, upstream stages (train expands per variant)
    plan_stages(cfg)       the run's stages in execution order
    cache_key(cfg, spec, upstream_fingerprints)

Each stage's work is a plain function `entry(cfg, run_dir, on_progress) -> result` named by
"module:function"; a Prefect task (`stage_task`) only wraps it. A stage's cache key is a hash of
  - the stage's name,
  - its own config section (`configs.schema.stage_section`; a training stage's: its variant's),
  - the fingerprints of its upstream stages' manifests,
  - its code version: the import closure of its entry module (and of the modules it runs in a
    subprocess, `code`), configs/fingerprint.py,
never of large in-memory inputs. Each finished stage writes `<run>/<stage>/manifest.json` with
that key, the inputs' fingerprints, the content fingerprint of every output (each file's size,
hash and parquet row count; each warehouse table it writes, warehouse/contracts.py
TABLE_WRITERS, by rows and content hash), row counts and seconds. A manifest's fingerprint, which
its downstream stages' keys include, covers the key, the outputs' content and the row counts, so
rewriting an upstream output with other content always makes its readers stale, and a resumed
stage fingerprints the same as an uninterrupted one (run-dependent counts such as shards resumed
are `counters`, outside the fingerprint).

A stage is current only when its manifest carries the current key AND its outputs are intact:
every file there with the recorded size and parquet footer (and content hash, when its
modification time changed), every table with the recorded row count. Prefect's cache (stored in
`<run>/.prefect/`) is keyed the same way, and a stage whose outputs are not intact is refreshed.
"""
from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable

from configs.fingerprint import code_version, config_fingerprint
from configs.schema import RunConfig, stage_section
from warehouse.shard_io import write_text_atomically

log = logging.getLogger(__name__)

Work = Callable[[RunConfig, Path, Callable[[int, int], None]], dict[str, Any]]


@dataclass(frozen=True)
class StageDef:
    name: str
    entry: str  # "module:function" that does the work
    upstream: tuple[str, ...]  # stage names whose manifests feed the cache key
    code: tuple[str, ...] = ()  # modules it runs in a subprocess (training under torchrun)


STAGE_TABLE: tuple[StageDef, ...] = (
    StageDef("ingest", "corpora.ingest:run_ingest", ()),
    StageDef("tokenizer", "model.tokenizer:run_tokenizer", ("ingest",)),
    StageDef("extract", "tasks.extract:extract_with_task_runner", ("ingest",)),
    StageDef("canonicalize", "extraction.canonicalize:run_canonicalize", ("extract",)),
    StageDef("shards", "shards.build:run_shards", ("tokenizer", "canonicalize")),
    StageDef("train", "tasks.train:train_variant", ("shards",), code=("model.train",)),
    StageDef("evaluate", "evaluation.stage:run_evaluate", ("train", "canonicalize")),
    StageDef("report", "tasks.report:report_and_publish", ("evaluate",)),
)


@dataclass(frozen=True)
class StageSpec:
    """One stage of a run's plan (training: one per variant)."""
    name: str  # "ingest", ..., "train-triplet"
    section: str  # the config section the stage depends on (stage_section's name)
    upstream: tuple[str, ...]
    entry: str
    code: tuple[str, ...] = ()
    variant: str | None = None  # training stages only

    @property
    def manifest_dir(self) -> str:
        # train variants keep their manifests under train/<variant>/
        return self.name.replace("train-", "train/", 1)

    @property
    def code_modules(self) -> tuple[str, ...]:
        return (self.entry.split(":")[0], *self.code)

    def work(self) -> Work:
        """The stage's plain function (imported now: the flow's --dry-run needs none)."""
        module, function = self.entry.split(":")
        fn = getattr(importlib.import_module(module), function)
        return partial(fn, variant=self.variant) if self.variant else fn


def plan_stages(cfg: RunConfig) -> list[StageSpec]:
    """All stages of a run in execution order (one training stage per variant)."""
    trains = tuple(f"train-{v}" for v in cfg.train.variants)
    plan = []
    for d in STAGE_TABLE:
        upstream = tuple(u for name in d.upstream for u in (trains if name == "train" else (name,)))
        if d.name == "train":
            plan += [StageSpec(t, "train", upstream, d.entry, d.code, variant=v)
                     for t, v in zip(trains, cfg.train.variants)]
        else:
            plan.append(StageSpec(d.name, d.name, upstream, d.entry, d.code))
    return plan


def select_stages(plan: list[StageSpec], names: list[str] | None) -> list[StageSpec]:
    """The stages to run; `train` selects every training variant."""
    if not names:
        return plan
    known = {s.name for s in plan} | {"train"}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; stages are "
                         + ", ".join(dict.fromkeys(s.name.split("-")[0] for s in plan)))
    return [s for s in plan
            if s.name in names or ("train" in names and s.name.startswith("train-"))]


def manifest_path(run_dir: Path, spec: StageSpec) -> Path:
    return Path(run_dir) / spec.manifest_dir / "manifest.json"


def read_manifest(run_dir: Path, spec: StageSpec) -> dict[str, Any] | None:
    path = manifest_path(run_dir, spec)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is unreadable; the stage will rerun", path)
        return None


def manifest_fingerprint(manifest: dict[str, Any]) -> str:
    """What downstream keys depend on: the key, the outputs' content and the row counts (not
    timings, counters or file modification times)."""
    outputs = {rel: {k: v for k, v in rec.items() if k != "mtime_ns"}
               for rel, rec in (manifest.get("outputs") or {}).items()} \
        if isinstance(manifest.get("outputs"), dict) else manifest.get("outputs")
    return config_fingerprint({"cache_key": manifest.get("cache_key"), "outputs": outputs,
                               "rows": manifest.get("rows")})


def stage_code_version(spec: StageSpec) -> str:
    return code_version(spec.code_modules)


def cache_key(cfg: RunConfig, spec: StageSpec, upstream_fingerprints: dict[str, str]) -> str:
    return config_fingerprint({
        "stage": spec.name,
        "config": stage_section(cfg, spec.section, spec.variant),
        "upstream": upstream_fingerprints,
        "code": stage_code_version(spec),
    })


def upstream_fingerprints(run_dir: Path, spec: StageSpec, plan: list[StageSpec]) -> dict[str, str]:
    """Fingerprints of the upstream manifests; raises when an upstream stage has not run."""
    by_name = {s.name: s for s in plan}
    out = {}
    for name in spec.upstream:
        manifest = read_manifest(run_dir, by_name[name])
        if manifest is None:
            raise MissingUpstream(f"stage {spec.name!r} needs stage {name!r}, which has not run "
                                  f"in {run_dir}: run it first (or add it to --stages)")
        out[name] = manifest_fingerprint(manifest)
    return out


class MissingUpstream(RuntimeError):
    pass


def stage_tables(spec: StageSpec) -> list[str]:
    """The warehouse tables the stage writes (its rows in TABLE_WRITERS)."""
    from warehouse.contracts import TABLE_WRITERS
    return [t for t, writer in TABLE_WRITERS.items() if writer == spec.section]


def output_fingerprints(run_dir: Path, spec: StageSpec, outputs: list[str]) -> dict[str, Any]:
    """Content fingerprints of a stage's output files (a folder: every file in it) and tables."""
    from warehouse.shard_io import file_fingerprint
    run_dir = Path(run_dir)
    out: dict[str, Any] = {}
    for rel in sorted(outputs):
        path = run_dir / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            out[f.relative_to(run_dir).as_posix()] = file_fingerprint(f)
    tables = stage_tables(spec)
    if tables:
        from warehouse.db import connect, table_fingerprint
        con = connect(run_dir, read_only=True)
        try:
            out.update({f"table:{t}": table_fingerprint(con, t) for t in tables})
        finally:
            con.close()
    return out


def outputs_intact(run_dir: Path, manifest: dict[str, Any]) -> bool:
    """Every output the manifest records is still there as recorded (see the module docstring)."""
    from warehouse.shard_io import file_intact
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict):  # a manifest of an older version of this code
        return False
    tables = {k.removeprefix("table:"): v for k, v in outputs.items() if k.startswith("table:")}
    if not all(file_intact(Path(run_dir) / rel, rec) for rel, rec in outputs.items()
               if not rel.startswith("table:")):
        return False
    if not tables:
        return True
    from warehouse.db import WarehouseLocked, connect, db_path
    if not db_path(run_dir).is_file():
        return False
    try:
        con = connect(run_dir, read_only=True)
    except WarehouseLocked:
        return False
    try:
        present = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        return all(t in present and con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                   == rec["rows"] for t, rec in tables.items())
    finally:
        con.close()


def is_current(run_dir: Path, spec: StageSpec, key: str) -> bool:
    """Up to date: the manifest carries this key and every output is intact."""
    manifest = read_manifest(run_dir, spec)
    if manifest is None or manifest.get("cache_key") != key:
        return False
    return outputs_intact(run_dir, manifest)


def write_manifest(run_dir: Path, spec: StageSpec, key: str, upstream: dict[str, str],
                   result: dict[str, Any], seconds: float) -> dict[str, Any]:
    manifest = {
        "stage": spec.name,
        "cache_key": key,
        "code_version": stage_code_version(spec),
        "inputs": upstream,
        "outputs": output_fingerprints(run_dir, spec, result.get("outputs", [])),
        "rows": result.get("rows", {}),
        "counters": result.get("counters", {}),
        "stats": result.get("stats", {}),
        "seconds": round(seconds, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_text_atomically(json.dumps(manifest, indent=2, sort_keys=False) + "\n",
                          manifest_path(run_dir, spec))
    return manifest


def record_in_warehouse(run_dir: Path, manifest: dict[str, Any], started: datetime,
                        status: str) -> None:
    """One stage_runs row per executed stage (the warehouse exists from ingest on)."""
    from warehouse.db import connect
    counts = {"rows": manifest.get("rows", {}), "counters": manifest.get("counters", {})}
    con = connect(run_dir)
    try:
        con.execute("INSERT INTO stage_runs VALUES (?, ?, ?, ?, ?, ?)",
                    [manifest["stage"], manifest.get("cache_key", ""),
                     started.astimezone(timezone.utc).replace(tzinfo=None),
                     manifest.get("seconds", 0.0), status, json.dumps(counts)])
    finally:
        con.close()


class StageProgress:
    """`on_progress(done, total)`: a terminal bar, and a Prefect progress artifact inside a flow."""

    def __init__(self, stage: str, min_interval_s: float = 1.0):
        from tqdm import tqdm
        self.stage = stage
        self.bar = tqdm(desc=stage, unit="step", leave=False, dynamic_ncols=True)
        self.min_interval_s = min_interval_s
        self.artifact_id = None
        self._last = 0.0
        try:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import TaskRunContext
            if TaskRunContext.get() is not None:
                self.artifact_id = create_progress_artifact(
                    0.0, key=f"{stage.replace('_', '-')}-progress", description=f"{stage} progress")
        except Exception as err:  # artifacts are a convenience; never fail a stage over one
            log.debug("no progress artifact for %s: %s", stage, err)

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        now = time.monotonic()
        if self.artifact_id is not None and (now - self._last >= self.min_interval_s or done >= total):
            self._last = now
            try:
                from prefect.artifacts import update_progress_artifact
                update_progress_artifact(self.artifact_id, 100.0 * done / max(total, 1))
            except Exception as err:
                log.debug("progress artifact update failed: %s", err)

    def close(self) -> None:
        self.bar.close()


def execute_stage(spec: StageSpec, cfg: RunConfig, run_dir: Path, key: str,
                  upstream: dict[str, str]) -> dict[str, Any]:
    """Run a stage's plain function, then write its manifest and its stage_runs row."""
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    progress = StageProgress(spec.name)
    try:
        result = spec.work()(cfg, Path(run_dir), on_progress=progress)
    except BaseException:
        failed = {"stage": spec.name, "cache_key": key, "seconds": time.perf_counter() - t0}
        if (Path(run_dir) / "warehouse.duckdb").exists():
            try:
                record_in_warehouse(run_dir, failed, started, "failed")
            except Exception as err:  # the warehouse may be what failed; keep the real error
                log.warning("could not record the failure of %s: %s", spec.name, err)
        raise
    finally:
        progress.close()
    manifest = write_manifest(run_dir, spec, key, upstream, result, time.perf_counter() - t0)
    record_in_warehouse(run_dir, manifest, started, "completed")
    return manifest


def stage_task(spec: StageSpec):
    """The Prefect task of a stage, cached by the stage's key.

    The flow sets `result_storage` (the run's .prefect folder) and `refresh_cache` per call.
    """
    from prefect import task
    from prefect.cache_policies import CachePolicy

    class StageKey(CachePolicy):
        def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
            return inputs["cache_key"]

    @task(name=spec.name, cache_policy=StageKey(), persist_result=True)
    def run(spec: StageSpec, cfg: RunConfig, run_dir: str, cache_key: str,
            upstream: dict[str, str]) -> dict[str, Any]:
        return execute_stage(spec, cfg, Path(run_dir), cache_key, upstream)

    return run
