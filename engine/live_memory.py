"""Memory rows from text, made as the pipeline makes them, and memories saved and merged.

    vocab = RunVocabulary(run_dir)       # the run's entity / relation ids and relation spellings
    live = LiveMemory(tok, make_backend("spacy", extract_cfg), vocab, loaded=read_memories([...]))
    state = live.state_after(tokens)     # MemoryState: rows for the policy + the triplet behind each

`state_after(tokens)` is what the extraction sidecar runs on the evicted tokens of a document
(`<|bos|>` first), and it retraces the offline path step by step:
- extract: the backend reads the evicted text as one document (as the extract stage reads a
  whole document), up to its last finished sentence: the rest continues in the window, its
  clause's end is unknown, and a fragment would sway the parse of the sentence before it
  ("... born in Pivond. Tousoura Lais" gave the object "Pivond Tousoura Lais");
- canonicalize: `extraction.canonicalize.canonicalize_rows` (entity keys, the within-document
  alias merge per document and extractor, relation keys, the run's embedding merge if it has one);
- ids: a name the run's warehouse knows gets the warehouse's id (corpus-wide ids, so even the
  `vocab` TripletEncoder reads the rows offline memory would have), a new name a new id;
  relations are spelt by the run's spelling table (shards.build.RELATION_SPELLING: the canonical
  relation's most frequent surface) and are functional as the warehouse says;
- rows: `shards.build.memory_shard_row` with `token_pos` from `shards.spans.token_pos`, then
  `model.memory.memory_rows`; the engine applies the variant's memory builder (the policy).
The warehouse is opened read-only and only for a moment (a stage may want to write it).

Saved memories are parquet files of triplets (warehouse.contracts.TRIPLET_SCHEMA, oldest first);
`RUN:DOC_ID` names the triplets one run extracted from one of its documents. Merging is a set
union through the policy: the triplets of every memory, in the order given, then the live ones,
are canonicalized together (one document each) and count as stated before the session
(`token_pos` 0, ages counted from there), so a later memory's statement of a functional relation
replaces an earlier one's, identical facts are kept once, and negations keep their polarity.
`save_memory` writes the triplets behind the rows the policy keeps (every one, no slot cap).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from configs.schema import CanonicalizeConfig
from extraction.canonicalize import FUNCTIONAL_RELATIONS, canonicalize_rows, load_embedder
from extraction.registry import Backend
from model.memory import MemoryRow, memory_row, kept_rows
from model.tokenizer import TextTokenizer
from shards.build import RELATION_SPELLING, encode_surfaces, memory_shard_row
from shards.spans import TokenizedDoc, char_span_tokens, decode_doc, token_pos
from warehouse.contracts import TRIPLET_SCHEMA, Document, Triplet, extractor_backend
from warehouse.db import connect, db_path
from warehouse.shard_io import list_shards, write_parquet_atomically

LIVE_DOC = "live"  # doc_id of the session's own text
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|$)")  # . ! or ? (and closing quotes) before a space
RELATIONS_QUERY = f"""
    WITH {RELATION_SPELLING}
    SELECT r.name, r.relation_id, r.functional, s.spelling
    FROM relations r LEFT JOIN spelling s ON r.relation_id = s.relation_id
