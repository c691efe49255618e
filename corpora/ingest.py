"""The ingest stage: a corpus source -> parquet shards + the warehouse `documents` table.

`run_ingest(cfg, run_dir)` streams the configured source (the table in corpora/sources.py),
drops what cannot be a document, and writes shard k for every `ingest.docs_per_shard` documents
that survive (schemas in warehouse/contracts.py):

  docs/shard_k.parquet     DOCS_SCHEMA                              (every source)
  gold/shard_k.parquet     TRIPLET_SCHEMA rows, extractor "oracle"  (sources with gold)
  recall/shard_k.parquet   RECALL_SCHEMA                            (sources with gold recall
                                                                     spans; the shards stage
                                                                     treats a missing recall
                                                                     shard as "no gold spans")

Drops, counted by name and logged one line each, never a crash: `empty_doc` (empty or whitespace
only), `invalid_utf8` (bytes that do not decode, or a str with lone surrogates), `duplicate_id`
(the first document with an id is kept), `short_doc` (fewer than `ingest.min_chars` characters:
a document shorter than two windows leaves its memory nothing evicted to hold; counted, never
logged one by one). split is "val" when the first 8 bytes of
sha256(doc_id), as a fraction of 2**64, fall below `ingest.val_fraction`, so it never changes.

Resume: every shard is written atomically, gold/recall before docs, so a docs shard on disk means
its siblings are there. Sources are deterministic streams, so shard k always holds the same
documents; a rerun skips shard k when all its files exist and their parquet footers carry this
config's fingerprint and the expected row counts (a truncated or stale file fails that check and
is rewritten). Leftover temporary files of a killed run are deleted, and so are shards beyond the
new last one. Finally the `documents` table is reloaded from all docs shards in one transaction
and the shard views are (re)registered (`docs_shards`, plus `gold_shards` / `recall_shards`).
Every footer carries the fingerprint of the ingest settings (warehouse/shard_io.py).

    .venv/bin/python -m corpora.ingest --config configs/tiny.yaml --run runs/tiny
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from configs.fingerprint import config_fingerprint
from configs.schema import RunConfig, stage_main, stage_section
from corpora.common import CorpusError
from corpora.sources import SIDE_KINDS, SOURCES
from warehouse.contracts import DOCS_SCHEMA, RECALL_SCHEMA, TRIPLET_SCHEMA, Document
from warehouse.db import connect, register_shard_views
from warehouse.shard_io import (is_current, list_shards, remove_shards_outside, remove_temp_files,
                                shard_path, write_shard)

log = logging.getLogger(__name__)

INGEST_KINDS = ("docs", *SIDE_KINDS)
DROP_REASONS = ("empty_doc", "invalid_utf8", "duplicate_id", "short_doc")


def split_of(doc_id: str, val_fraction: float) -> str:
    """"val" or "train", from sha256 of the id (stable across runs and machines)."""
    h = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
    return "val" if h / 2**64 < val_fraction else "train"


def source_documents(cfg: RunConfig) -> tuple[Iterator[Document], int]:
    """The configured source's documents and how many it yields at most (0: unknown)."""
    source = SOURCES[cfg.ingest.source]
    section = cfg.ingest.section(source.name)
    total = source.total(section) if source.total else 0
    return source.documents(section, cfg.seed), total


def _valid_text(text: str | bytes) -> str | None:
    """The text as a str, or None when it is not valid UTF-8."""
    try:
        if isinstance(text, bytes):
            return text.decode("utf-8")
        text.encode("utf-8")  # a str with lone surrogates cannot be encoded
        return text
    except UnicodeError:
        return None


def clean_documents(docs: Iterable[Document], counters: Counter[str],
                    min_chars: int = 0) -> Iterator[Document]:
    """Documents with valid, non-empty str text of at least `min_chars` characters and unique
    ids; drops are counted in `counters`."""
    seen: set[str] = set()
    for doc in docs:
        text = _valid_text(doc.text)
        reason = ("invalid_utf8" if text is None else "empty_doc" if not text.strip()
                  else "short_doc" if len(text) < min_chars
                  else "duplicate_id" if doc.doc_id in seen else None)
        if reason:
            counters[reason] += 1
            if reason != "short_doc":  # a length filter drops most of a web corpus: no line each
                log.warning("ingest: skipping document %r: %s", doc.doc_id, reason)
            continue
        seen.add(doc.doc_id)
        yield doc if text is doc.text else dataclasses.replace(doc, text=text)


