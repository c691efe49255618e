"""The extract stage: docs shards -> triplets shards (every configured backend) -> warehouse.

`run_extract(cfg, run_dir)` reads `docs/shard_k.parquet` (and `gold/shard_k.parquet`, the oracle's
input, where the source has gold), runs every backend in `extract.backends` (the table in
extraction/registry.py) on the shard's documents and writes (schemas in warehouse/contracts.py)

  triplets/shard_k.parquet           TRIPLET_SCHEMA rows of all backends (`extractor` tells them apart)
  extraction_errors/shard_k.parquet  ERROR_SCHEMA

each atomically, errors first, so a triplets shard on disk means its errors are there too. A
shard's parquet footer carries a fingerprint of the extract config, the stage's code version
(configs/fingerprint.py) and the docs shard it came from; a rerun (after a kill, say) skips every
shard whose fingerprint is current and redoes the rest, so it continues from the first missing
shard, and a changed config or docs shard never leaves stale triplets behind.

Shards are independent units of work: `extract_shard` does one, in whatever process runs it.
`run_extract` maps it over the shards that need work with `map_shards` (default: in this process
when `extract.workers` is 1, else a pool of that many spawned processes; inside a flow the
pipeline maps them over a Prefect task runner, tasks/extract.py), each process building its
backends once. A backend that needs GPUs (vLLM) gets one engine per worker and the worker its own
devices (`worker_devices`: `tensor_parallel_size` GPUs each, data parallel over the visible
ones). `shards` restricts the work to a range of docs shards ("0:4") and skips the warehouse:
several runs (flow runs on a work pool) can share the shards of one run folder, and a last run
without a range finds them current and loads the warehouse.

Then, in one step, the warehouse is reloaded: `triplets` (triplet_id = shard * 10^7 + row in the
shard, so ids are stable across reruns; their canonical ids are canonicalize's table
`canonical_ids`) and `extraction_errors`, plus the shard views. This stage writes only those two
tables.

    .venv/bin/python -m extraction.stage --config configs/tiny.yaml --run runs/tiny
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from configs.fingerprint import code_version, config_fingerprint
from configs.schema import RunConfig, stage_main, stage_section
from extraction.registry import Backend, make_backend
from warehouse.contracts import (ERROR_SCHEMA, TRIPLET_SCHEMA, Document, ExtractionError, Triplet,
                                 extractor_backend)
from warehouse.db import connect, register_shard_views
from warehouse.shard_io import (UnreadableShard, footer_fingerprint, is_current, list_shards,
                                remove_shards_outside, shard_index, shard_path, write_shard)

log = logging.getLogger(__name__)

ERRORS_KIND = "extraction_errors"
ROWS_PER_SHARD_ID = 10_000_000  # triplet_id = shard * this + row; a shard must hold fewer rows
RAW_PREFIX_CHARS = 200


class ExtractStageError(RuntimeError):
    """The stage cannot run on this run folder (no docs shards, an unreadable shard)."""


def shard_fingerprint(cfg: RunConfig, code: str, docs_path: Path) -> str:
    """What a triplets shard depends on: the extract config, the code and its docs shard."""
    try:
        docs_id = footer_fingerprint(docs_path)
    except UnreadableShard as err:
        raise ExtractStageError(str(err)) from None
    meta = pq.read_metadata(docs_path)
    return config_fingerprint({"extract": stage_section(cfg, "extract"), "code": code,
                               "docs": [docs_id, meta.num_rows, meta.serialized_size]})


def read_documents(run_dir: Path, k: int) -> list[Document]:
    """Docs shard k, with each document's gold triplets when the source has a gold shard."""
    docs_path, gold_path = shard_path(run_dir, "docs", k), shard_path(run_dir, "gold", k)
    try:
        docs = pq.read_table(docs_path, columns=["doc_id", "text"]).to_pylist()
        gold_rows = pq.read_table(gold_path).to_pylist() if gold_path.is_file() else []
    except (OSError, pa.ArrowException) as err:
        raise ExtractStageError(f"shard {k}: unreadable input ({err}); rerun the ingest stage") from None
    gold: dict[str, list[Triplet]] = defaultdict(list)
    for row in gold_rows:
        gold[row["doc_id"]].append(Triplet(**row))
    return [Document(d["doc_id"], d["text"], gold=gold.get(d["doc_id"], [])) for d in docs]


def extract_shard_tables(backends: list[Backend], docs: list[Document]) -> tuple[pa.Table, pa.Table]:
    """Triplets of all backends and their errors, as the two shard tables."""
    triplets: list[Triplet] = []
    errors: list[tuple[str, ExtractionError]] = []
    for backend in backends:
        found, failed = backend.extract(docs)
        triplets.extend(found)
        errors.extend((backend.name, e) for e in failed)
    if len(triplets) >= ROWS_PER_SHARD_ID:
        raise ExtractStageError(f"{len(triplets)} triplets in one shard: lower ingest.docs_per_shard "
                                f"so a shard holds fewer than {ROWS_PER_SHARD_ID}")
    table = pa.Table.from_pylist([t.row() for t in triplets], schema=TRIPLET_SCHEMA)
    error_table = pa.Table.from_pylist(
        [{"doc_id": e.doc_id, "extractor": name, "error": e.error,
          "raw_prefix": (e.raw_prefix or "")[:RAW_PREFIX_CHARS]} for name, e in errors],
        schema=ERROR_SCHEMA)
    return table, error_table


