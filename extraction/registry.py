"""The extraction backends: one entry per backend; the stage, the config, evaluate and the
report read only this table.

    backend = make_backend("spacy", cfg.extract)
    triplets, errors = backend.extract(docs)        # list[Triplet], list[ExtractionError]

A backend is constructed from the `extract` config section and called on a batch of
`warehouse.contracts.Document`s; it returns one `Triplet` per fact (extractor = its `name`:
the entry's name, or "<entry>:<model>" as vLLM writes) and a per-document `ExtractionError` for
what it could not read, never raising on content. Optional packages are imported inside the
constructor, so a missing one fails only when that backend is asked for, with the pip command.

To add a backend: write `extraction/<name>_backend.py` with a class that has `name` and
`extract(docs)` (the `Backend` protocol below) and, if it has settings, a `configs.base.Section`
subclass for its `extract.<name>` block; then add one `BackendSpec` entry to `BACKENDS` (or
`BACKENDS.add(...)` from your own code). `extract.backends: [..., <name>]` runs it; `train.memory_source: <name>`
trains on its memory; `evaluate.ablations: [<name>]` evaluates with it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from configs.base import Section
from configs.table import Table
from extraction.spacy_backend import SpacyConfig
from extraction.vllm_backend import VllmConfig
from warehouse.contracts import Document, ExtractionError, Triplet

if TYPE_CHECKING:
    from configs.schema import ExtractConfig


class Backend(Protocol):
    name: str  # the `extractor` value of its triplets

    def extract(self, docs: list[Document]) -> tuple[list[Triplet], list[ExtractionError]]:
        """Triplets of a batch of documents, plus per-document failures (never raises on content)."""
        ...


@dataclass(frozen=True)
class BackendSpec:
    name: str
    label: str  # what its memory is called in the report ("spaCy triplets")
    build: Callable[["ExtractConfig"], Backend]
    section: type[Section] | None = None  # its `extract.<name>` block
    needs_gold: bool = False  # hands back the source's gold triplets (sources with gold only)
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here, with the fix


BACKENDS: Table[BackendSpec] = Table("extraction backend")


def make_backend(name: str, cfg: "ExtractConfig") -> Backend:
    return BACKENDS.lookup(name).build(cfg)


def _oracle(cfg: "ExtractConfig") -> Backend:
    from extraction.oracle import OracleBackend
    return OracleBackend()


def _spacy(cfg: "ExtractConfig") -> Backend:
    from extraction.spacy_backend import SpacyBackend
    return SpacyBackend(cfg.section("spacy"), cfg.coref)


def _vllm(cfg: "ExtractConfig") -> Backend:
    from extraction.vllm_backend import VllmBackend
    return VllmBackend(cfg.section("vllm"))


def _vllm_missing() -> str | None:
    return None if importlib.util.find_spec("vllm") else "needs vLLM: pip install -e '.[vllm]'"


BACKENDS.add(BackendSpec("oracle", "oracle (gold) triplets", _oracle, needs_gold=True))
BACKENDS.add(BackendSpec("spacy", "spaCy triplets", _spacy, SpacyConfig))
BACKENDS.add(BackendSpec("vllm", "vLLM triplets", _vllm, VllmConfig, missing=_vllm_missing))
