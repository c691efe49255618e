"""Connections to a run's `warehouse.duckdb`, the schema, and views over the parquet shards.

DuckDB allows one writing process per file: stages open it for writing one at a time (parallel
workers write parquet, one step loads it); readers such as `python -m warehouse.sql` open it
read-only.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import duckdb

from warehouse.contracts import SHARD_KINDS

DB_NAME = "warehouse.duckdb"
SHARD_VIEWS = {kind: k.view for kind, k in SHARD_KINDS.items()}  # shard folder -> view name


class WarehouseLocked(RuntimeError):
    """Another process holds the warehouse's write lock."""


def db_path(run_dir: Path) -> Path:
    return Path(run_dir) / DB_NAME


def schema_sql() -> str:
    return resources.files("warehouse").joinpath("schema.sql").read_text(encoding="utf-8")


def connect(run_dir: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the run's warehouse; a writable open creates it and applies the schema."""
    path = db_path(run_dir)
    if read_only and not path.is_file():
        raise FileNotFoundError(f"{path}: no warehouse here (has the ingest stage run?)")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as err:
        if "lock" in str(err).lower():
            holder = re.search(r"\(PID (\d+)\)", str(err))
            by = f"another process (PID {holder.group(1)})" if holder else "another process"
            raise WarehouseLocked(f"{path} is locked by {by}, a stage writing it; "
                                  "try again when it finishes") from None
        raise
    except duckdb.ConnectionException as err:
        # DuckDB refuses a second connection with another read_only setting in the same process
        if "different configuration" in str(err):
            raise WarehouseLocked(f"{path} is already open in this process with "
                                  f"read_only={not read_only}; close that connection first") from None
        raise
    if not read_only:
        con.execute(schema_sql())
    return con


def register_shard_views(con: duckdb.DuckDBPyConnection, run_dir: Path,
                         temporary: bool = False) -> list[str]:
    """(Re)create one view per shard folder that has shards; returns the view names.

    `temporary=True` makes connection-local views, the only kind a read-only connection may
    create; they shadow stored views of the same name.
    """
    create = "CREATE OR REPLACE TEMP VIEW" if temporary else "CREATE OR REPLACE VIEW"
    made = []
    for kind in SHARD_VIEWS:
        folder = Path(run_dir).resolve() / kind
        if not any(folder.glob("shard_*.parquet")):
            continue
        view = SHARD_VIEWS[kind]
        glob = str(folder / "shard_*.parquet").replace("'", "''")
        con.execute(f"{create} {view} AS "
                    f"SELECT * FROM read_parquet('{glob}', filename = true)")
        made.append(view)
    return made


def record_stage_run(con: duckdb.DuckDBPyConnection, stage: str, fingerprint: str,
                     started_at: datetime, seconds: float, status: str,
                     counts: dict[str, Any]) -> None:
    con.execute("INSERT INTO stage_runs VALUES (?, ?, ?, ?, ?, ?)",
                [stage, fingerprint, started_at.astimezone(timezone.utc).replace(tzinfo=None),
                 seconds, status, json.dumps(counts)])


def insert_metrics(con: duckdb.DuckDBPyConnection, rows: Iterable[dict[str, Any]]) -> int:
    """Append metric rows (variant, ablation, split, metric, value, step)."""
    rows = [(r["variant"], r["ablation"], r["split"], r["metric"], float(r["value"]), r.get("step"))
            for r in rows]
    if rows:
        con.executemany("INSERT INTO metrics (variant, ablation, split, metric, value, step) "
                        "VALUES (?, ?, ?, ?, ?, ?)", rows)
    return len(rows)
