"""What every corpus source yields: one `Record` per document, before ingest validates it.

Sources (corpora/synthetic.py, fineweb.py, parquet_source.py, redocred.py) stay ignorant of
shards and the warehouse; corpora/ingest.py decodes and checks the text, drops empty, invalid and
duplicate documents, assigns the split and writes the shards. A source that cannot read its input
raises `CorpusError` with one line naming the input and the fix.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from corpora.synthetic import RecallSpan
from extraction.base import Triplet


class CorpusError(RuntimeError):
    """A corpus input that cannot be read (missing column, malformed file, unreachable hub)."""


@dataclass(frozen=True)
class Record:
    doc_id: str
    text: str | bytes  # bytes when the source stores raw bytes; ingest decodes them as UTF-8
    source: str  # "synthetic" | "fineweb" | "parquet" | "redocred"
    url: str | None = None
    gold: list[Triplet] | None = None  # oracle triplets, for sources that have them
    recalls: list[RecallSpan] | None = None  # gold recall spans (synthetic only)


def hashed_doc_id(prefix: str, *parts: object) -> str:
    """A stable id from parts (e.g. file name and row), for sources without their own ids."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"))
    return f"{prefix}-{digest.hexdigest()[:16]}"
