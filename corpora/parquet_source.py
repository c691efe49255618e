"""Documents from local parquet files (paths or globs) with a text column.

Files are read in a fixed order (each configured pattern's matches sorted, duplicates once),
batch by batch, only the needed columns. The text column may be a string or a binary column; it is
read as raw bytes so ingest can count and skip text that is not valid UTF-8 instead of failing on
the whole file. doc_id is the `id_column` value when configured, else a stable hash of the file's
name and the row's index in it (so it survives moving the folder); url is `url_column` or None.

    .venv/bin/python -c "from corpora.parquet_source import *; \
        print(sum(1 for _ in parquet_records(ParquetSource(paths=['x.parquet']))))"
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pydantic import Field, field_validator

from configs.base import Section
from corpora.common import CorpusError, hashed_doc_id
from warehouse.contracts import Document

BATCH_ROWS = 4096


class ParquetSource(Section):
    """The `ingest.parquet` section: local parquet files with a text column."""
    paths: list[str] = Field(min_length=1)  # files or globs
    text_column: str = "text"
    id_column: str | None = None
    url_column: str | None = None

    @field_validator("paths")
    @classmethod
    def _absolute_and_present(cls, paths: list[str]) -> list[str]:
        """Absolute patterns (the resolved config works from any directory), each matching."""
        absolute = [os.path.abspath(os.path.expanduser(p)) for p in paths]
        for given, p in zip(paths, absolute):
            if not glob.glob(p):
                raise ValueError(f"no file matches {given!r}")
        return absolute


def matched_files(patterns: list[str]) -> list[Path]:
    files = [Path(f) for p in patterns for f in sorted(glob.glob(p))]
    if not files:
        raise CorpusError(f"ingest.parquet.paths: no file matches {patterns}")
    return list(dict.fromkeys(files))


TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
              pa.types.is_large_binary)
SCALAR_ID_TYPES = (*TEXT_TYPES, pa.types.is_integer)


def _open(path: Path, cfg: ParquetSource) -> pq.ParquetFile:
    """The file, with its configured columns present and of a usable type (one line if not)."""
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise CorpusError(f"{path}: not a readable parquet file ({err})") from None
    schema = pf.schema_arrow
    for field, column, types, what in (("text_column", cfg.text_column, TEXT_TYPES, "text"),
                                       ("id_column", cfg.id_column, SCALAR_ID_TYPES, "text or integer"),
                                       ("url_column", cfg.url_column, TEXT_TYPES, "text")):
        if column is None:
            continue
        if column not in schema.names:
            raise CorpusError(f"{path}: no column {column!r} (columns: {schema.names}); "
                              f"set ingest.parquet.{field}")
        kind = schema.field(column).type
        if not any(is_type(kind) for is_type in types):
            raise CorpusError(f"{path}: column {column!r} is {kind}, not {what} "
                              f"(ingest.parquet.{field})")
    return pf


def count_rows(cfg: ParquetSource) -> int:
    """Rows in all matched files, from the footers (for progress totals)."""
    total = 0
    for f in matched_files(cfg.paths):
        try:
            total += pq.ParquetFile(f).metadata.num_rows
        except (OSError, pa.ArrowException) as err:
            raise CorpusError(f"{f}: not a readable parquet file ({err})") from None
    return total


def parquet_records(cfg: ParquetSource) -> Iterator[Document]:
    columns = list(dict.fromkeys(c for c in (cfg.text_column, cfg.id_column, cfg.url_column) if c))
    for path in matched_files(cfg.paths):
        pf = _open(path, cfg)
        row = 0
        batches = pf.iter_batches(batch_size=BATCH_ROWS, columns=columns)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (OSError, pa.ArrowException) as err:  # a file cut off or damaged past its footer
                raise CorpusError(f"{path}: unreadable at row {row} "
                                  f"({str(err).splitlines()[0]})") from None
            texts = batch.column(cfg.text_column)
            if pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type):
                texts = texts.cast(pa.large_binary())  # no copy; decoding is ingest's job
            ids = batch.column(cfg.id_column).to_pylist() if cfg.id_column else None
            urls = batch.column(cfg.url_column).to_pylist() if cfg.url_column else None
            for i, text in enumerate(texts.to_pylist()):
                doc_id = (str(ids[i]) if ids and ids[i] is not None
                          else hashed_doc_id("pq", path.name, row))
                yield Document(doc_id=doc_id, text=text if text is not None else "",
                               source="parquet", url=urls[i] if urls else None)
                row += 1