def load_warehouse(run_dir: Path) -> dict[str, Any]:
    """Reload `triplets` and `extraction_errors` from all shards in one transaction; counts."""
    run_dir = Path(run_dir)

    def glob(kind: str) -> str:
        return str(run_dir.resolve() / kind / "shard_*.parquet").replace("'", "''")

    shard_of = "CAST(regexp_extract(filename, 'shard_(\\d+)\\.parquet$', 1) AS INTEGER)"
    con = connect(run_dir)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM triplets")
        con.execute("DELETE FROM extraction_errors")
        if list_shards(run_dir, "triplets"):
            con.execute(
                f"INSERT INTO triplets SELECT CAST({shard_of} AS BIGINT) * {ROWS_PER_SHARD_ID} "
                f"+ file_row_number, doc_id, {shard_of}, subject, relation, object, negated, "
                "char_start, char_end, confidence, extractor "
                f"FROM read_parquet('{glob('triplets')}', filename = true, file_row_number = true)")
        if list_shards(run_dir, ERRORS_KIND):
            con.execute(
                f"INSERT INTO extraction_errors SELECT doc_id, {shard_of}, extractor, error, "
                f"raw_prefix FROM read_parquet('{glob(ERRORS_KIND)}', filename = true)")
        con.execute("COMMIT")
        register_shard_views(con, run_dir)
        by_backend = con.execute("SELECT extractor, count(*), count(DISTINCT doc_id) FROM triplets "
                                 "GROUP BY extractor ORDER BY extractor").fetchall()
        errors = con.execute("SELECT extractor, count(*) FROM extraction_errors "
                             "GROUP BY extractor ORDER BY extractor").fetchall()
    finally:
        con.close()
    return {"by_backend": {name: (n, docs) for name, n, docs in by_backend},
            "errors": dict(errors)}


@dataclass(frozen=True)
class ShardJob:
    """One docs shard to extract, and the fingerprint its output shards will carry."""
    index: int
    fingerprint: str
    docs: int


MapShards = Callable[[Callable[[ShardJob], dict[str, int]], list[ShardJob]], Iterable[dict[str, int]]]

_BACKENDS: dict[str, list[Backend]] = {}  # this process's backends, by extract-config fingerprint


def process_backends(cfg: RunConfig) -> list[Backend]:
    """The configured backends, built once per process (a model loads once per worker)."""
    key = config_fingerprint(stage_section(cfg, "extract"))
    if key not in _BACKENDS:
        _BACKENDS.clear()
        _BACKENDS[key] = [make_backend(name, cfg.extract) for name in cfg.extract.backends]
    return _BACKENDS[key]


def extract_shard(cfg: RunConfig, run_dir: Path, job: ShardJob) -> dict[str, int]:
    """Write triplets (and errors) shard `job.index`; returns its row counts."""
    docs = read_documents(run_dir, job.index)
    table, errors = extract_shard_tables(process_backends(cfg), docs)
    write_shard(errors, shard_path(run_dir, ERRORS_KIND, job.index), job.fingerprint)
    write_shard(table, shard_path(run_dir, "triplets", job.index), job.fingerprint)
    log.info("extract: shard %d: %d documents, %d triplets, %d extraction errors",
             job.index, len(docs), table.num_rows, errors.num_rows)
    return {"docs": len(docs), "triplets": table.num_rows, "errors": errors.num_rows}


def shard_jobs(cfg: RunConfig, run_dir: Path, shards: range | None = None) -> tuple[list[ShardJob], int, list[int]]:
    """(the shards that need work, documents in all selected shards, every docs shard index)."""
    docs_shards = list_shards(run_dir, "docs")
    if not docs_shards:
        raise ExtractStageError(f"{run_dir / 'docs'}: no docs shards; run the ingest stage first")
    code = code_version(("extraction.stage",))
    jobs, total = [], 0
    for docs_path in docs_shards:
        k = shard_index(docs_path)
        if shards is not None and k not in shards:
            continue
        fingerprint = shard_fingerprint(cfg, code, docs_path)
        rows = pq.read_metadata(docs_path).num_rows
        total += rows
        if not is_current(shard_path(run_dir, "triplets", k), fingerprint):
            jobs.append(ShardJob(k, fingerprint, rows))
    return jobs, total, [shard_index(p) for p in docs_shards]


