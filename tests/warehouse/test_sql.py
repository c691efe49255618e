"""python -m warehouse.sql against real DuckDB files: formats, refusals, the sealed warehouse
(nothing outside the run folder, no extensions, timeouts and Ctrl-C), locks and errors."""
import csv
import io
import json
import shutil
import subprocess
import sys

from pathlib import Path

import pyarrow as pa
import pytest

from warehouse.db import connect, db_path, register_shard_views
from warehouse.shard_io import shard_path, write_parquet_atomically
from warehouse.sql import RefusedStatement, check_read_only, main

DOCS = [("d1", 0, "train", "synthetic", None, 5, "hello"),
        ("d2", 0, "val", "synthetic", "http://x", 12, "café, Zürich"),
        ("d3", 1, "train", "synthetic", None, 100, "x" * 100)]


def _docs_shard(run, k, ids):
    write_parquet_atomically(pa.table({"doc_id": ids, "text": ["x"] * len(ids),
                                       "source": ["synthetic"] * len(ids), "url": [None] * len(ids),
                                       "split": ["train"] * len(ids)}), shard_path(run, "docs", k))


@pytest.fixture
def run_dir(tmp_path):
    con = connect(tmp_path)
    con.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)", DOCS)
    con.close()
    _docs_shard(tmp_path, 0, ["d1", "d3"])  # no stored view: the CLI makes a connection-local one
    return tmp_path


def _cli(capsys, run, sql, *extra):
    status = main(["--run", str(run), sql, *extra])
    out, err = capsys.readouterr()
    return status, out, err


def _count(run) -> int:
    con = connect(run, read_only=True)
    try:
        return con.execute("SELECT count(*) FROM documents").fetchall()[0][0]
    finally:
        con.close()


def test_table_format_is_aligned_with_header_and_row_count(run_dir, capsys):
    status, out, err = _cli(capsys, run_dir, "SELECT doc_id, n_chars, url FROM documents ORDER BY doc_id")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["doc_id", "n_chars", "url"]
    assert lines[1] == "------  -------  --------"
    assert lines[2:5] == ["d1            5  NULL",
                          "d2           12  http://x",
                          "d3          100  NULL"]
    assert lines[5] == "(3 rows)"


def test_count_query(run_dir, capsys):
    status, out, _ = _cli(capsys, run_dir, "SELECT count(*) AS n FROM documents")
    assert status == 0 and out.splitlines()[2].strip() == "3"


def test_csv_format(run_dir, capsys):
    status, out, _ = _cli(capsys, run_dir, "SELECT doc_id, url, text FROM documents ORDER BY doc_id",
                          "--format", "csv")
    assert status == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["doc_id", "url", "text"], ["d1", "", "hello"], ["d2", "http://x", "café, Zürich"],
        ["d3", "", "x" * 100]]


def test_json_format_is_one_document(run_dir, capsys):
    status, out, _ = _cli(capsys, run_dir,
                          "SELECT doc_id, shard, url, TIMESTAMP '2026-11-24 12:00:00' AS t "
                          "FROM documents WHERE shard = 0 ORDER BY doc_id", "--format", "json")
    assert status == 0
    assert json.loads(out) == [
        {"doc_id": "d1", "shard": 0, "url": None, "t": "2026-11-24 12:00:00"},
        {"doc_id": "d2", "shard": 0, "url": "http://x", "t": "2026-11-24 12:00:00"}]


def test_shard_views_are_queryable_read_only(run_dir, capsys):
    status, out, err = _cli(capsys, run_dir, "SELECT count(*) AS n FROM docs_shards", "--format", "json")
    assert (status, err) == (0, "") and json.loads(out) == [{"n": 2}]


def test_stored_shard_views_are_listed_once_and_follow_a_moved_run_folder(tmp_path, capsys):
    old = tmp_path / "old"
    _docs_shard(old, 0, ["d1", "d2"])
    con = connect(old)
    assert register_shard_views(con, old) == ["docs_shards"]  # as the stages store it
    con.close()
    run = Path(shutil.move(old, tmp_path / "moved"))
    _docs_shard(run, 1, ["d3"])  # written after the move: the view must read the new folder

    def ask(sql):
        status, out, err = _cli(capsys, run, sql, "--format", "json")
        assert (status, err) == (0, "")
        return json.loads(out)

    assert [r["name"] for r in ask("SHOW TABLES")].count("docs_shards") == 1
    assert ask("SELECT count(*) AS n FROM duckdb_views() WHERE view_name = 'docs_shards'") == [{"n": 1}]
    rows = ask("SELECT doc_id, filename FROM docs_shards ORDER BY doc_id")
    assert [r["doc_id"] for r in rows] == ["d1", "d2", "d3"]
    assert {Path(r["filename"]).parent for r in rows} == {run.resolve() / "docs"}


