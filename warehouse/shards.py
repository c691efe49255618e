"""Parallel parquet shards: names, atomic writes and resumption.

Shard k of `docs`, `triplets`, `tokens` and `memory` covers the same documents. A shard file
exists only once it is complete (written to a temporary name, then renamed), so a stage that was
killed resumes by skipping the shards that exist; a leftover temporary file is simply replaced.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SHARD_KINDS = ("docs", "triplets", "tokens", "memory")
_SHARD_RE = re.compile(r"shard_(\d{5})\.parquet")


def shard_path(run_dir: Path, kind: str, index: int) -> Path:
    return Path(run_dir) / kind / f"shard_{index:05d}.parquet"


def list_shards(run_dir: Path, kind: str) -> list[Path]:
    """Complete shards of one kind, in index order (temporary files are not shards)."""
    folder = Path(run_dir) / kind
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _SHARD_RE.fullmatch(p.name))


def shard_index(path: Path) -> int:
    m = _SHARD_RE.fullmatch(Path(path).name)
    if m is None:
        raise ValueError(f"{path}: not a shard file name")
    return int(m.group(1))


def write_parquet_atomically(table: pa.Table, path: Path, row_group_size: int | None = None) -> Path:
    """Write `table` to `path` via a temporary file and a rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, row_group_size=row_group_size)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomically(text: str, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
