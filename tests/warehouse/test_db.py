"""warehouse.db against real DuckDB files: schema, read-only opens, the write lock, shard views."""

import duckdb
import pyarrow as pa
import pytest

from warehouse.contracts import TABLE_WRITERS
from warehouse.db import WarehouseLocked, WarehouseOutdated, connect, db_path, register_shard_views
from warehouse.shard_io import shard_path, write_parquet_atomically

TABLES = set(TABLE_WRITERS)  # every table has one writer stage


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'").fetchall()}


def test_writable_connect_creates_the_schema_idempotently(tmp_path):
    con = connect(tmp_path)
    assert _tables(con) == TABLES
    con.execute("INSERT INTO entities VALUES (1, 'mara quell', 3)")
    con.close()
    con = connect(tmp_path)  # applying the schema again keeps the data
    assert con.execute("SELECT name FROM entities").fetchall() == [("mara quell",)]
    con.close()


def test_read_only_connect_needs_an_existing_warehouse(tmp_path):
    with pytest.raises(FileNotFoundError, match="has the ingest stage run"):
        connect(tmp_path, read_only=True)
    assert not db_path(tmp_path).exists()
    connect(tmp_path).close()
    con = connect(tmp_path, read_only=True)
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("INSERT INTO entities VALUES (1, 'x', 1)")
    con.close()


@pytest.mark.parametrize("read_only", [True, False])
def test_write_lock_held_by_another_process(tmp_path, write_lock_holder, read_only):
    connect(tmp_path).close()
    with write_lock_holder(db_path(tmp_path)) as pid:
        with pytest.raises(WarehouseLocked, match=f"locked by a stage writing it \\(PID {pid}: "):
            connect(tmp_path, read_only=read_only)
    connect(tmp_path, read_only=read_only).close()  # free again once the holder exits


def test_open_for_writing_in_this_process_is_reported_as_locked(tmp_path):
    writer = connect(tmp_path)
    try:
        with pytest.raises(WarehouseLocked, match="already open in this process"):
            connect(tmp_path, read_only=True)
    finally:
        writer.close()


def _docs_table(n: int, shard: int) -> pa.Table:
    return pa.table({"doc_id": [f"d{shard}-{i}" for i in range(n)], "text": ["x"] * n,
                     "source": ["synthetic"] * n, "url": pa.array([None] * n, pa.string()),
                     "split": ["train"] * n})


def test_shard_views_stored_and_temporary(tmp_path):
    write_parquet_atomically(_docs_table(3, 0), shard_path(tmp_path, "docs", 0))
    write_parquet_atomically(_docs_table(2, 1), shard_path(tmp_path, "docs", 1))
    con = connect(tmp_path)
    assert register_shard_views(con, tmp_path) == ["docs_shards"]  # empty folders get no view
    con.close()

    write_parquet_atomically(_docs_table(4, 2), shard_path(tmp_path, "docs", 2))
    con = connect(tmp_path, read_only=True)
    assert con.execute("SELECT count(*) FROM docs_shards").fetchall() == [(9,)]  # stored view, live glob
    with pytest.raises(duckdb.Error):
        register_shard_views(con, tmp_path)  # a read-only connection cannot store a view
    rows = con.execute("SELECT count(*), count(DISTINCT filename) FROM docs_shards").fetchall()
    assert rows == [(9, 3)]
    con.close()

    # a folder with shards but no stored view gets a connection-local one; stored ones are kept
    write_parquet_atomically(_docs_table(5, 0), shard_path(tmp_path, "gold", 0))
    con = connect(tmp_path, read_only=True)
    assert register_shard_views(con, tmp_path, temporary=True) == ["gold_shards"]
    assert con.execute("SELECT view_name, temporary FROM duckdb_views() WHERE NOT internal "
                       "AND view_name LIKE '%shards' ORDER BY view_name").fetchall() == [
        ("docs_shards", False), ("gold_shards", True)]
    assert con.execute("SELECT count(*) FROM gold_shards").fetchall() == [(5,)]
    con.close()

    # without warehouse.db.connect (no run-folder variable) a view reads the folder it was stored from
    plain = duckdb.connect(str(db_path(tmp_path)), read_only=True)
    assert plain.execute("SELECT count(*) FROM docs_shards").fetchall() == [(9,)]
    plain.close()


def test_a_warehouse_of_an_older_schema_is_refused_with_the_fix(tmp_path):
    old = duckdb.connect(str(db_path(tmp_path)))
    old.execute("CREATE TABLE triplets (triplet_id BIGINT, doc_id VARCHAR, subject_id BIGINT)")
    old.close()
    with pytest.raises(WarehouseOutdated, match=r"table triplets has the columns of an older "
                                                r"version .*delete the file and rerun"):
        connect(tmp_path)
    connect(tmp_path, read_only=True).close()  # readers still open it


def test_a_metrics_table_of_before_evaluation_history_is_dropped_for_the_stage_to_record_again(
        tmp_path, caplog):
    old = duckdb.connect(str(db_path(tmp_path)))
    old.execute("CREATE TABLE metrics (variant VARCHAR, ablation VARCHAR, split VARCHAR, "
                "metric VARCHAR, value DOUBLE, step INTEGER, recorded_at TIMESTAMP)")
    old.execute("INSERT INTO metrics VALUES ('triplet', 'none', 'val', 'recall_acc@64-80', 0.5, 1, "
                "now())")
    old.close()
    con = connect(tmp_path)
    columns = [r[0] for r in con.execute("DESCRIBE metrics").fetchall()]
    assert "evaluation_id" in columns and "bucket_lo" in columns
    assert con.execute("SELECT count(*) FROM metrics").fetchall() == [(0,)]
    con.close()
    assert "table metrics predates the current schema; dropped (the evaluate stage records it " \
           "again)" in caplog.text


def test_reading_a_warehouse_without_evaluation_history_says_what_to_rerun(tmp_path):
    from evaluation.metrics import EvaluationsOutdated, read_metrics
    duckdb.connect(str(db_path(tmp_path))).close()  # an old warehouse: no evaluations table
    con = connect(tmp_path, read_only=True)
    with pytest.raises(EvaluationsOutdated, match="rerun the evaluate stage"):
        read_metrics(con)
    con.close()
