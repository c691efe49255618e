"""The ingest stage: a corpus source -> parquet shards + the warehouse `documents` table.

`run_ingest(cfg, run_dir)` streams the configured source (corpora/synthetic.py, fineweb.py,
parquet_source.py, redocred.py), drops what cannot be a document, and writes shard k for every
`ingest.docs_per_shard` documents that survive:

  docs/shard_k.parquet     doc_id, text, source, url, split         (every source)
  gold/shard_k.parquet     TRIPLET_SCHEMA rows, extractor "oracle"  (synthetic, redocred)
  recall/shard_k.parquet   doc_id, char_start, char_end, subject,   (synthetic only; the shards
                           relation, value, stated_char_end,         stage treats a missing recall
                           distance_words                            shard as "no gold spans")

Drops, counted by name and logged one line each, never a crash: `empty_doc` (empty or whitespace
only), `invalid_utf8` (bytes that do not decode, or a str with lone surrogates), `duplicate_id`
(the first document with an id is kept). split is "val" when the first 8 bytes of
sha256(doc_id), as a fraction of 2**64, fall below `ingest.val_fraction`, so it never changes.

Resume: every shard is written atomically, gold/recall before docs, so a docs shard on disk means
its siblings are there. Sources are deterministic streams, so shard k always holds the same
documents; a rerun skips shard k when all its files exist and their parquet footers carry this
config's fingerprint and the expected row counts (a truncated or stale file fails that check and
is rewritten). Leftover temporary files of a killed run are deleted, and so are shards beyond the
new last one. Finally the `documents` table is reloaded from all docs shards in one transaction
and the shard views are (re)registered (`docs_shards`, plus `gold_shards` / `recall_shards`).

    .venv/bin/python -m corpora.ingest --config configs/tiny.yaml --run runs/tiny
"""
from __future__ import annotations

import dataclasses
from itertools import islice
import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from configs.schema import RunConfig, config_fingerprint, stage_main, stage_section
from corpora.records import CorpusError, Record
from extraction.base import TRIPLET_SCHEMA
from warehouse.db import connect, register_shard_views
from warehouse.shards import list_shards, shard_index, shard_path, write_parquet_atomically

log = logging.getLogger(__name__)

DOCS_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("text", pa.string()),
    ("source", pa.string()),
    ("url", pa.string()),
    ("split", pa.string()),
])
RECALL_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("char_start", pa.int32()),  # the recalled value in the recall sentence
    ("char_end", pa.int32()),
    ("subject", pa.string()),
    ("relation", pa.string()),
    ("value", pa.string()),
    ("stated_char_end", pa.int32()),  # end of the sentence that last stated the fact
    ("distance_words", pa.int32()),
])
# shard kinds each source writes besides docs (written before docs)
SIDE_KINDS: dict[str, tuple[str, ...]] = {
    "synthetic": ("gold", "recall"), "redocred": ("gold",), "fineweb": (), "parquet": ()}
INGEST_KINDS = ("docs", "gold", "recall")
FINGERPRINT_KEY = b"ingest_fingerprint"
DROP_REASONS = ("empty_doc", "invalid_utf8", "duplicate_id")


def split_of(doc_id: str, val_fraction: float) -> str:
    """"val" or "train", from sha256 of the id (stable across runs and machines)."""
    h = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
    return "val" if h / 2**64 < val_fraction else "train"


def source_records(cfg: RunConfig) -> tuple[Iterator[Record], int]:
    """The configured source's records and how many it yields at most (for progress)."""
    ing = cfg.ingest
    if ing.source == "synthetic":
        from corpora.synthetic import generate_documents
        docs = generate_documents(ing.synthetic, cfg.seed)
        return (Record(d.doc_id, d.text, "synthetic", None, d.gold, d.recalls) for d in docs), \
            ing.synthetic.num_docs
    if ing.source == "fineweb":
        from corpora.fineweb import fineweb_records
        return fineweb_records(ing.fineweb), ing.fineweb.num_docs
    if ing.source == "parquet":
        from corpora.parquet_source import count_rows, parquet_records
        return parquet_records(ing.parquet), count_rows(ing.parquet)
    from corpora.redocred import redocred_records
    records = list(redocred_records(ing.redocred))
    return iter(records), len(records)


def _valid_text(text: str | bytes) -> str | None:
    """The text as a str, or None when it is not valid UTF-8."""
    try:
        if isinstance(text, bytes):
            return text.decode("utf-8")
        text.encode("utf-8")  # a str with lone surrogates cannot be encoded
        return text
    except UnicodeError:
        return None


