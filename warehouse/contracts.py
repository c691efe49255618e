"""The run folder's contracts (DESIGN §3-4): every shard schema and record type, in one place.

Every stage reads and writes the run folder through these names; nothing else defines a column.

    docs/shard_k.parquet               DOCS_SCHEMA        one row per document        (ingest)
    gold/shard_k.parquet               TRIPLET_SCHEMA     a source's gold triplets    (ingest)
    recall/shard_k.parquet             RECALL_SCHEMA      gold recall spans           (ingest)
    triplets/shard_k.parquet           TRIPLET_SCHEMA     every backend's triplets    (extract)
    extraction_errors/shard_k.parquet  ERROR_SCHEMA       per-document failures       (extract)
    tokens/shard_k.parquet             TOKENS_SCHEMA      tokens + recall spans       (shards)
    memory/shard_k.parquet             MEMORY_SCHEMA      one row per triplet         (shards)
    windows/shard_k.parquet            WINDOWS_SCHEMA     one row per window and memory source,
                                                          its slots and recall spans as text (shards)

Shard k of every kind covers the same documents. `SHARD_KINDS` names each kind's single writer
stage and its warehouse view, `TABLE_WRITERS` each warehouse table's.

A sweep folder (flows/sweep.py) holds one run folder per point and a warehouse of its own with
two tables, written by the sweep report (evaluation/sweep.py) only:

    sweep_points     SWEEP_POINTS_SCHEMA    one row per point: its grids, settings, status
    sweep_metrics    SWEEP_METRICS_SCHEMA   one row per figure of the sweep report

Record types:

- `Document`: what a corpus source yields and an extraction backend reads (text, gold triplets,
  gold recall spans);
- `Triplet`: one extracted (or gold) fact, a row of TRIPLET_SCHEMA;
- `ExtractionError`: a backend's failure on one document;
- `GoldRecall`: a recalled value in the text (characters), a row of RECALL_SCHEMA;
- `RecallSpan`: the same in tokens, an element of a tokens row's `recall_spans`.

An extractor is named by its backend, optionally followed by ":" and a model ("vllm:<model>");
`extractor_backend` is the one place that reads the name back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa


# ---------------------------------------------------------------- record types

@dataclass(frozen=True)
class Triplet:
    doc_id: str
    subject: str
    relation: str
    object: str
    negated: bool
    char_start: int  # span of the sentence/clause that states the triplet
    char_end: int
    confidence: float | None
    extractor: str  # "oracle", "spacy", "vllm:<model>"

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GoldRecall:
    """A value the text recalls, stated earlier (the synthetic corpus's gold recall spans)."""
    char_start: int  # the recalled value in the recall sentence
    char_end: int
    subject: str
    relation: str
    value: str
    stated_char_end: int  # end of the sentence that (last) stated the fact
    distance_words: int  # whitespace words from stated_char_end to char_start

    def row(self, doc_id: str) -> dict[str, Any]:
        return {"doc_id": doc_id, **asdict(self)}


@dataclass(frozen=True)
class Document:
    """One document as a source yields it (ingest decodes `text` given as bytes) and as an
    extraction backend reads it; `gold` and `recalls` exist for sources that have them."""
    doc_id: str
    text: str | bytes
    source: str = ""
    url: str | None = None
    gold: list[Triplet] = field(default_factory=list)
    recalls: list[GoldRecall] = field(default_factory=list)


@dataclass(frozen=True)
class ExtractionError:
    doc_id: str
    error: str
    raw_prefix: str  # first characters of the raw model output


class RecallSpan(NamedTuple):
    """A recalled value in document tokens: [start, end), stated at token `stated_pos`."""
    start: int
    end: int
    stated_pos: int  # token_pos of the statement it recalls


def extractor_backend(extractor: str) -> str:
    """The backend of an extractor name: "vllm:Qwen/Qwen2.5-7B-Instruct" -> "vllm"."""
    return extractor.split(":", 1)[0]


# ---------------------------------------------------------------- shard schemas

DOCS_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("text", pa.string()),
    ("source", pa.string()),
    ("url", pa.string()),
    ("split", pa.string()),
])
TRIPLET_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("subject", pa.string()),
    ("relation", pa.string()),
    ("object", pa.string()),
    ("negated", pa.bool_()),
    ("char_start", pa.int32()),
    ("char_end", pa.int32()),
    ("confidence", pa.float32()),
    ("extractor", pa.string()),
])
RECALL_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("char_start", pa.int32()),
    ("char_end", pa.int32()),
    ("subject", pa.string()),
    ("relation", pa.string()),
    ("value", pa.string()),
    ("stated_char_end", pa.int32()),
    ("distance_words", pa.int32()),
])
ERROR_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("extractor", pa.string()),
    ("error", pa.string()),
    ("raw_prefix", pa.string()),
])
RECALL_SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("stated_pos", pa.int32())])
TOKENS_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("split", pa.string()),
    ("tokens", pa.list_(pa.int32())),  # the whole document, <|bos|> first
    ("recall", pa.list_(pa.int32())),  # token indexes of recall tokens
    ("recall_spans", pa.list_(RECALL_SPAN)),
])
MEMORY_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("token_pos", pa.int32()),  # the first token after the clause that states the triplet
    ("clause_pos", pa.int32()),  # the first token of that clause (its tokens: [clause_pos, token_pos))
    ("subject_tokens", pa.list_(pa.int32())),
    ("relation_tokens", pa.list_(pa.int32())),
    ("object_tokens", pa.list_(pa.int32())),
    ("subject_id", pa.int64()),  # canonical ids, -1 when unknown
    ("relation_id", pa.int64()),
    ("object_id", pa.int64()),
    ("negated", pa.bool_()),
    ("functional", pa.bool_()),  # single-valued relation: a newer value replaces an older one
    ("source", pa.string()),  # the extractor
])