def shard_tables(docs: list[Document], kinds: tuple[str, ...], val_fraction: float) -> dict[str, pa.Table]:
    """The tables of one shard: docs plus its side kinds."""
    tables = {"docs": pa.Table.from_pylist(
        [{"doc_id": d.doc_id, "text": d.text, "source": d.source, "url": d.url,
          "split": split_of(d.doc_id, val_fraction)} for d in docs], schema=DOCS_SCHEMA)}
    if "gold" in kinds:
        tables["gold"] = pa.Table.from_pylist(
            [t.row() for d in docs for t in d.gold], schema=TRIPLET_SCHEMA)
    if "recall" in kinds:
        tables["recall"] = pa.Table.from_pylist(
            [r.row(d.doc_id) for d in docs for r in d.recalls], schema=RECALL_SCHEMA)
    return tables


def load_documents_table(run_dir: Path) -> int:
    """Reload the `documents` table from all docs shards in one transaction; register views."""
    run_dir = Path(run_dir)
    pattern = str(run_dir.resolve() / "docs" / "shard_*.parquet").replace("'", "''")
    con = connect(run_dir)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM documents")
        if list_shards(run_dir, "docs"):
            con.execute(
                "INSERT INTO documents SELECT doc_id, "
                "CAST(regexp_extract(filename, 'shard_(\\d+)\\.parquet$', 1) AS INTEGER), "
                f"split, source, url, length(text), text FROM read_parquet('{pattern}', filename = true)")
        con.execute("COMMIT")
        register_shard_views(con, run_dir)
        return con.execute("SELECT count(*) FROM documents").fetchall()[0][0]
    finally:
        con.close()


def run_ingest(cfg: RunConfig, run_dir: Path,
               on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the docs (and gold/recall) shards and the documents table; resumable (see above)."""
    run_dir = Path(run_dir)
    ing = cfg.ingest
    kinds = SOURCES[ing.source].side_kinds
    fingerprint = config_fingerprint(stage_section(cfg, "ingest"))
    documents, expected = source_documents(cfg)
    counters: Counter[str] = Counter({reason: 0 for reason in DROP_REASONS})
    remove_temp_files(run_dir, INGEST_KINDS)
    done = num_shards = gold_rows = recall_rows = 0
    cleaned = clean_documents(documents, counters, ing.min_chars)
    shards = iter(lambda: list(islice(cleaned, ing.docs_per_shard)), [])  # lists of docs_per_shard
    for k, docs in enumerate(shards):
        counts = {"docs": len(docs), "gold": sum(len(d.gold) for d in docs),
                  "recall": sum(len(d.recalls) for d in docs)}
        paths = {kind: shard_path(run_dir, kind, k) for kind in (*kinds, "docs")}
        if not all(is_current(p, fingerprint, counts[kind]) for kind, p in paths.items()):
            tables = shard_tables(docs, kinds, ing.val_fraction)
            for kind in (*kinds, "docs"):  # docs last: its presence implies the siblings'
                write_shard(tables[kind], paths[kind], fingerprint)
        num_shards, done = k + 1, done + len(docs)
        gold_rows += counts["gold"]
        recall_rows += counts["recall"]
        if on_progress:
            on_progress(done, max(expected, done))
    if done == 0:
        raise CorpusError(f"ingest: no documents left from source {ing.source!r} "
                          f"(dropped: {dict(counters)})")
    # shards past the last one, and side kinds this source does not write
    remove_shards_outside(run_dir, ("docs", *kinds), set(range(num_shards)))
    remove_shards_outside(run_dir, tuple(k for k in SIDE_KINDS if k not in kinds), set())
    n_docs = load_documents_table(run_dir)
    if on_progress:
        on_progress(done, done)
    outputs = [str(p.relative_to(run_dir)) for kind in ("docs", *kinds)
               for p in list_shards(run_dir, kind)]
    return {"outputs": outputs,
            "rows": {"documents": n_docs, "shards": num_shards, "gold_triplets": gold_rows,
                     "recalls": recall_rows},
            "counters": dict(counters)}


def main() -> None:
    stage_main(__doc__, run_ingest, (CorpusError,))


if __name__ == "__main__":
    main()
