"""Shard files: names, atomic writes, and the footer fingerprints that make stages resumable.

Shard k of every kind (warehouse/contracts.py) covers the same documents. A file exists only once
it is complete: every writer here writes a temporary file beside the target and renames it
(`atomic_path`), so a killed stage leaves at most a `.name.tmp-<pid>` file that never counts as a
shard. A shard's parquet footer carries the fingerprint of what it was built from; a rerun skips
shard k when `is_current` says its footer (and row count) still match, and rewrites the rest, so
a resumed stage continues from the first missing or stale shard and never keeps a stale one.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

FINGERPRINT_KEY = b"tcc_fingerprint"
_SHARD_RE = re.compile(r"shard_(\d{5})\.parquet")


class UnreadableShard(ValueError):
    """A shard that exists but cannot be read (cut off, not parquet); the message names it."""


class NoSpaceLeft(RuntimeError):
    """A write ran out of disk space; the message names the folder. The target is untouched."""


LOW_SPACE_BYTES = 16 * 2**20  # a write error with this little space left is a full disk


def out_of_space(err: BaseException, folder: Path) -> bool:
    """Whether a write error means the disk is full (pyarrow reports it as an iostream error)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    if "No space left" in text:
        return True
    try:
        return "iostream" in text and shutil.disk_usage(folder).free < LOW_SPACE_BYTES
    except OSError:
        return False


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


# ---------------------------------------------------------------- atomic writes

@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`.
    A full disk becomes NoSpaceLeft naming the folder; the target is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, pa.ArrowException) as err:
        if out_of_space(err, path.parent):
            raise NoSpaceLeft(f"no space left on {path.parent} (writing {path.name})") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomically(table: pa.Table, path: Path, row_group_size: int | None = None) -> Path:
    """Write `table` to `path` via a temporary file and a rename (readers never see half a file)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)
    return Path(path)


def write_text_atomically(text: str, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def remove_temp_files(run_dir: Path, kinds: tuple[str, ...]) -> None:
    """Temporary files a killed writer left in the shard folders of `kinds`."""
    for kind in kinds:
        for tmp in (Path(run_dir) / kind).glob(".shard_*.parquet.tmp-*"):
            tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- fingerprints and resume

def write_shard(table: pa.Table, path: Path, fingerprint: str) -> Path:
    """Write a shard atomically with `fingerprint` in its footer."""
    stamped = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                             FINGERPRINT_KEY: fingerprint.encode()})
    return write_parquet_atomically(stamped, path)


def unreadable(path: Path, err: Exception) -> UnreadableShard:
    """One line naming the shard, why it cannot be read, and the stage that writes it."""
    from warehouse.contracts import SHARD_KINDS
    kind = Path(path).parent.name
    writer = SHARD_KINDS[kind].writer if kind in SHARD_KINDS else "upstream"
    return UnreadableShard(f"{path}: unreadable {kind} shard ({str(err).splitlines()[0]}); "
                           f"rerun the {writer} stage")


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A shard as a table, or UnreadableShard naming it (cut off, missing, not parquet)."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as err:
        raise unreadable(path, err) from None


def footer_fingerprint(path: Path) -> str:
    """The fingerprint a shard was written with ("" if it has none); UnreadableShard if cut off."""
    try:
        meta = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException) as err:
        raise unreadable(path, err) from None
    return meta.get(FINGERPRINT_KEY, b"").decode()


def is_current(path: Path, fingerprint: str, num_rows: int | None = None) -> bool:
    """The shard exists, is readable, carries `fingerprint` and (if given) `num_rows` rows."""
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowException):  # missing, or cut off
        return False
    ours = (meta.metadata or {}).get(FINGERPRINT_KEY) == fingerprint.encode()
    return ours and (num_rows is None or meta.num_rows == num_rows)


def remove_shards_outside(run_dir: Path, kinds: tuple[str, ...], keep: set[int]) -> None:
    """Shards of `kinds` whose index is not in `keep` (the corpus got smaller)."""
    for kind in kinds:
        for path in list_shards(run_dir, kind):
            if shard_index(path) not in keep:
                path.unlink()


# ---------------------------------------------------------------- content fingerprints of outputs

def file_fingerprint(path: Path) -> dict[str, int | str]:
    """What a stage's manifest records of an output file: its size, modification time, content
    hash and, for parquet, its row count (the footer's)."""
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    stat = path.stat()
    out: dict[str, int | str] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                 "sha256": h.hexdigest()}
    if path.suffix == ".parquet":
        out["rows"] = pq.read_metadata(path).num_rows
    return out


def file_intact(path: Path, recorded: dict[str, int | str]) -> bool:
    """The file still is what the manifest recorded: same size, a readable footer with the same
    rows (parquet), and the same content hash when its modification time changed."""
    path = Path(path)
    try:
        stat = path.stat()
        if stat.st_size != recorded.get("bytes"):
            return False
        if "rows" in recorded and pq.read_metadata(path).num_rows != recorded["rows"]:
            return False
    except (OSError, pa.ArrowException):
        return False
    if stat.st_mtime_ns == recorded.get("mtime_ns"):
        return True
    return file_fingerprint(path)["sha256"] == recorded.get("sha256")
