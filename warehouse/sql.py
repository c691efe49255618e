"""Ask a run's warehouse one read-only SQL question and print the answer.

    python -m warehouse.sql --run runs/tiny "SELECT count(*) FROM documents"
    python -m warehouse.sql --run runs/tiny "SELECT * FROM triplets LIMIT 5" --format json
    python -m warehouse.sql --run runs/tiny --evaluations         # the evaluate stage's history
    python -m warehouse.sql --run runs/tiny --compare 3f1c 9a02   # two evaluations side by side

The database is opened read-only, so it can be queried while no stage writes it. Besides the
tables (documents, triplets, entities, relations, aliases, stage_runs, evaluations, metrics,
extraction_scores, extraction_errors) the shard folders are visible as views: docs_shards, gold_shards,
recall_shards, triplet_shards, tokens_shards, memory_shards: the views the stages stored, which
read the run folder where it lies now (a moved run folder included), and a connection-local view
for a folder with shards but no stored view, so each is listed once. Only one statement of a
reading kind runs (SELECT, EXPLAIN of a SELECT, a read-only PRAGMA); anything else is refused
before it reaches the database.

The warehouse is sealed: the connection reads files only inside the run folder (DuckDB's
`allowed_directories`, external access otherwise off), installs and loads no extension, and its
configuration is locked before the query runs, so a SELECT cannot read `/etc/passwd`, fetch from
the network or write under $HOME. A query stops after `--timeout` seconds (default 60) or at
Ctrl-C, and releases the database at once.

`--evaluations` lists the run's evaluations, newest (the current one) first; `--compare A B`
prints every figure of evaluations A and B (ids or unique prefixes of them) side by side, with
B - A. It runs this query, which works as it is in any SQL client:

    SELECT coalesce(a.variant, b.variant) AS variant, coalesce(a.ablation, b.ablation) AS ablation,
           coalesce(a.metric, b.metric) AS metric, coalesce(a.bucket_lo, b.bucket_lo) AS bucket_lo,
           a.value AS a, b.value AS b, b.value - a.value AS b_minus_a, a.n AS n_a, b.n AS n_b
    FROM (SELECT * FROM metrics WHERE evaluation_id = 'A') a
    FULL JOIN (SELECT * FROM metrics WHERE evaluation_id = 'B') b
      ON a.variant = b.variant AND a.ablation = b.ablation AND a.metric = b.metric
     AND a.bucket_lo IS NOT DISTINCT FROM b.bucket_lo   -- NULL on every row but a bucket's
    ORDER BY variant, ablation, metric, bucket_lo

Exit status: 0 answered; 1 the query failed, timed out, or a stage holds the write lock; 2 bad
arguments, missing run or warehouse, or a refused statement (a write of any kind, a data-modifying
CTE included; a read outside the run folder; an extension); 130 interrupted.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import signal
import sys
import threading
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


DEFAULT_TIMEOUT_S = 60.0
# settings fixed when the connection opens; the rest (allowed_directories, external access off,
# locked configuration) right after the views are registered
OPEN_SETTINGS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class RefusedStatement(ValueError):
    """The SQL would write, read outside the run, or is not exactly one statement; not run."""


class QueryStopped(RuntimeError):
    """The query ran past its timeout or was interrupted."""

    def __init__(self, message: str, by_user: bool):
        super().__init__(message)
        self.by_user = by_user


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
    # DuckDB files INSTALL under LOAD: name the statement as written
    name = statement.query.split()[0].upper() if kind == duckdb.StatementType.LOAD else kind.name
    raise RefusedStatement(f"{name} is not a read-only query and the warehouse is opened "
                           f"read-only (allowed: {ALLOWED}){hint}")


def seal(con: duckdb.DuckDBPyConnection, run_dir: Path) -> None:
    """Files only inside the run folder, no extensions, and no setting changed afterwards."""
    folder = str(Path(run_dir).resolve()).replace("'", "''") + "/"
    con.execute(f"SET allowed_directories = ['{folder}']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def run_query(run_dir: Path, sql: str,
              timeout: float = DEFAULT_TIMEOUT_S) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of one read-only statement against the sealed warehouse."""
    check_read_only(sql)
    con = connect(run_dir, read_only=True, config=OPEN_SETTINGS)
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.set()
        con.interrupt()

    timer = threading.Timer(timeout, con.interrupt)
    timer.daemon = True
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        register_shard_views(con, run_dir, temporary=True)
        seal(con, run_dir)
        timer.start()
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        return columns, cursor.fetchall()
    except duckdb.InterruptException:
        if interrupted.is_set():
            raise QueryStopped("interrupted", by_user=True) from None
        raise QueryStopped(f"the query ran longer than {timeout:g} s and was stopped "
                           "(--timeout SECONDS to allow more)", by_user=False) from None
    except duckdb.PermissionException as err:
        raise RefusedStatement(f"the warehouse is sealed to the run folder "
                               f"({' '.join(str(err).split('LINE')[0].split())})") from None
    except duckdb.InvalidInputException as err:
        if "read-only mode" in str(err):  # a write hidden in a SELECT: a data-modifying CTE
            raise RefusedStatement("the statement writes (a data-modifying CTE?) and the warehouse "
                                   f"is opened read-only (allowed: {ALLOWED})") from None
        raise
    finally:
        timer.cancel()
        if in_main:
            signal.signal(signal.SIGINT, previous)
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


