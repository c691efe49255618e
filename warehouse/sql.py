"""Ask a run's warehouse one read-only SQL question and print the answer.

    python -m warehouse.sql --run runs/tiny "SELECT count(*) FROM documents"
    python -m warehouse.sql --run runs/tiny "SELECT * FROM triplets LIMIT 5" --format json

The database is opened read-only, so it can be queried while no stage writes it. Besides the
tables (documents, triplets, entities, relations, aliases, stage_runs, metrics,
extraction_errors) the shard folders are visible as views: docs_shards, gold_shards,
recall_shards, triplet_shards, tokens_shards, memory_shards: the views the stages stored, which
read the run folder where it lies now (a moved run folder included), and a connection-local view
for a folder with shards but no stored view, so each is listed once. Only one statement of a
reading kind runs (SELECT, EXPLAIN of a SELECT, a read-only PRAGMA); anything else is refused
before it reaches the database.

Exit status: 0 answered; 1 the query failed or a stage holds the write lock; 2 bad arguments,
missing run or warehouse, or a refused statement.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import duckdb

from warehouse.db import WarehouseLocked, connect, db_path, register_shard_views

FORMATS = ("table", "csv", "json")
# PRAGMAs that only report; everything else (and `PRAGMA x = y`, which DuckDB parses as SET) is refused
READ_ONLY_PRAGMAS = frozenset({
    "table_info", "show", "show_tables", "show_tables_expanded", "show_databases",
    "database_list", "database_size", "storage_info", "metadata_info", "version", "platform",
    "functions", "collations", "user_agent"})
_EXPLAIN_PREFIX = re.compile(r"\s*explain\s+(analyze\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)
_PRAGMA_NAME = re.compile(r"\s*pragma\s+(\w+)", re.IGNORECASE)
ALLOWED = "SELECT, EXPLAIN SELECT, read-only PRAGMA"


class RefusedStatement(ValueError):
    """The SQL would write (or is not exactly one statement); it was not run."""


def check_read_only(sql: str) -> None:
    """Raise RefusedStatement unless `sql` is exactly one reading statement (DuckDB's parser decides)."""
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise RefusedStatement(f"give exactly one SQL statement (got {len(statements)})")
    statement = statements[0]
    kind = statement.type
    if kind == duckdb.StatementType.SELECT:
        return
    if kind == duckdb.StatementType.EXPLAIN:
        explained = _EXPLAIN_PREFIX.sub("", statement.query, count=1)
        inner = duckdb.extract_statements(explained) if explained != statement.query else []
        if len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT:
            return
        raise RefusedStatement(f"only EXPLAIN of a SELECT may run here (allowed: {ALLOWED})")
    if kind == duckdb.StatementType.PRAGMA:
        name = _PRAGMA_NAME.match(statement.query)
        if name and name.group(1).lower() in READ_ONLY_PRAGMAS:
            return
        raise RefusedStatement(f"PRAGMA {name.group(1) if name else ''} may change settings; "
                               f"read-only PRAGMAs are {', '.join(sorted(READ_ONLY_PRAGMAS))}")
    hint = " (use SELECT * FROM fn(...) instead)" if kind == duckdb.StatementType.CALL else ""
    raise RefusedStatement(f"{kind.name} is not a read-only query and the warehouse is opened "
                           f"read-only (allowed: {ALLOWED}){hint}")


def run_query(run_dir: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of one read-only statement against the run's warehouse."""
    check_read_only(sql)
    con = connect(run_dir, read_only=True)
    try:
        register_shard_views(con, run_dir, temporary=True)
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        return columns, cursor.fetchall()
    finally:
        con.close()


def _cell(value: Any) -> str:
    return "NULL" if value is None else str(value)


def _is_numeric(values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 for v in present)


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """Aligned columns under a header, numbers right-aligned, then a row count.

    A cell with line breaks (EXPLAIN's plan) continues on the following lines of its column.
    """
    cells = [[_cell(v).rstrip("\n").split("\n") for v in row] for row in rows]
    widths = [max([len(c), *(len(part) for r in cells for part in r[i])])
              for i, c in enumerate(columns)]
    numeric = [_is_numeric([r[i] for r in rows]) for i in range(len(columns))]

    def lines(row: list[list[str]]) -> list[str]:
        out = []
        for k in range(max((len(parts) for parts in row), default=1)):
            values = [parts[k] if k < len(parts) else "" for parts in row]
            out.append("  ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(values, widths, numeric)).rstrip())
        return out

    out = [*lines([[c] for c in columns]), "  ".join("-" * w for w in widths)]
    for row in cells:
        out.extend(lines(row))
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out)


def format_csv(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue().rstrip("\n")


def format_json(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """One JSON document: a list of objects; dates, decimals and UUIDs become strings."""
    return json.dumps([dict(zip(columns, row)) for row in rows], ensure_ascii=False, default=str,
                      indent=1)


FORMATTERS = {"table": format_table, "csv": format_csv, "json": format_json}


def _fail(message: str, status: int) -> int:
    print(f"warehouse.sql: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.sql", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/tiny")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("sql", help="one read-only SQL statement")
    args = parser.parse_args(argv)

    if not args.run.is_dir():
        return _fail(f"{args.run}: no such run folder", 2)
    if not db_path(args.run).is_file():
        return _fail(f"{db_path(args.run)}: no warehouse here (has the ingest stage run?)", 2)
    try:
        columns, rows = run_query(args.run, args.sql)
    except RefusedStatement as err:
        return _fail(f"refused: {err}", 2)
    except WarehouseLocked as err:
        return _fail(str(err), 1)
    except duckdb.Error as err:
        return _fail(f"sql error: {' '.join(str(err).split())}", 1)
    try:
        print(FORMATTERS[args.format](columns, rows))
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
