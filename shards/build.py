"""The shards stage: parallel `tokens`, `memory` and `windows` shards, one set per docs shard.

For docs shard k this writes (DESIGN §4):

- `memory/shard_k.parquet`: one row per triplet of the warehouse (every extractor; the trainer
  filters by `source`) with `token_pos`, `clause_pos` (the stating clause is the tokens
  [clause_pos, token_pos); the `sentences` and `selected_raw` variants read it), the token ids
  of subject / relation / object, canonical ids (-1 when unknown), polarity and whether the
  relation is functional. Every triplet of one
  canonical relation has the same relation tokens: its most frequent surface form in the warehouse
  ("lived in", "living in" and "moved to" are spelt "lives in"), so every extractor's memory reads
  the same and a model trained on oracle memory can read spaCy's (the lemma `relations.name`,
  "live in", is rarer in text than any surface form). Relations without an id keep their surface.
- `tokens/shard_k.parquet`: one row per document: `<|bos|>` then the text's tokens (so text token
  i is document token i + 1), the `recall` token indexes and `recall_spans` (start, end,
  stated_pos): the token range of each recalled value and the `token_pos` of its statement.
- `windows/shard_k.parquet`: what each T-token training window saw, decoded with the run's
  tokenizer: one row per (document, window, memory source) with the triplets the memory policy
  keeps for it (subject / relation / object text, polarity, age; the `window_memory_depth`
  newest, each with its `rank`, 1 = newest) and the recall spans it is scored on, as text. They
  come from the functions training and evaluation call (`model.dataloader.window_starts`,
  `model.memory.build_window_memory`, which `triplet` and `kv` read as their slots, and
  `model.dataloader.window_recall_spans`). The policy keeps the M newest survivors, so the
  slots of a model with M slots are the rows with `rank <= M`, whatever M: a sweep over M
  shares one shards stage. The `window_memory` view (warehouse/db.py) has one row per slot:

      SELECT rank, subject, relation, object, negated, age, recall FROM window_memory
      WHERE doc_id = 'syn-000001' AND window_index = 2 AND source = 'oracle' AND rank <= 16
      ORDER BY rank DESC   -- slot order: oldest first

Character spans become token indexes as shards/spans.py says.

Memory strings are encoded with a leading space: the byte-level BPE has no prefix space, so a name
in the middle of a sentence is tokenized as " Name", and memory must use the same ids as the text.

Recall tokens: gold spans where ingest wrote a recall shard, else the real-text heuristic of
shards/recall.py over the objects of the document's oracle (gold) triplets when it has any, else
those of every extractor.

Memory shards are written before tokens shards, and windows shards last. Their footers carry a
fingerprint of what shard k was built from (the stage's settings and code, the tokenizer,
docs/recall shard k and its triplets): a rerun (after a kill, say) skips shard k when all three
exist with the current fingerprint and rebuilds the rest, so a changed input never leaves a stale
shard behind. Finally the `tokens_shards`, `memory_shards`, `window_shards` and `window_memory`
warehouse views are (re)registered, and the manifest's
`stats.evicted_context` says per split what share of the T-token training windows have context
evicted before them and how many tokens (mean, median): what any memory could hold.

    python -m shards.build --config configs/tiny.yaml --run runs/tiny [--force] [--workers N]
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from configs.fingerprint import code_version, config_fingerprint
from configs.schema import RunConfig, stage_section
from model.dataloader import (TrainingDocument, evicted_context, window_recall_spans,
                              window_starts)
from model.memory import MAX_SURFACE_TOKENS, build_window_memory, memory_rows
from model.tokenizer import TOKENIZER_FILE, TextTokenizer, load_run_tokenizer
from shards.recall import gold_recall_spans, real_text_recall_spans
from shards.spans import char_span_tokens, tokenize_docs, token_pos
from warehouse.contracts import MEMORY_SCHEMA, TOKENS_SCHEMA, WINDOWS_SCHEMA
from warehouse.db import connect, register_shard_views
from warehouse.contracts import window_memory_depth
from warehouse.shard_io import (UnreadableShard, footer_fingerprint, is_current, list_shards,
                                read_shard, remove_shards_outside, shard_index, shard_path,
                                write_shard)

RECALL_COLUMNS = ["doc_id", "char_start", "char_end", "stated_char_end"]
SHARDS_WRITTEN = ("memory", "tokens", "windows")  # the kinds this stage writes, in write order
SHARDS_PER_WORKER = 8
# The triplets of the warehouse as the shards stage needs them, ordered for deterministic shards.
# A canonicalized relation is spelt by its most frequent surface form (ties: the first in order).
RELATION_SPELLING = """
    surfaces AS (
        SELECT relation_id, relation, count(*) AS n FROM canonical_triplets
        WHERE relation_id IS NOT NULL GROUP BY relation_id, relation),
    spelling AS (
        SELECT relation_id, relation AS spelling FROM surfaces
        QUALIFY row_number() OVER (PARTITION BY relation_id ORDER BY n DESC, relation) = 1)