@pytest.mark.parametrize("sql", [
    "INSERT INTO documents VALUES ('d9', 0, 'train', 's', NULL, 1, 'x')",
    "UPDATE documents SET text = 'y'",
    "DELETE FROM documents",
    "CREATE TABLE t (a INT)",
    "CREATE TEMP VIEW v AS SELECT 1",
    "DROP TABLE documents",
    "ALTER TABLE documents ADD COLUMN b INT",
    "ATTACH 'other.duckdb' AS o",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "PRAGMA threads = 1",
    "PRAGMA enable_profiling",
    "CALL checkpoint()",
    "CHECKPOINT",
    "EXPLAIN ANALYZE DELETE FROM documents",
    "SELECT 1; DELETE FROM documents",
    "SELECT 1; SELECT 2",
    "  ",
    # writes hidden in a SELECT, and reads outside the run folder: refused by the sealed connection
    "WITH d AS (DELETE FROM documents RETURNING *) SELECT * FROM d",
    "WITH d AS (INSERT INTO documents VALUES ('d9', 0, 't', 's', NULL, 1, 'x') RETURNING *) "
    "SELECT * FROM d",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "SELECT * FROM read_blob('../../../../etc/passwd')",
])
def test_writing_statements_are_refused_before_running(run_dir, capsys, sql):
    status, out, err = _cli(capsys, run_dir, sql)
    assert status == 2 and out == ""
    assert err.startswith("warehouse.sql: refused: ") and err.count("\n") == 1
    assert _count(run_dir) == 3


def test_install_is_named_as_such(run_dir, capsys):
    status, _, err = _cli(capsys, run_dir, "INSTALL httpfs")
    assert status == 2 and err.startswith("warehouse.sql: refused: INSTALL is not a read-only")


