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

Then, in one step, the warehouse is reloaded: `triplets` (triplet_id = shard * 10^7 + row in the
shard, so ids are stable across reruns; their canonical ids are canonicalize's table
`canonical_ids`) and `extraction_errors`, plus the shard views. This stage writes only those two
tables.

    .venv/bin/python -m extraction.stage --config configs/tiny.yaml --run runs/tiny
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

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


def extract_shard(backends: list[Backend], docs: list[Document]) -> tuple[pa.Table, pa.Table]:
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


def run_extract(cfg: RunConfig, run_dir: Path,
                on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write one triplets shard per docs shard (resumable), then load the warehouse."""
    run_dir = Path(run_dir)
    docs_shards = list_shards(run_dir, "docs")
    if not docs_shards:
        raise ExtractStageError(f"{run_dir / 'docs'}: no docs shards; run the ingest stage first")
    code = code_version(("extraction.stage",))
    total_docs = sum(pq.read_metadata(p).num_rows for p in docs_shards)
    backends: list[Backend] | None = None  # built on the first shard that needs work
    done = redone = 0
    for docs_path in docs_shards:
        k = shard_index(docs_path)
        out = shard_path(run_dir, "triplets", k)
        fingerprint = shard_fingerprint(cfg, code, docs_path)
        if not is_current(out, fingerprint):
            docs = read_documents(run_dir, k)
            if backends is None:
                backends = [make_backend(name, cfg.extract) for name in cfg.extract.backends]
            table, errors = extract_shard(backends, docs)
            write_shard(errors, shard_path(run_dir, ERRORS_KIND, k), fingerprint)
            write_shard(table, out, fingerprint)
            log.info("extract: shard %d: %d documents, %d triplets, %d extraction errors",
                     k, len(docs), table.num_rows, errors.num_rows)
            redone += 1
        done += pq.read_metadata(docs_path).num_rows
        if on_progress:
            on_progress(done, total_docs)
    # triplets/errors shards whose docs shard no longer exists (the corpus got smaller)
    remove_shards_outside(run_dir, ("triplets", ERRORS_KIND), {shard_index(p) for p in docs_shards})
    loaded = load_warehouse(run_dir)
    rows: dict[str, int] = {"docs": total_docs, "shards": len(docs_shards),
                            "triplets": sum(n for n, _ in loaded["by_backend"].values())}
    counters: dict[str, int] = {"shards_extracted": redone}  # this run's work: not a row count
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
