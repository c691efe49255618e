"""The oracle backend: the gold triplets a source carries (synthetic stories, Re-DocRED).

The extract stage reads `gold/shard_k.parquet` into `Document.gold`; the oracle hands those back
with extractor "oracle", so gold memory goes through exactly the same stages as extracted memory.
"""
from __future__ import annotations

from dataclasses import replace

from warehouse.contracts import Document, ExtractionError, Triplet


class OracleBackend:
    name = "oracle"

    def extract(self, docs: list[Document]) -> tuple[list[Triplet], list[ExtractionError]]:
        triplets = [replace(t, doc_id=d.doc_id, extractor=self.name) for d in docs for t in d.gold]
        return triplets, []
