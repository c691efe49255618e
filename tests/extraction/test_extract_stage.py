"""The extract stage on a real small synthetic run: shards, warehouse rows, resume, errors."""
import dataclasses

import duckdb
import pyarrow.parquet as pq
import pytest

from configs.schema import parse_config
from corpora.ingest import run_ingest
from extraction import registry, stage
from warehouse.contracts import TRIPLET_SCHEMA, ExtractionError
from extraction.stage import ERRORS_KIND, ExtractStageError, ROWS_PER_SHARD_ID, run_extract
from warehouse.shard_io import list_shards, shard_path

CONFIG = {"name": "extract-test",
          "ingest": {"source": "synthetic", "docs_per_shard": 4,
                     "synthetic": {"num_docs": 10, "min_distance": 20, "max_distance": 60}},
          "extract": {"backends": ["oracle", "spacy"], "spacy": {"batch_size": 8}}}


@pytest.fixture(scope="module", autouse=True)
def fixed_code_version():
    # the fingerprint includes the stage's code version; pin it so that a file edited in a shared
    # working tree while the tests run does not make every shard look stale
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stage, "code_version", lambda modules: "test-code")
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = parse_config(CONFIG)
    run_dir = tmp_path_factory.mktemp("run")
    run_ingest(cfg, run_dir)
    progress = []
    result = run_extract(cfg, run_dir, lambda done, total: progress.append((done, total)))
    return cfg, run_dir, result, progress


def query(run_dir, sql):
    con = duckdb.connect(str(run_dir / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_one_triplets_shard_per_docs_shard_with_both_backends(run):
    cfg, run_dir, result, progress = run
    assert [p.name for p in list_shards(run_dir, "triplets")] == \
        [p.name for p in list_shards(run_dir, "docs")] == [f"shard_{k:05d}.parquet" for k in range(3)]
    table = pq.read_table(shard_path(run_dir, "triplets", 0))
    assert table.schema.remove_metadata() == TRIPLET_SCHEMA
    assert set(table.column("extractor").to_pylist()) == {"oracle", "spacy"}
    gold = pq.read_table(shard_path(run_dir, "gold", 0))
    assert result["rows"]["triplets_oracle"] == sum(
        pq.read_metadata(p).num_rows for p in list_shards(run_dir, "gold"))
    assert gold.num_rows == sum(1 for e in table.column("extractor").to_pylist() if e == "oracle")
    assert result["rows"]["docs"] == 10 and result["counters"]["shards_extracted"] == 3
    assert result["rows"]["docs_with_triplets_spacy"] == 10
    assert result["counters"]["extraction_errors_spacy"] == 0
    assert progress[-1] == (10, 10)
    assert "triplets/shard_00000.parquet" in result["outputs"]


def test_warehouse_holds_the_triplets_with_stable_ids(run):
    _, run_dir, result, _ = run
    rows = query(run_dir, "SELECT triplet_id, shard, extractor, subject_id FROM canonical_triplets "
                          "ORDER BY triplet_id")
    assert len(rows) == result["rows"]["triplets"] > 0
    assert all(tid // ROWS_PER_SHARD_ID == shard for tid, shard, _, _ in rows)
    assert all(sid is None for *_, sid in rows)  # canonicalize fills these
    per_backend = dict(query(run_dir, "SELECT extractor, count(*) FROM triplets GROUP BY 1"))
    assert per_backend == {"oracle": result["rows"]["triplets_oracle"],
                           "spacy": result["rows"]["triplets_spacy"]}
    assert query(run_dir, "SELECT count(*) FROM triplet_shards")[0][0] == len(rows)


def test_rerun_skips_done_shards_and_redoes_missing_or_cut_off_ones(run):
    cfg, run_dir, first, _ = run
    ids_before = query(run_dir, "SELECT triplet_id, subject, object FROM triplets ORDER BY 1")
    assert run_extract(cfg, run_dir)["counters"]["shards_extracted"] == 0
    shard_path(run_dir, "triplets", 1).unlink()  # killed before shard 1 was written
    path2 = shard_path(run_dir, "triplets", 2)
    path2.write_bytes(path2.read_bytes()[:100])  # a cut-off file
    again = run_extract(cfg, run_dir)
    assert again["counters"]["shards_extracted"] == 2
    assert again["rows"] == first["rows"]  # a resumed run counts the same rows
    assert query(run_dir, "SELECT triplet_id, subject, object FROM triplets ORDER BY 1") == ids_before


def test_changed_config_redoes_every_shard(run):
    cfg, run_dir, _, _ = run
    oracle_only = parse_config({**CONFIG, "extract": {"backends": ["oracle"]}})
    result = run_extract(oracle_only, run_dir)
    assert result["counters"]["shards_extracted"] == 3 and "triplets_spacy" not in result["rows"]
    assert query(run_dir, "SELECT DISTINCT extractor FROM triplets") == [("oracle",)]
    run_extract(cfg, run_dir)  # back to both, for any later test


def test_changed_code_redoes_every_shard(run, monkeypatch):
    cfg, run_dir, _, _ = run
    monkeypatch.setattr(stage, "code_version", lambda modules: "edited-code")
    assert run_extract(cfg, run_dir)["counters"]["shards_extracted"] == 3


class FailingBackend:
    """A backend whose model output could not be parsed for some documents (vLLM's failure
    mode, which cannot run here): the stage must record the failures, not crash."""
    name = "oracle:failing"  # the stage counts rows by "<backend>" or "<backend>:<model>"

    def extract(self, docs):
        return [], [ExtractionError(d.doc_id, "invalid JSON", "{'subject': " + "x" * 500)
                    for d in docs[:2]]


def test_extraction_errors_reach_the_warehouse(tmp_path, monkeypatch):
    cfg = parse_config({**CONFIG, "extract": {"backends": ["oracle"]}})
    run_ingest(cfg, tmp_path)
    monkeypatch.setitem(registry.BACKENDS, "oracle", dataclasses.replace(
        registry.BACKENDS["oracle"], build=lambda extract_cfg: FailingBackend()))
    result = run_extract(cfg, tmp_path)
    assert result["counters"]["extraction_errors_oracle"] == 6  # 2 per shard, 3 shards
    rows = query(tmp_path, "SELECT shard, extractor, error, length(raw_prefix) FROM extraction_errors "
                           "ORDER BY shard")
    assert [r[0] for r in rows] == [0, 0, 1, 1, 2, 2]
    assert {r[1:] for r in rows} == {("oracle:failing", "invalid JSON", 200)}
    assert len(list_shards(tmp_path, ERRORS_KIND)) == 3


def test_no_docs_shards_is_a_clear_error(tmp_path):
    with pytest.raises(ExtractStageError, match="run the ingest stage first"):
        run_extract(parse_config(CONFIG), tmp_path)