def worker_devices(worker: int, workers: int, gpus_per_worker: int) -> str | None:
    """CUDA_VISIBLE_DEVICES of worker `worker` (one vLLM engine each), or None without GPUs."""
    import torch
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    if not devices:
        return None
    if workers * gpus_per_worker > len(devices):
        raise ExtractStageError(f"{workers} workers x {gpus_per_worker} GPUs each need "
                                f"{workers * gpus_per_worker} GPUs, {len(devices)} are visible: "
                                "lower extract.workers or extract.vllm.tensor_parallel_size")
    return ",".join(devices[worker * gpus_per_worker:(worker + 1) * gpus_per_worker])


def gpus_per_worker(cfg: RunConfig) -> int:
    """GPUs one worker's backends use (0 for CPU-only backends)."""
    return cfg.extract.section("vllm").tensor_parallel_size if "vllm" in cfg.extract.backends else 0


def device_claims(workers: int) -> Any:
    """The worker numbers 0..workers-1 in a queue, for a spawned pool's initializer to take (a
    plain queue handed over at process start: a Manager's server process would outlive an
    interrupted run and hold its exit)."""
    claims = multiprocessing.get_context("spawn").Queue()
    for worker in range(workers):
        claims.put(worker)
    return claims


def _claim_devices(claims: Any, workers: int, gpus: int) -> None:
    """Pool initializer: take the next worker number and that worker's GPUs."""
    worker = claims.get()
    devices = worker_devices(worker, workers, gpus) if gpus else None
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices


def process_pool_map(workers: int, gpus: int) -> MapShards:
    """Map shards over `workers` spawned processes (sequentially in this one for 1 worker)."""
    def run(work: Callable[[ShardJob], dict[str, int]], jobs: list[ShardJob]) -> Iterator[dict[str, int]]:
        if workers <= 1 or len(jobs) <= 1:
            yield from map(work, jobs)
            return
        context = multiprocessing.get_context("spawn")  # the tokenizer/spaCy threads forbid fork
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                                 initializer=_claim_devices,
                                 initargs=(device_claims(workers), workers, gpus)) as pool:
            yield from pool.map(work, jobs)
    return run


def parse_shard_range(text: str | None) -> range | None:
    """"a:b" -> range(a, b) of docs shard indexes (None: every shard)."""
    if not text:
        return None
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise ExtractStageError(f"shard range {text!r}: write START:STOP, e.g. 0:4") from None
    if not 0 <= start < stop:
        raise ExtractStageError(f"shard range {text!r}: need 0 <= START < STOP")
    return range(start, stop)


def run_extract(cfg: RunConfig, run_dir: Path,
                on_progress: Callable[[int, int], None] | None = None,
                map_shards: MapShards | None = None, shards: str | None = None) -> dict[str, Any]:
    """Write one triplets shard per docs shard that needs it (resumable; see the module
    docstring), then load the warehouse (not for a shard range)."""
    run_dir = Path(run_dir)
    selected = parse_shard_range(shards)
    jobs, total_docs, all_shards = shard_jobs(cfg, run_dir, selected)
    mapper = map_shards or process_pool_map(cfg.extract.workers, gpus_per_worker(cfg))
    done = total_docs - sum(j.docs for j in jobs)
    if on_progress:
        on_progress(done, total_docs)
    for result in mapper(partial(extract_shard, cfg, run_dir), jobs):
        done += result["docs"]
        if on_progress:
            on_progress(done, total_docs)
    if selected is not None:  # a share of the work: the warehouse is loaded by a full run
        return {"outputs": [], "rows": {"docs": total_docs},
                "counters": {"shards_extracted": len(jobs)}}
    # triplets/errors shards whose docs shard no longer exists (the corpus got smaller)
    remove_shards_outside(run_dir, ("triplets", ERRORS_KIND), set(all_shards))
    loaded = load_warehouse(run_dir)
    rows: dict[str, int] = {"docs": total_docs, "shards": len(all_shards),
                            "triplets": sum(n for n, _ in loaded["by_backend"].values())}
    counters: dict[str, int] = {"shards_extracted": len(jobs)}  # this run's work: not a row count
    for name in cfg.extract.backends:
        n = sum(c for e, (c, _) in loaded["by_backend"].items() if extractor_backend(e) == name)
        with_triplets = sum(d for e, (_, d) in loaded["by_backend"].items()
                            if extractor_backend(e) == name)
        rows[f"triplets_{name}"] = n
        rows[f"docs_with_triplets_{name}"] = with_triplets
        counters[f"docs_without_triplets_{name}"] = total_docs - with_triplets
        counters[f"extraction_errors_{name}"] = sum(
            c for e, c in loaded["errors"].items() if extractor_backend(e) == name)
    outputs = [str(p.relative_to(run_dir)) for kind in ("triplets", ERRORS_KIND)
               for p in list_shards(run_dir, kind)]
    return {"outputs": outputs, "rows": rows, "counters": counters}


def main() -> None:
    stage_main(__doc__, run_extract, (ExtractStageError,))


if __name__ == "__main__":
    main()