"""


class MemoryFileError(ValueError):
    """A memory that cannot be read (no such file, not parquet, not TRIPLET_SCHEMA)."""


class Relation(NamedTuple):
    relation_id: int
    functional: bool
    spelling: str | None  # the surface every triplet of this relation is written with


class RunVocabulary:
    """Canonical names -> the run's ids; names the run has never seen get new ids."""

    def __init__(self, run_dir: Path | None):
        self.run_dir = run_dir if run_dir is not None and db_path(run_dir).is_file() else None
        self._lock = threading.Lock()
        self._entities: dict[str, int] = {}
        self._relations: dict[str, Relation] = {}
        self._next_entity = self._next_relation = 0
        if self.run_dir is not None:
            con = connect(self.run_dir, read_only=True)
            try:
                for name, rid, functional, spelling in con.execute(RELATIONS_QUERY).fetchall():
                    self._relations[name] = Relation(int(rid), bool(functional), spelling)
                (max_entity,) = con.execute("SELECT max(entity_id) FROM entities").fetchone()
            finally:
                con.close()
            self._next_entity = 0 if max_entity is None else int(max_entity) + 1
            self._next_relation = max((r.relation_id for r in self._relations.values()), default=-1) + 1

    def entity_ids(self, names: Iterable[str]) -> dict[str, int]:
        with self._lock:
            new = sorted(set(names) - set(self._entities))
            if new and self.run_dir is not None:
                con = connect(self.run_dir, read_only=True)
                try:
                    self._entities.update(con.execute(
                        "SELECT name, entity_id FROM entities WHERE list_contains(?, name)",
                        [new]).fetchall())
                finally:
                    con.close()
            for name in new:
                if name not in self._entities:
                    self._entities[name] = self._next_entity
                    self._next_entity += 1
            return {n: self._entities[n] for n in names}

    def relation(self, name: str) -> Relation:
        with self._lock:
            if name not in self._relations:
                self._relations[name] = Relation(self._next_relation, name in FUNCTIONAL_RELATIONS, None)
                self._next_relation += 1
            return self._relations[name]


@dataclass(frozen=True)
class MemoryState:
    """Memory rows (sorted by token_pos, for the policy) and the triplet behind each row."""
    rows: list[MemoryRow]
    triplets: list[Triplet] = field(default_factory=list)  # empty for rows not made from text


class LiveMemory:
    """Saved memories plus triplets extracted from a document's evicted text, as memory rows."""

    def __init__(self, tok: TextTokenizer, backend: Backend | None, vocab: RunVocabulary,
                 canonicalize: CanonicalizeConfig = CanonicalizeConfig(),
                 loaded: Sequence[Triplet] = ()):
        self.tok, self.backend, self.vocab = tok, backend, vocab
        self.loaded = list(loaded)
        self.embed = load_embedder(canonicalize.embedding_model) if canonicalize.embedding_model else None
        self.threshold = canonicalize.similarity_threshold

    def state_after(self, tokens: Sequence[int]) -> MemoryState:
        """The memory once document tokens (`<|bos|>` first) have left the window."""
        if self.backend is None or len(tokens) < 2:
            return self.state([], None)
        text, doc = decode_doc(self.tok, tokens)
        return self.state(self.stated_triplets(text), doc)

    def stated_triplets(self, text: str) -> list[Triplet]:
        """The backend's triplets of the finished sentences of `text`, in statement order."""
        finished = finished_text(text)
        if not finished.strip():
            return []
        triplets, _ = self.backend.extract([Document(LIVE_DOC, finished)])
        return sorted(triplets, key=lambda t: t.char_end)

    def state(self, live: list[Triplet], doc: TokenizedDoc | None) -> MemoryState:
        """Rows of the loaded triplets (stated at token 0) and of `live` ones stated in `doc`."""
        triplets = self.loaded + live
        if not triplets:
            return MemoryState([], [])
        c = canonicalize_rows([(t.doc_id, t.extractor, t.subject, t.relation, t.object) for t in triplets],
                              self.embed, self.threshold)
        entity_names = {i: name for name, i in c.entities.items()}
        relation_names = {i: name for name, i in c.relations.items()}
        entity_ids = self.vocab.entity_ids(entity_names.values())
        relations = [self.vocab.relation(relation_names[i]) for i in c.relation_ids]
        spelt = [relation.spelling or t.relation for t, relation in zip(triplets, relations)]
        surfaces = encode_surfaces(self.tok, [s for t, relation in zip(triplets, spelt)
                                              for s in (t.subject, relation, t.object)])
        rows = []
        for i, t in enumerate(triplets):
            r = {"doc_id": t.doc_id, "subject": t.subject, "relation": spelt[i], "object": t.object,
                 "negated": t.negated, "source": t.extractor, "functional": relations[i].functional,
                 "subject_id": entity_ids[entity_names[c.subject_ids[i]]],
                 "relation_id": relations[i].relation_id,
                 "object_id": entity_ids[entity_names[c.object_ids[i]]]}
            live_row = i >= len(self.loaded)  # loaded memories count as stated at token 0
            pos = token_pos(doc, t.char_end) if live_row else 0
            clause = char_span_tokens(doc, t.char_start, t.char_end)[0] if live_row else 0
            rows.append((memory_row(memory_shard_row(r, pos, clause, surfaces)), t))
        rows.sort(key=lambda pair: pair[0].token_pos)  # stable: statement order within a position
        return MemoryState([r for r, _ in rows], [t for _, t in rows])


