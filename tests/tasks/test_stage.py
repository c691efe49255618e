"""Cache keys, stage selection and manifests of the pipeline spine (no Prefect needed)."""
import json
import os

import pyarrow as pa
import pytest

from configs.schema import parse_config
from warehouse.db import connect
from warehouse.shard_io import write_parquet_atomically
from tasks.stage import (MissingUpstream, cache_key, is_current, manifest_fingerprint,
                         manifest_path, plan_stages, read_manifest, select_stages,
                         upstream_fingerprints, write_manifest)


def _cfg(**sections):
    return parse_config({"name": "t", **sections})


def test_plan_has_one_train_stage_per_variant():
    plan = plan_stages(_cfg(train={"variants": ["window", "triplet"]}))
    names = [s.name for s in plan]
    assert names == ["ingest", "tokenizer", "extract", "canonicalize", "shards",
                     "train-window", "train-triplet", "evaluate", "report"]
    evaluate = next(s for s in plan if s.name == "evaluate")
    assert evaluate.upstream == ("train-window", "train-triplet", "canonicalize")
    assert plan[5].manifest_dir == "train/window"


def test_select_stages():
    plan = plan_stages(_cfg())
    assert [s.name for s in select_stages(plan, ["tokenizer", "ingest"])] == ["ingest", "tokenizer"]
    assert [s.name for s in select_stages(plan, ["train"])] == [
        "train-window", "train-triplet", "train-raw", "train-full"]
    with pytest.raises(ValueError, match="unknown stage 'tokeniser'"):
        select_stages(plan, ["tokeniser"])


def test_key_depends_on_own_section_and_upstream_only():
    plan = {s.name: s for s in plan_stages(_cfg())}
    base, more_steps = _cfg(), _cfg(train={"steps": 5})
    tok = plan["tokenizer"]
    assert cache_key(base, tok, {"ingest": "a"}) == cache_key(more_steps, tok, {"ingest": "a"})
    assert cache_key(base, tok, {"ingest": "a"}) != cache_key(base, tok, {"ingest": "b"})
    bigger_vocab = _cfg(tokenizer={"vocab_size": 1024})
    assert cache_key(base, tok, {"ingest": "a"}) != cache_key(bigger_vocab, tok, {"ingest": "a"})
    train = plan["train-triplet"]
    assert cache_key(base, train, {"shards": "s"}) != cache_key(more_steps, train, {"shards": "s"})


def test_manifest_round_trip_and_currency(tmp_path):
    cfg = _cfg()
    plan = plan_stages(cfg)
    ingest, tokenizer = plan[0], plan[1]
    with pytest.raises(MissingUpstream, match="needs stage 'ingest'"):
        upstream_fingerprints(tmp_path, tokenizer, plan)
    shard = tmp_path / "docs" / "shard_00000.parquet"
    write_parquet_atomically(pa.table({"doc_id": ["a", "b", "c"]}), shard)
    connect(tmp_path).close()
    key = cache_key(cfg, ingest, {})
    manifest = write_manifest(tmp_path, ingest, key, {}, {
        "outputs": ["docs/shard_00000.parquet"], "rows": {"documents": 3}}, 1.5)
    assert read_manifest(tmp_path, ingest) == manifest
    recorded = manifest["outputs"]
    assert recorded["docs/shard_00000.parquet"]["rows"] == 3
    assert recorded["table:documents"] == {"rows": 0, "hash": "0000000000000000"}
    assert json.loads(manifest_path(tmp_path, ingest).read_text())["rows"] == {"documents": 3}
    assert is_current(tmp_path, ingest, key)
    assert not is_current(tmp_path, ingest, "other-key")
    up = upstream_fingerprints(tmp_path, tokenizer, plan)
    assert up == {"ingest": manifest_fingerprint(manifest)}
    # timings and modification times do not change what downstream stages see
    again = write_manifest(tmp_path, ingest, key, {}, {
        "outputs": ["docs/shard_00000.parquet"], "rows": {"documents": 3},
        "stats": {"evicted_context": {"window_len": 64}}}, 99.0)
    assert read_manifest(tmp_path, ingest)["stats"] == {"evicted_context": {"window_len": 64}}
    os.utime(shard, ns=(1, 1))
    assert manifest_fingerprint(again) == manifest_fingerprint(manifest)
    assert is_current(tmp_path, ingest, key)  # touched, same content
    # other content of the same size, a cut-off file, a deleted one: the stage is stale
    write_parquet_atomically(pa.table({"doc_id": ["x", "y", "z"]}), shard)
    assert not is_current(tmp_path, ingest, key)
    write_manifest(tmp_path, ingest, key, {}, {"outputs": ["docs/shard_00000.parquet"]}, 1.0)
    shard.write_bytes(shard.read_bytes()[:-20])
    assert not is_current(tmp_path, ingest, key)
    shard.unlink()
    assert not is_current(tmp_path, ingest, key)


def test_a_table_with_other_rows_makes_its_stage_stale(tmp_path):
    cfg = _cfg()
    canonicalize = next(s for s in plan_stages(cfg) if s.name == "canonicalize")
    con = connect(tmp_path)
    con.execute("INSERT INTO entities VALUES (1, 'mara quell', 3)")
    con.close()
    write_manifest(tmp_path, canonicalize, "k", {}, {"outputs": []}, 1.0)
    assert is_current(tmp_path, canonicalize, "k")
    con = connect(tmp_path)
    con.execute("DELETE FROM entities")
    con.close()
    assert not is_current(tmp_path, canonicalize, "k")


def test_unreadable_manifest_means_rerun(tmp_path):
    ingest = plan_stages(_cfg())[0]
    path = manifest_path(tmp_path, ingest)
    path.parent.mkdir(parents=True)
    path.write_text('{"stage": "ingest", "cache_k')  # cut off mid-write
    assert read_manifest(tmp_path, ingest) is None
