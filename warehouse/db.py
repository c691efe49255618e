"""Connections to a run's `warehouse.duckdb`, the schema, and views over the parquet shards.

DuckDB allows one writing process per file: stages open it for writing one at a time (parallel
workers write parquet, one step loads it); readers such as `python -m warehouse.sql` open it
read-only.

The shard views find their folders through the connection variable `warehouse_run_dir`, which
`connect` sets to the run folder's current location, so a moved or copied run folder still reads
its own shards; a plain `duckdb.connect` (no variable) reads the folder the view was stored from.
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
RUN_DIR_VARIABLE = "warehouse_run_dir"


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
    con.execute(f"SET VARIABLE {RUN_DIR_VARIABLE} = ?", [str(Path(run_dir).resolve())])
    if not read_only:
        con.execute(schema_sql())
    return con


def register_shard_views(con: duckdb.DuckDBPyConnection, run_dir: Path,
                         temporary: bool = False) -> list[str]:
    """(Re)create one view per shard folder that has shards; returns the view names made.

    `con` comes from `connect(run_dir)`: a view reads `<warehouse_run_dir>/<kind>/shard_*.parquet`
    (the run folder it was stored from when the variable is unset). `temporary=True` makes
    connection-local views, the only kind a read-only connection may create, and only for
    folders without a stored view: a stored one already follows the run folder, and a second
    view of the same name would be listed twice (SHOW TABLES, duckdb_views()).
    """
    create = "CREATE OR REPLACE TEMP VIEW" if temporary else "CREATE OR REPLACE VIEW"
    stored: set[str] = set()
    if temporary:
        stored = {name for (name,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT temporary AND NOT internal "
            "AND database_name = current_database()").fetchall()}
    run_dir = Path(run_dir).resolve()
    stored_from = str(run_dir).replace("'", "''")
    folder = f"coalesce(getvariable('{RUN_DIR_VARIABLE}'), '{stored_from}')"
    made = []
    for kind, view in SHARD_VIEWS.items():
        if view in stored or not any((run_dir / kind).glob("shard_*.parquet")):
            continue
        con.execute(f"{create} {view} AS SELECT * FROM read_parquet("
                    f"{folder} || '/{kind}/shard_*.parquet', filename = true)")
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