# What one training window saw, decoded with the run's tokenizer (shards/build.py decoded_windows).
WINDOW_MEMORY_DEPTH = 128  # kept triplets recorded per window: any M up to this reads its slots


def window_memory_depth(memory_slots: int) -> int:
    """How many kept triplets the windows shards record per window: enough for `memory_slots`,
    and the same for every M up to WINDOW_MEMORY_DEPTH (a sweep over M shares its shards)."""
    return max(WINDOW_MEMORY_DEPTH, memory_slots)


WINDOW_SLOT = pa.struct([
    ("rank", pa.int32()),  # 1 = the newest kept triplet; a model with M slots reads rank <= M
    ("subject", pa.string()), ("relation", pa.string()), ("object", pa.string()),
    ("negated", pa.bool_()),
    ("age", pa.int32()),  # tokens between the statement (token_pos) and the window start
])
WINDOW_RECALL_SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("stated_pos", pa.int32()),
                                ("text", pa.string())])
WINDOWS_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("split", pa.string()),
    ("window_index", pa.int32()),  # k: the window of document tokens [k*T, (k+1)*T)
    ("window_start", pa.int32()),
    ("source", pa.string()),  # the extractor whose memory rows the slots come from
    ("slots", pa.list_(WINDOW_SLOT)),
    ("recall_spans", pa.list_(WINDOW_RECALL_SPAN)),  # the spans scored as this window's recall
])


@dataclass(frozen=True)
class ShardKind:
    schema: pa.Schema
    writer: str  # the one stage that writes this kind
    view: str  # its warehouse view over all shards


SHARD_KINDS: dict[str, ShardKind] = {
    "docs": ShardKind(DOCS_SCHEMA, "ingest", "docs_shards"),
    "gold": ShardKind(TRIPLET_SCHEMA, "ingest", "gold_shards"),
    "recall": ShardKind(RECALL_SCHEMA, "ingest", "recall_shards"),
    "triplets": ShardKind(TRIPLET_SCHEMA, "extract", "triplet_shards"),
    "extraction_errors": ShardKind(ERROR_SCHEMA, "extract", "extraction_error_shards"),
    "tokens": ShardKind(TOKENS_SCHEMA, "shards", "tokens_shards"),
    "memory": ShardKind(MEMORY_SCHEMA, "shards", "memory_shards"),
    "windows": ShardKind(WINDOWS_SCHEMA, "shards", "window_shards"),
}


# The one stage that writes each warehouse table (warehouse/schema.sql); stage_runs is written
# by the pipeline around every stage.
TABLE_WRITERS: dict[str, str] = {
    "documents": "ingest",
    "triplets": "extract", "extraction_errors": "extract",
    "entities": "canonicalize", "relations": "canonicalize", "aliases": "canonicalize",
    "canonical_ids": "canonicalize",
    "evaluations": "evaluate", "metrics": "evaluate", "extraction_scores": "evaluate",
    "stage_runs": "pipeline",
}


# ---------------------------------------------------------------- a sweep folder's tables

SWEEP_POINTS_SCHEMA = pa.schema([
    ("point", pa.string()),  # its run folder under points/
    ("grids", pa.string()),  # the grids it belongs to, comma-separated
    ("settings", pa.string()),  # JSON: every grid setting's value at this point
    ("status", pa.string()),  # ran | cached | failed: <why> | not run
])
SWEEP_METRICS_SCHEMA = pa.schema([
    ("grid", pa.string()),
    ("setting", pa.string()),  # the swept setting on the x axis ("" when only seeds vary)
    ("x", pa.string()),  # its value, as written; "" for a figure over all of them (W*)
    ("x_value", pa.float64()),  # the same as a number, where it is one
    ("series", pa.string()),  # the grid's other settings at this figure, "" when none
    ("variant", pa.string()),
    ("ablation", pa.string()),
    ("metric", pa.string()),  # a metrics-table metric, or w_star_cap:<m>, w_star_positions:<m>, multiplier:<m>
    ("mean", pa.float64()),  # over the averaged settings (seeds); null: see note
    ("spread", pa.float64()),  # max - min over them
    ("n", pa.int32()),  # how many values the mean is of (seeds)
    ("best", pa.bool_()),  # this x is the variant's best value of the grid's best_of setting
    ("note", pa.string()),
    ("points", pa.string()),  # the point folders behind the figure, comma-separated
])