def finished_text(text: str) -> str:
    """`text` up to the end of its last finished sentence ("" when none has finished)."""
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return text[:ends[-1]] if ends else ""


# ---------------------------------------------------------------- saved memories

def read_memory(source: str, extractor: str = "spacy") -> list[Triplet]:
    """A saved memory: a parquet of triplets, or `RUN:DOC_ID` (that document's triplets from the
    run's `extractor`), oldest first."""
    if not source.endswith(".parquet") and ":" in source:
        run, doc_id = source.rsplit(":", 1)
        return run_document_triplets(Path(run), doc_id, extractor)
    path = Path(source)
    if not path.is_file():
        raise MemoryFileError(f"{path}: no such memory file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException):
        raise MemoryFileError(f"{path}: not a parquet file") from None
    missing = [f.name for f in TRIPLET_SCHEMA if f.name not in table.schema.names]
    if missing:
        raise MemoryFileError(f"{path}: not a memory file: no column {', '.join(missing)} (a memory is "
                              "a parquet of triplets, warehouse.contracts.TRIPLET_SCHEMA)")
    try:
        table = table.select(TRIPLET_SCHEMA.names).cast(TRIPLET_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise MemoryFileError(f"{path}: not a memory file: {str(err).splitlines()[0]} (columns "
                              "of warehouse.contracts.TRIPLET_SCHEMA)") from None
    return [Triplet(**row) for row in table.to_pylist()]


def run_document_triplets(run_dir: Path, doc_id: str, extractor: str) -> list[Triplet]:
    """The triplets backend `extractor` found in one document of a run, in statement order."""
    shards = list_shards(run_dir, "triplets")
    if not shards:
        raise MemoryFileError(f"{run_dir}: no triplets shards (run the extract stage first)")
    rows = []
    for path in shards:
        table = pq.read_table(path, filters=[("doc_id", "=", doc_id)])
        rows.extend(r for r in table.to_pylist() if extractor_backend(r["extractor"]) == extractor)
    if not rows:
        raise MemoryFileError(f"{run_dir}: no {extractor} triplets for document {doc_id!r}")
    return sorted((Triplet(**r) for r in rows), key=lambda t: t.char_end)


def read_memories(sources: Sequence[str], extractor: str = "spacy") -> list[Triplet]:
    """Memories to merge, oldest first, each its own document for canonicalization."""
    return [replace(t, doc_id=f"memory{i}:{t.doc_id}")
            for i, source in enumerate(sources) for t in read_memory(source, extractor)]


def kept_triplets(state: MemoryState) -> list[Triplet]:
    """The triplets behind the rows the policy keeps after everything stated, oldest first."""
    newest = {row.fact_key: t for row, t in zip(state.rows, state.triplets)}
    last = state.rows[-1].token_pos if state.rows else 0
    return [newest[row.fact_key] for row in kept_rows(state.rows, last, len(state.rows))]


def save_memory(state: MemoryState, path: Path) -> int:
    """Write the kept triplets as a memory file; returns how many."""
    if state.rows and not state.triplets:
        raise ValueError("this memory was not made from text: there are no triplets to save")
    triplets = kept_triplets(state)
    write_parquet_atomically(pa.Table.from_pylist([t.row() for t in triplets], schema=TRIPLET_SCHEMA),
                             Path(path))
    return len(triplets)