"""
TRIPLETS_QUERY = f"""
    WITH {RELATION_SPELLING}
    SELECT t.shard, t.doc_id, t.subject, coalesce(s.spelling, t.relation) AS relation, t.object,
           t.negated, t.char_start, t.char_end, t.extractor AS source,
           coalesce(t.subject_id, -1) AS subject_id, coalesce(t.relation_id, -1) AS relation_id,
           coalesce(t.object_id, -1) AS object_id, coalesce(r.functional, false) AS functional
    FROM canonical_triplets t LEFT JOIN relations r ON t.relation_id = r.relation_id
                    LEFT JOIN spelling s ON t.relation_id = s.relation_id
    ORDER BY t.shard, t.doc_id, t.char_end, t.triplet_id
"""


@lru_cache(maxsize=1)
def _tokenizer(run_dir: str) -> TextTokenizer:
    return load_run_tokenizer(Path(run_dir))


def encode_surfaces(tok: TextTokenizer, strings: list[str]) -> dict[str, list[int]]:
    """Token ids of each distinct memory string, encoded with a leading space (module docstring)."""
    unique = list(dict.fromkeys(strings))
    return dict(zip(unique, tok.encode_batch([" " + s for s in unique])))


def memory_shard_row(r: dict[str, Any], token_pos: int, clause_pos: int,
                     surfaces: dict[str, list[int]]) -> dict[str, Any]:
    """The MEMORY_SCHEMA row of triplet `r` (TRIPLETS_QUERY's columns) stated in the clause of
    tokens [clause_pos, token_pos)."""
    return {
        "doc_id": r["doc_id"], "token_pos": token_pos, "clause_pos": clause_pos,
        "subject_tokens": surfaces[r["subject"]], "relation_tokens": surfaces[r["relation"]],
        "object_tokens": surfaces[r["object"]],
        "subject_id": r["subject_id"], "relation_id": r["relation_id"], "object_id": r["object_id"],
        "negated": r["negated"], "functional": r["functional"], "source": r["source"],
    }


def _read_recall(run_dir: Path, k: int) -> dict[str, list[dict[str, Any]]] | None:
    path = shard_path(run_dir, "recall", k)
    if not path.is_file():
        return None
    by_doc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in read_shard(path, RECALL_COLUMNS).to_pylist():
        by_doc[row["doc_id"]].append(row)
    return by_doc


def decoded_windows(doc: TrainingDocument, split: str, source: str, window_len: int, depth: int,
                    decode: Callable[[tuple[int, ...]], str]) -> list[dict[str, Any]]:
    """The WINDOWS_SCHEMA rows of `doc` (its memory rows: those of `source`): per training window,
    the `depth` newest triplets the memory policy keeps and the window's recall spans, decoded."""
    n = len(doc.tokens)
    rows = []
    for index, start in enumerate(window_starts(n, window_len)):
        kept = build_window_memory(doc.memory, start, depth)  # oldest first, as slots are read
        # surfaces as the model reads them: collate_memory keeps MAX_SURFACE_TOKENS of each
        slots = [{"rank": len(kept) - i, "subject": decode(slot.subject[:MAX_SURFACE_TOKENS]),
                  "relation": decode(slot.relation[:MAX_SURFACE_TOKENS]),
                  "object": decode(slot.object[:MAX_SURFACE_TOKENS]),
                  "negated": slot.negated, "age": slot.age}
                 for i, slot in enumerate(kept)]
        recall = [{"start": a, "end": b, "stated_pos": stated, "text": decode(tuple(doc.tokens[a:b]))}
                  for a, b, stated in window_recall_spans(doc.recall_spans, start, window_len, n)]
        rows.append({"doc_id": doc.doc_id, "split": split, "window_index": index,
                     "window_start": start, "source": source, "slots": slots, "recall_spans": recall})
    return rows


def build_shard(run_dir: Path, k: int, triplets: pa.Table, reach: int,
                min_object_chars: int, fingerprint: str, window_len: int, depth: int,
                sources: list[str]) -> dict[str, int]:
    """Write memory, tokens then windows shard k from docs shard k and its triplets (`sources`:
    every extractor of the run, so each window has a row per source); returns drop counters."""
    run_dir = Path(run_dir)
    tok = _tokenizer(str(run_dir))
    docs = read_shard(shard_path(run_dir, "docs", k), ["doc_id", "text", "split"]).to_pylist()
    tokenized = tokenize_docs(tok, [d["text"] for d in docs])
    by_id = {d["doc_id"]: (d, t) for d, t in zip(docs, tokenized)}
    counters: Counter[str] = Counter()

    rows = triplets.to_pylist()
    known = [r for r in rows if r["doc_id"] in by_id]
    counters["triplet_doc_not_in_shard"] += len(rows) - len(known)
    surfaces = encode_surfaces(tok, [r[f] for r in known for f in ("subject", "relation", "object")])
    memory = []
    for r in known:
        doc = by_id[r["doc_id"]][1]
        memory.append(memory_shard_row(r, token_pos(doc, r["char_end"]),
                                       char_span_tokens(doc, r["char_start"], r["char_end"])[0],
                                       surfaces))
    write_shard(pa.Table.from_pylist(memory, schema=MEMORY_SCHEMA), shard_path(run_dir, "memory", k),
                fingerprint)

    gold = _read_recall(run_dir, k)
    statements = _recall_statements(known)
    token_rows = []
    for d, t in zip(docs, tokenized):
        if gold is not None:
            spans = gold_recall_spans(t, gold.get(d["doc_id"], []))
        else:
            spans = real_text_recall_spans(t, d["text"], statements.get(d["doc_id"], []),
                                           reach, min_object_chars)
        token_rows.append({
            "doc_id": d["doc_id"], "split": d["split"], "tokens": t.tokens,
            "recall": sorted({i for s in spans for i in range(s.start, s.end)}),
            "recall_spans": [s._asdict() for s in spans],
        })
    write_shard(pa.Table.from_pylist(token_rows, schema=TOKENS_SCHEMA), shard_path(run_dir, "tokens", k),
                fingerprint)

    decode = lru_cache(maxsize=None)(lambda ids: tok.decode(list(ids)).strip())
    memory_by_doc: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in memory:
        memory_by_doc[row["doc_id"], row["source"]].append(row)
    window_rows = []
    for row in token_rows:
        tokens = np.asarray(row["tokens"], dtype=np.int64)
        spans = [(s["start"], s["end"], s["stated_pos"]) for s in row["recall_spans"]]
        for source in sources:
            doc = TrainingDocument(row["doc_id"], tokens, np.zeros(0, dtype=bool), spans,
                                   memory_rows(memory_by_doc[row["doc_id"], source]))
            window_rows += decoded_windows(doc, row["split"], source, window_len, depth, decode)
    write_shard(pa.Table.from_pylist(window_rows, schema=WINDOWS_SCHEMA),
                shard_path(run_dir, "windows", k), fingerprint)
    return dict(counters)


def _recall_statements(triplets: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """Per document, (object, char_end) of its oracle triplets if it has any, else of all."""
    by_doc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in triplets:
        by_doc[r["doc_id"]].append(r)
    out = {}
    for doc_id, rows in by_doc.items():
        gold = [r for r in rows if r["source"] == "oracle"]
        out[doc_id] = [(r["object"], r["char_end"]) for r in (gold or rows)]
    return out


def _read_triplets(run_dir: Path) -> tuple[pa.Table, np.ndarray]:
    """The warehouse's triplets, sorted by shard, and their shard column (connection closed at once)."""
    con = connect(run_dir)
    try:
        table = con.sql(TRIPLETS_QUERY).to_arrow_table()
    finally:
        con.close()
    return table, table.column("shard").to_numpy()


def _shard_slice(table: pa.Table, shards: np.ndarray, k: int) -> pa.Table:
    lo, hi = np.searchsorted(shards, k, "left"), np.searchsorted(shards, k, "right")
    return table.slice(lo, hi - lo)


def _shard_rows(run_dir: Path, k: int) -> Counter[str]:
    """Row counts of a finished pair of shards (read from the files, so resumed shards count)."""
    tokens = pq.read_table(shard_path(run_dir, "tokens", k), columns=["tokens", "recall_spans"])
    sources = pq.read_table(shard_path(run_dir, "memory", k), columns=["source"]).column("source")
    rows = Counter({
        "documents": tokens.num_rows,
        "tokens": int(pc.sum(pc.list_value_length(tokens.column("tokens"))).as_py() or 0),
        "recall_spans": int(pc.sum(pc.list_value_length(tokens.column("recall_spans"))).as_py() or 0),
    })
    for source, n in Counter(sources.to_pylist()).items():
        rows[f"memory_rows_{source}"] += n
    return rows


def shard_fingerprint(cfg: RunConfig, tokenizer_id: str, run_dir: Path, k: int,
                      triplets: pa.Table) -> str:
    """What tokens/memory shard k depend on: the stage's settings and code, the tokenizer, docs
    shard k (ingest's footer fingerprint), its recall shard and its triplets."""
    inputs = {}
    for kind in ("docs", "recall"):
        path = shard_path(run_dir, kind, k)
        if path.is_file():
            fingerprint = footer_fingerprint(path)
            meta = pq.read_metadata(path)
            inputs[kind] = [fingerprint, meta.num_rows, meta.serialized_size]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, triplets.schema) as writer:
        writer.write_table(triplets)
    inputs["triplets"] = hashlib.sha256(sink.getvalue()).hexdigest()
    settings = stage_section(cfg, "shards")  # without `workers`: it never changes a shard
    return config_fingerprint({"settings": settings, "tokenizer": tokenizer_id,
                               "code": code_version(("shards.build",)), **inputs})


def _is_current(run_dir: Path, k: int, fingerprint: str) -> bool:
    """Both shards exist, are readable and were built from the current inputs."""
    return all(is_current(shard_path(run_dir, kind, k), fingerprint) for kind in SHARDS_WRITTEN)


def default_workers(shards_to_do: int) -> int:
    """One process per CPU core, but at most one per SHARDS_PER_WORKER shards to do: starting
    a process (imports, tokenizer) costs about as much as building a few shards."""
    return max(1, min(os.cpu_count() or 1, shards_to_do // SHARDS_PER_WORKER))


def run_shards(cfg: RunConfig, run_dir: Path,
               on_progress: Callable[[int, int], None] | None = None) -> dict:
    """The shards stage (see the module docstring); returns outputs, row counts and counters."""
    run_dir = Path(run_dir)
    docs_shards = [shard_index(p) for p in list_shards(run_dir, "docs")]
    if not docs_shards:
        raise FileNotFoundError(f"{run_dir / 'docs'}: no docs shards (run the ingest stage first)")
    _tokenizer.cache_clear()
    _tokenizer(str(run_dir))  # fail here, once, when the tokenizer stage has not run
    tokenizer_id = hashlib.sha256((run_dir / TOKENIZER_FILE).read_bytes()).hexdigest()
    # tokens/memory shards whose docs shard is gone (a smaller corpus) would pollute the views
    remove_shards_outside(run_dir, SHARDS_WRITTEN, set(docs_shards))
    triplets, triplet_shards = _read_triplets(run_dir)
    reach = cfg.model.sequence_len + cfg.model.memory_slots
    window_len, depth = cfg.model.sequence_len, window_memory_depth(cfg.model.memory_slots)
    sources = sorted(set(triplets.column("source").to_pylist()))
    args = []
    for k in docs_shards:
        shard_triplets = _shard_slice(triplets, triplet_shards, k)
        fingerprint = shard_fingerprint(cfg, tokenizer_id, run_dir, k, shard_triplets)
        if not _is_current(run_dir, k, fingerprint):
            args.append((run_dir, k, shard_triplets, reach, cfg.shards.recall_min_object_chars,
                         fingerprint, window_len, depth, sources))
    todo = [a[1] for a in args]

    counters: Counter[str] = Counter({"shards_resumed": len(docs_shards) - len(todo)})
    done = len(docs_shards) - len(todo)
    if on_progress:
        on_progress(done, len(docs_shards))
    workers = min(cfg.shards.workers or default_workers(len(todo)), len(todo))
    if workers <= 1:
        results = (build_shard(*a) for a in args)
        pool = None
    else:
        # spawn: the parent already used the (multi-threaded) tokenizer, which fork would break
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(build_shard, *zip(*args))
    try:
        for shard_counters in results:
            counters.update(shard_counters)
            done += 1
            if on_progress:
                on_progress(done, len(docs_shards))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    rows: Counter[str] = Counter()
    for k in docs_shards:
        rows.update(_shard_rows(run_dir, k))
    con = connect(run_dir)
    try:
        register_shard_views(con, run_dir)
    finally:
        con.close()
    outputs = [str(shard_path(Path(), kind, k)) for kind in SHARDS_WRITTEN for k in docs_shards]
    return {"outputs": outputs, "rows": dict(rows), "counters": dict(counters),
            "stats": {"evicted_context": window_stats(run_dir, docs_shards, cfg.model.sequence_len)}}


def window_stats(run_dir: Path, docs_shards: list[int], window_len: int) -> dict[str, Any]:
    """Per split, how many training windows have context evicted before them and how much
    (model.dataloader.evicted_context): a corpus of documents shorter than two windows gives
    every memory variant nothing to hold."""
    lengths: dict[str, list[np.ndarray]] = defaultdict(list)
    for k in docs_shards:
        shard = pq.read_table(shard_path(run_dir, "tokens", k), columns=["split", "tokens"])
        n = pc.list_value_length(shard.column("tokens")).to_numpy(zero_copy_only=False)
        split = shard.column("split").to_numpy(zero_copy_only=False)
        for name in np.unique(split):
            lengths[str(name)].append(n[split == name])
    return {"window_len": window_len,
            **{name: evicted_context(np.concatenate(parts), window_len)
               for name, parts in sorted(lengths.items())}}


def main() -> None:
    from configs.schema import load_config_or_exit
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/tiny")
    parser.add_argument("--workers", type=int, help="override shards.workers")
    parser.add_argument("--force", action="store_true",
                        help="delete the existing tokens and memory shards first (rebuild all)")
    args = parser.parse_args()
    cfg = load_config_or_exit(args.config)
    if args.workers:
        cfg = cfg.model_copy(update={"shards": cfg.shards.model_copy(update={"workers": args.workers})})
    from warehouse.run_lock import RunLocked, run_lock
    started = time.perf_counter()
    try:
        with run_lock(args.run):
            if args.force:
                for kind in SHARDS_WRITTEN:
                    for path in list_shards(args.run, kind):
                        path.unlink()
            result = run_shards(cfg, args.run)
    except (RunLocked, UnreadableShard, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    seconds = time.perf_counter() - started
    print(f"shards: {result['rows']} in {seconds:.2f} s "
          f"({result['rows'].get('tokens', 0) / seconds:,.0f} tokens/s)")


if __name__ == "__main__":
    main()
