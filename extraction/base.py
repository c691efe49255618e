"""The extraction contract: what every backend takes and returns (DESIGN §4).

A backend is constructed from its config section and called on a batch of documents; it returns
one `Triplet` per extracted fact. Missing optional dependencies fail at construction with the
pip command that installs them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    gold: list["Triplet"] = field(default_factory=list)  # only for sources with gold (oracle)


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


@dataclass(frozen=True)
class ExtractionError:
    doc_id: str
    error: str
    raw_prefix: str  # first characters of the raw model output


class Backend(Protocol):
    name: str  # the `extractor` value of its triplets

    def extract(self, docs: list[Document]) -> tuple[list[Triplet], list[ExtractionError]]:
        """Triplets of a batch of documents, plus per-document failures (never raises on content)."""
        ...
