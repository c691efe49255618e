"""FineWeb(-Edu) documents streamed with HF `datasets`, taken in stream order.

`fineweb_records(cfg)` streams `load_dataset(cfg.dataset, name=cfg.config_name, split="train",
streaming=True)` and yields the first `cfg.num_docs` rows as documents (doc_id = the row's `id`, a
FineWeb `<urn:uuid:...>`; url = its `url`). The stream order of the hub's parquet files is fixed,
so a rerun yields the same documents (ingest's resume relies on it). `records_from_rows` is the
part that does not need the hub; the tests run it on `load_dataset("parquet", data_files=...,
streaming=True)` over a local file.

    HF_HUB_OFFLINE=0 .venv/bin/python -c "from corpora.fineweb import *; \
        print(next(fineweb_records(FinewebSource(num_docs=1))).doc_id)"
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator

from pydantic import Field

from configs.base import Section
from corpora.common import CorpusError, hashed_doc_id
from warehouse.contracts import Document


class FinewebSource(Section):
    """The `ingest.fineweb` section: a Hugging Face dataset streamed in order."""
    dataset: str = "HuggingFaceFW/fineweb-edu"
    config_name: str = "sample-10BT"
    num_docs: int = Field(100_000, ge=1, le=10**10)


def records_from_rows(rows: Iterable[dict[str, Any]], num_docs: int,
                      source: str = "fineweb") -> Iterator[Document]:
    """The first `num_docs` rows (with `text`, and optionally `id`, `url`) as records."""
    for i, row in enumerate(itertools.islice(rows, num_docs)):
        if "text" not in row:
            raise CorpusError(f"{source}: rows have no 'text' column (columns: {sorted(row)})")
        doc_id = row.get("id")
        yield Document(doc_id=str(doc_id) if doc_id is not None else hashed_doc_id(source, i),
                     text=row["text"], source=source, url=row.get("url"))


def open_stream(dataset: str, config_name: str | None) -> Iterable[dict[str, Any]]:
    """A streaming train split from the Hugging Face Hub."""
    from datasets import load_dataset
    try:
        return load_dataset(dataset, name=config_name, split="train", streaming=True)
    except Exception as err:  # datasets raises many types (offline, 404, auth); one line for all
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorpusError(f"cannot stream {dataset} ({config_name}): {first}. FineWeb needs the "
                          "Hugging Face Hub: set HF_HUB_OFFLINE=0 and check network access, or use "
                          "ingest.source: parquet on local files") from None


def fineweb_records(cfg: FinewebSource) -> Iterator[Document]:
    yield from records_from_rows(open_stream(cfg.dataset, cfg.config_name), cfg.num_docs)
