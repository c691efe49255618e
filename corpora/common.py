"""What every corpus source shares: its error type and stable ids for documents without one.

A source that cannot read its input raises `CorpusError` with one line naming the input and the
fix; sources stay ignorant of shards and the warehouse (corpora/ingest.py writes those).
"""
from __future__ import annotations

import hashlib


class CorpusError(RuntimeError):
    """A corpus input that cannot be read (missing column, malformed file, unreachable hub)."""


def hashed_doc_id(prefix: str, *parts: object) -> str:
    """A stable id from parts (e.g. file name and row), for sources without their own ids."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"))
    return f"{prefix}-{digest.hexdigest()[:16]}"
