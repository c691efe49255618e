"""The corpus sources: one entry per source; ingest and the config read only this table.

    source = SOURCES["synthetic"]
    for doc in source.documents(cfg.ingest.section("synthetic"), cfg.seed): ...

A source is its config section (the YAML block `ingest.<name>`, a `configs.base.Section`), a
reader that yields `warehouse.contracts.Document`s in a fixed order (ingest's resume relies on
it), optionally how many documents it will yield (for progress), the local files it reads
(`inputs`: ingest's cache key fingerprints them, so a corpus overwritten at the same path is
read again), and the side shards it writes besides `docs`: `gold` (its documents carry gold
triplets, which the `oracle` extraction backend hands back) and `recall` (gold recall spans).

To add a corpus: write `corpora/<name>.py` with the section class and the reader, then add one
`Source` entry to `SOURCES` below (or `SOURCES.add(...)` from your own code). Nothing else
changes: `ingest.source: <name>` selects it, `ingest.<name>: {...}` configures it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from configs.base import Section
from configs.table import Table
from corpora.fineweb import FinewebSource, fineweb_records
from corpora.parquet_source import ParquetSource, count_rows, matched_files, parquet_records
from corpora.redocred import RedocredSource, redocred_records
from corpora.synthetic import SyntheticSource, generate_documents
from warehouse.contracts import Document

SIDE_KINDS = ("gold", "recall")


@dataclass(frozen=True)
class Source:
    name: str
    section: type[Section]  # its `ingest.<name>` block
    documents: Callable[[Section, int], Iterator[Document]]  # (section, run seed) -> documents
    total: Callable[[Section], int] | None = None  # documents it yields at most (progress)
    side_kinds: tuple[str, ...] = ()  # of SIDE_KINDS, written before docs
    inputs: Callable[[Section], list[Path]] = lambda section: []  # local files it reads

    def __post_init__(self) -> None:
        unknown = set(self.side_kinds) - set(SIDE_KINDS)
        if unknown:
            raise ValueError(f"source {self.name!r}: side kinds {sorted(unknown)} are not in "
                             f"{SIDE_KINDS}")

    @property
    def has_gold(self) -> bool:
        return "gold" in self.side_kinds


SOURCES: Table[Source] = Table("corpus source")
SOURCES.add(Source("synthetic", SyntheticSource, generate_documents,
                   total=lambda s: s.num_docs, side_kinds=("gold", "recall")))
SOURCES.add(Source("fineweb", FinewebSource, lambda s, seed: fineweb_records(s),
                   total=lambda s: s.num_docs))
SOURCES.add(Source("parquet", ParquetSource, lambda s, seed: parquet_records(s),
                   total=count_rows, inputs=lambda s: matched_files(s.paths)))
SOURCES.add(Source("redocred", RedocredSource, lambda s, seed: redocred_records(s),
                   side_kinds=("gold",), inputs=lambda s: [p for p in (s.path, s.rel_info) if p]))