EVALUATIONS_SQL = ("SELECT evaluation_id, recorded_at, config_fingerprint, settings FROM evaluations "
                   "ORDER BY recorded_at DESC, evaluation_id")


class UnknownEvaluation(ValueError):
    """An evaluation id (prefix) that names no evaluation, or several."""


def compare_sql(a: str, b: str) -> str:
    """The module docstring's comparison query for evaluation ids `a` and `b` (the documented
    query is the one that runs, so the two cannot drift apart)."""
    query = __doc__.split("    SELECT coalesce", 1)[1].split("\n\nExit status", 1)[0]
    query = "SELECT coalesce" + query.replace("'A'", _quote(a)).replace("'B'", _quote(b))
    return "\n".join(line.split("--")[0].strip() for line in query.splitlines())


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def resolve_evaluation(run_dir: Path, prefix: str, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """The one evaluation id starting with `prefix`; UnknownEvaluation naming the matches otherwise."""
    _, rows = run_query(run_dir, "SELECT evaluation_id FROM evaluations WHERE starts_with("
                        f"evaluation_id, {_quote(prefix)}) ORDER BY evaluation_id", timeout)
    if len(rows) != 1:
        found = ", ".join(r[0] for r in rows) if rows else "none (--evaluations lists them)"
        raise UnknownEvaluation(f"evaluation {prefix!r} must name exactly one evaluation; matches: {found}")
    return rows[0][0]


def _fail(message: str, status: int) -> int:
    print(f"warehouse.sql: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.sql", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/tiny")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"stop the query after this long (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--evaluations", action="store_true",
                        help="list the run's evaluations, newest first")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two evaluations' figures side by side (ids or unique prefixes)")
    parser.add_argument("sql", nargs="?", help="one read-only SQL statement")
    args = parser.parse_args(argv)
    if not 0 < args.timeout < 10**7:
        parser.error("--timeout must be a positive number of seconds")
    if sum((args.sql is not None, args.evaluations, args.compare is not None)) != 1:
        parser.error("give one of: an SQL statement, --evaluations, --compare A B")

    if not args.run.is_dir():
        return _fail(f"{args.run}: no such run folder", 2)
    if not db_path(args.run).is_file():
        return _fail(f"{db_path(args.run)}: no warehouse here (has the ingest stage run?)", 2)
    try:
        if args.compare:
            a, b = (resolve_evaluation(args.run, prefix, args.timeout) for prefix in args.compare)
            sql = compare_sql(a, b)
        else:
            sql = EVALUATIONS_SQL if args.evaluations else args.sql
        columns, rows = run_query(args.run, sql, args.timeout)
    except UnknownEvaluation as err:
        return _fail(str(err), 2)
    except RefusedStatement as err:
        return _fail(f"refused: {err}", 2)
    except QueryStopped as err:
        return _fail(str(err), 130 if err.by_user else 1)
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