def clean_records(records: Iterable[Record], counters: Counter[str]) -> Iterator[Record]:
    """Records with valid, non-empty str text and unique ids; drops are counted in `counters`."""
    seen: set[str] = set()
    for rec in records:
        text = _valid_text(rec.text)
        reason = ("invalid_utf8" if text is None else "empty_doc" if not text.strip()
                  else "duplicate_id" if rec.doc_id in seen else None)
        if reason:
            counters[reason] += 1
            log.warning("ingest: skipping document %r: %s", rec.doc_id, reason)
            continue
        seen.add(rec.doc_id)
        yield rec if text is rec.text else dataclasses.replace(rec, text=text)


def shard_tables(docs: list[Record], kinds: tuple[str, ...], val_fraction: float,
                 fingerprint: str) -> dict[str, pa.Table]:
    """The tables of one shard: docs plus its side kinds, stamped with the config fingerprint."""
    tables = {"docs": pa.Table.from_pylist(
        [{"doc_id": d.doc_id, "text": d.text, "source": d.source, "url": d.url,
          "split": split_of(d.doc_id, val_fraction)} for d in docs], schema=DOCS_SCHEMA)}
    if "gold" in kinds:
        tables["gold"] = pa.Table.from_pylist(
            [t.row() for d in docs for t in d.gold or []], schema=TRIPLET_SCHEMA)
    if "recall" in kinds:
        tables["recall"] = pa.Table.from_pylist(
            [r.row(d.doc_id) for d in docs for r in d.recalls or []], schema=RECALL_SCHEMA)
    return {kind: t.replace_schema_metadata({FINGERPRINT_KEY: fingerprint.encode()})
            for kind, t in tables.items()}


def _shard_is_complete(path: Path, fingerprint: str, num_rows: int) -> bool:
    """A cheap footer check: readable, written by this config, with the expected row count."""
    if not path.is_file():
        return False
    try:
        meta = pq.read_metadata(path)
        ours = (meta.metadata or {}).get(FINGERPRINT_KEY) == fingerprint.encode()
        return ours and meta.num_rows == num_rows
    except (OSError, pa.ArrowException):
        log.warning("ingest: %s is unreadable (cut off?); rewriting it", path)
        return False


def _remove_temp_files(run_dir: Path) -> None:
    """Temporary files a killed run left behind (they never become shards)."""
    for kind in INGEST_KINDS:
        for tmp in (Path(run_dir) / kind).glob(".shard_*.parquet.tmp-*"):
            tmp.unlink(missing_ok=True)


def _remove_stale_shards(run_dir: Path, kinds: tuple[str, ...], num_shards: int) -> None:
    """Shards past the last one, and shards of kinds this source does not write."""
    for kind in INGEST_KINDS:
        for path in list_shards(run_dir, kind):
            if (kind != "docs" and kind not in kinds) or shard_index(path) >= num_shards:
                path.unlink()


def load_documents(run_dir: Path) -> int:
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
    kinds = SIDE_KINDS[ing.source]
    fingerprint = config_fingerprint(stage_section(cfg, "ingest"))
    records, expected = source_records(cfg)
    counters: Counter[str] = Counter({reason: 0 for reason in DROP_REASONS})
    _remove_temp_files(run_dir)
    done = shards = gold_rows = recall_rows = 0
    cleaned = clean_records(records, counters)
    shards = iter(lambda: list(islice(cleaned, ing.docs_per_shard)), [])  # lists of docs_per_shard
    for k, docs in enumerate(shards):
        counts = {"docs": len(docs), "gold": sum(len(d.gold or []) for d in docs),
                  "recall": sum(len(d.recalls or []) for d in docs)}
        paths = {kind: shard_path(run_dir, kind, k) for kind in (*kinds, "docs")}
        if not all(_shard_is_complete(p, fingerprint, counts[kind]) for kind, p in paths.items()):
            tables = shard_tables(docs, kinds, ing.val_fraction, fingerprint)
            for kind in (*kinds, "docs"):  # docs last: its presence implies the siblings'
                write_parquet_atomically(tables[kind], paths[kind])
        shards, done = k + 1, done + len(docs)
        gold_rows += counts["gold"]
        recall_rows += counts["recall"]
        if on_progress:
            on_progress(done, max(expected, done))
    if done == 0:
        raise CorpusError(f"ingest: no documents left from source {ing.source!r} "
                          f"(dropped: {dict(counters)})")
    _remove_stale_shards(run_dir, kinds, shards)
    n_docs = load_documents(run_dir)
    if on_progress:
        on_progress(done, done)
    outputs = [str(p.relative_to(run_dir)) for kind in ("docs", *kinds)
               for p in list_shards(run_dir, kind)]
    return {"outputs": outputs,
            "rows": {"documents": n_docs, "shards": shards, "gold_triplets": gold_rows,
                     "recalls": recall_rows},
            "counters": dict(counters)}


def main() -> None:
    stage_main(__doc__, run_ingest, (CorpusError,))


if __name__ == "__main__":
    main()