def test_no_extension_is_installed_or_loaded(run_dir, capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    # a JSON-over-HTTP read would auto-install httpfs into $HOME/.duckdb; sealed, it is refused
    status, _, err = _cli(capsys, run_dir, "SELECT * FROM 'https://example.com/x.json'")
    assert status == 2 and "sealed to the run folder" in err
    assert not (home / ".duckdb").exists()


def test_shard_views_still_read_inside_the_sealed_run_folder(run_dir, capsys):
    status, out, _ = _cli(capsys, run_dir, "SELECT count(*) AS n FROM docs_shards", "--format", "csv")
    assert status == 0 and out == "n\n2\n"


def test_a_long_query_stops_at_the_timeout_and_releases_the_database(run_dir, capsys):
    status, out, err = _cli(capsys, run_dir, "SELECT count(*) FROM range(100000000000)",
                            "--timeout", "1")
    assert status == 1 and out == ""
    assert err == "warehouse.sql: the query ran longer than 1 s and was stopped (--timeout SECONDS " \
                  "to allow more)\n"
    connect(run_dir).close()  # nobody holds it any more


def test_ctrl_c_interrupts_the_query(run_dir):
    import signal
    import time
    cli = subprocess.Popen([sys.executable, "-m", "warehouse.sql", "--run", str(run_dir),
                            "SELECT count(*) FROM range(100000000000)"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # imports, then the query runs
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 130 and out == "" and err == "warehouse.sql: interrupted\n"


def test_a_stage_that_wants_to_write_is_told_a_reader_holds_the_file(run_dir):
    import time
    from warehouse.db import WarehouseLocked
    cli = subprocess.Popen([sys.executable, "-m", "warehouse.sql", "--run", str(run_dir),
                            "--timeout", "20", "SELECT count(*) FROM range(100000000000)"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        with pytest.raises(WarehouseLocked, match=rf"locked by a reader \(PID {cli.pid}: "
                                                  r"python -m warehouse.sql\)"):
            connect(run_dir)
    finally:
        cli.kill()
        cli.wait()


def test_copy_to_is_refused_although_read_only_mode_would_allow_it(run_dir, capsys):
    target = run_dir / "dump.csv"
    status, _, err = _cli(capsys, run_dir, f"COPY documents TO '{target}'")
    assert status == 2 and "COPY" in err
    assert not target.exists()


@pytest.mark.parametrize("sql", [
    "SELECT 1", "FROM documents", "WITH x AS (SELECT 1 AS a) SELECT * FROM x", "DESCRIBE documents",
    "SHOW TABLES", "SUMMARIZE documents", "EXPLAIN SELECT 1", "EXPLAIN ANALYZE SELECT 1",
    "PRAGMA table_info('documents')", "PRAGMA database_size", "SELECT 1;",
])
def test_reading_statements_pass_the_check(sql):
    check_read_only(sql)


def test_check_rejects_writes_without_a_database():
    with pytest.raises(RefusedStatement, match="INSERT is not a read-only query"):
        check_read_only("insert into t values (1)")


def test_sql_error_is_one_line(run_dir, capsys):
    for sql in ["SELECT * FROM no_such_table", "SELEC 1", "SELECT 1/'a'"]:
        status, out, err = _cli(capsys, run_dir, sql)
        assert status == 1 and out == ""
        assert err.startswith("warehouse.sql: sql error: ") and err.count("\n") == 1


def test_missing_run_or_warehouse(tmp_path, capsys):
    status, _, err = _cli(capsys, tmp_path / "nope", "SELECT 1")
    assert status == 2 and err == f"warehouse.sql: {tmp_path / 'nope'}: no such run folder\n"
    status, _, err = _cli(capsys, tmp_path, "SELECT 1")
    assert status == 2 and "no warehouse here" in err and err.count("\n") == 1
    assert not db_path(tmp_path).exists()


def _run_cli(run_dir, sql):
    return subprocess.run([sys.executable, "-m", "warehouse.sql", "--run", str(run_dir), sql],
                          capture_output=True, text=True, timeout=120)


def test_write_lock_held_by_another_process_is_one_line(run_dir, write_lock_holder):
    with write_lock_holder(db_path(run_dir)) as pid:
        locked = _run_cli(run_dir, "SELECT count(*) FROM documents")
    assert locked.returncode == 1 and locked.stdout == ""
    assert locked.stderr.count("\n") == 1 and "Traceback" not in locked.stderr
    assert f"locked by a stage writing it (PID {pid}: " in locked.stderr

    free = _run_cli(run_dir, "SELECT count(*) AS n FROM documents")
    assert free.returncode == 0 and free.stdout.splitlines()[2].strip() == "3"


def test_output_piped_into_head_ends_quietly(run_dir):
    cli = subprocess.Popen([sys.executable, "-m", "warehouse.sql", "--run", str(run_dir),
                            "SELECT range AS n FROM range(200000)"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert cli.stdout.readline().split() == [b"n"]
    cli.stdout.close()  # like `| head -1`: the reader is gone long before 200,000 rows
    stderr = cli.stderr.read()
    assert cli.wait(timeout=120) == 0 and stderr == b""


def _two_evaluations(run):
    from evaluation.metrics import Figure, metric_row
    from evaluation.stage import write_evaluation
    con = connect(run)
    ids = [write_evaluation(con, "config", {"steps": steps},
                            [metric_row("triplet", "none", "recall_acc", Figure(acc, n=100)),
                             metric_row("triplet", "none", "recall_acc", Figure(acc / 2, n=40),
                                        bucket=(64, 80)),
                             metric_row("triplet", "none", "bpb", Figure(2.0))], [])
           for steps, acc in ((100, 0.5), (200, 0.75))]
    con.close()
    return ids


def test_evaluations_are_listed_newest_first_and_compared_by_prefix(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    older, newer = _two_evaluations(run)
    assert main(["--run", str(run), "--evaluations", "--format", "csv"]) == 0
    listed = [line.split(",")[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == [newer, older]
    assert main(["--run", str(run), "--compare", older[:6], newer[:6], "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "variant,ablation,metric,bucket_lo,a,b,b_minus_a,n_a,n_b"
    assert lines[1:] == ["triplet,none,bpb,,2.0,2.0,0.0,,",
                         "triplet,none,recall_acc,64,0.25,0.375,0.125,40,40",
                         "triplet,none,recall_acc,,0.5,0.75,0.25,100,100"]


def test_compare_names_an_unknown_or_ambiguous_evaluation(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    older, _ = _two_evaluations(run)
    assert main(["--run", str(run), "--compare", older, "zzz"]) == 2
    assert "evaluation 'zzz' must name exactly one evaluation; matches: none" in capsys.readouterr().err
    assert main(["--run", str(run), "--compare", older, ""]) == 2  # every id starts with ""
    assert "matches: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--run", str(run), "--evaluations", "SELECT 1"])
    assert "give one of" in capsys.readouterr().err
