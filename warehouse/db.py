"""Connections to a run's `warehouse.duckdb`, the schema, and views over the parquet shards.

DuckDB allows one writing process per file: stages open it for writing one at a time (parallel
workers write parquet, one step loads it); readers such as `python -m warehouse.sql` open it
read-only.

The shard views find their folders through the connection variable `warehouse_run_dir`, which
`connect` sets to the run folder's current location, so a moved or copied run folder still reads
its own shards; a plain `duckdb.connect` (no variable) reads the folder the view was stored from.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from warehouse.contracts import SHARD_KINDS

DB_NAME = "warehouse.duckdb"
SHARD_VIEWS = {kind: k.view for kind, k in SHARD_KINDS.items()}  # shard folder -> view name
RUN_DIR_VARIABLE = "warehouse_run_dir"
# Tables an older schema left that need no migration: their stage writes them again from its
# own outputs (metrics: the evaluate stage, from eval/<variant>.json), and before evaluation
# history the old table held only the latest evaluation, which that rerun records again.
RECORDED_AGAIN = {"metrics": "evaluate"}
log = logging.getLogger(__name__)

# Views over a shard view, made with it (a view in schema.sql could not name a shard view that does
# not exist yet). window_memory: what window k of document d saw, one row per kept triplet; a
# window without memory is one row of NULL slot columns (shards/build.py decoded_windows).
DERIVED_VIEWS = {
    "window_memory": ("window_shards", """
        SELECT w.doc_id, w.split, w.window_index, w.window_start, w.source,
               s.rank, s.subject, s.relation, s.object, s.negated, s.age,
               list_transform(w.recall_spans, lambda r: r.text) AS recall
        FROM window_shards w LEFT JOIN LATERAL (SELECT unnest(w.slots, recursive := true)) s ON true
    """),
}


class WarehouseLocked(RuntimeError):
    """Another process holds the warehouse's write lock."""


class WarehouseOutdated(RuntimeError):
    """The warehouse was created by an older version of the schema."""


def db_path(run_dir: Path) -> Path:
    return Path(run_dir) / DB_NAME


def schema_sql() -> str:
    return resources.files("warehouse").joinpath("schema.sql").read_text(encoding="utf-8")


def connect(run_dir: Path, read_only: bool = False,
            config: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """Open the run's warehouse (`config`: DuckDB settings fixed at open); a writable open
    creates it and applies the schema."""
    path = db_path(run_dir)
    if read_only and not path.is_file():
        raise FileNotFoundError(f"{path}: no warehouse here (has the ingest stage run?)")
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config or {})
    except duckdb.IOException as err:
        if "lock" in str(err).lower():
            holder = re.search(r"\(PID (\d+)\)", str(err))
            raise WarehouseLocked(f"{path} is locked by "
                                  f"{_holder(int(holder.group(1)) if holder else None)}; "
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
        try:
            _drop_recorded_again(con, path)
            con.execute(schema_sql())
            _check_columns(con, path)
        except BaseException:
            con.close()
            raise
    return con


@lru_cache(maxsize=1)
def _schema_columns() -> dict[str, list[str]]:
    """The columns schema.sql creates, read from an in-memory database."""
    probe = duckdb.connect()
    try:
        probe.execute(schema_sql())
        return _columns(probe)
    finally:
        probe.close()


def _drop_recorded_again(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Drop the tables of an older schema that their stage records again (RECORDED_AGAIN): it
    reruns anyway, since its code version covers schema.sql."""
    expected = _schema_columns()
    for table, columns in _columns(con).items():
        if table in RECORDED_AGAIN and columns != expected[table]:
            log.warning("%s: table %s predates the current schema; dropped (the %s stage "
                        "records it again)", path, table, RECORDED_AGAIN[table])
            con.execute(f"DROP TABLE {table}")


def _check_columns(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Tables created by an older schema (CREATE TABLE IF NOT EXISTS keeps them) are refused."""
    expected = _schema_columns()
    for table, columns in _columns(con).items():
        if table in expected and columns != expected[table]:
            raise WarehouseOutdated(
                f"{path}: table {table} has the columns of an older version of the pipeline; "
                "delete the file and rerun (every stage reloads its tables from its shards)")


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    rows = con.execute("SELECT c.table_name, c.column_name FROM duckdb_columns() c "
                       "JOIN duckdb_tables() t USING (database_name, schema_name, table_name) "
                       "WHERE c.database_name = current_database() AND NOT c.internal "
                       "ORDER BY c.table_name, c.column_index").fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def _holder(pid: int | None) -> str:
    """Who holds the file: a reader (the SQL CLI) or a stage, by the process's command line."""
    if pid is None:
        return "another process"
    try:
        command = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                           .replace("\0", " ").split())
    except OSError:
        command = ""
    if "warehouse.sql" in command:
        return f"a reader (PID {pid}: python -m warehouse.sql)"
    return f"a stage writing it (PID {pid}{': ' + command[:120] if command else ''})"


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
    for view, (base, select) in DERIVED_VIEWS.items():
        if base in made:
            con.execute(f"{create} {view} AS {select}")
            made.append(view)
    return made



def table_fingerprint(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int | str]:
    """Rows and an order-free content hash of a table: the sum of its rows' hashes (a repeated
    row counts twice); timestamp columns, which say when a row was written rather than what it
    holds, are left out."""
    columns = [name for name, kind in con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
        "current_database() AND table_name = ? ORDER BY column_index", [table]).fetchall()
        if not kind.startswith("TIMESTAMP")]
    rows, digest = con.execute(f"SELECT count(*), coalesce(sum(hash({', '.join(columns)})"
                               f"::HUGEINT), 0) FROM {table}").fetchall()[0]
    return {"rows": rows, "hash": f"{int(digest) % 2**64:016x}"}
