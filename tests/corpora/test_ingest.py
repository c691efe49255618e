"""The ingest stage on real files: shards, the documents table, drops, resume after a kill."""
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from configs.schema import parse_config
from corpora.common import CorpusError
from corpora.ingest import clean_documents, run_ingest, split_of
from warehouse.contracts import DOCS_SCHEMA, RECALL_SCHEMA, Document
from corpora.synthetic import generate_documents
from warehouse.contracts import TRIPLET_SCHEMA
from warehouse.shard_io import list_shards, shard_path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NO_ORACLE = {"extract": {"backends": ["spacy"]}, "train": {"memory_source": "spacy"},
             "evaluate": {"ablations": ["no_memory"]}}


def synthetic_cfg(num_docs=30, docs_per_shard=8, seed=0):
    return parse_config({"name": "t", "seed": seed, "ingest": {
        "source": "synthetic", "docs_per_shard": docs_per_shard,
        "synthetic": {"num_docs": num_docs, "min_distance": 30, "max_distance": 60}}})


def documents(run: Path) -> list[tuple]:
    con = duckdb.connect(str(run / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute("SELECT doc_id, shard, split, source, url, n_chars, text "
                           "FROM documents ORDER BY shard, doc_id").fetchall()
    finally:
        con.close()


def mtimes(run: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for kind in ("docs", "gold", "recall")
            for p in list_shards(run, kind)}


def test_synthetic_ingest_writes_parallel_shards_and_the_documents_table(tmp_path):
    cfg = synthetic_cfg()
    progress = []
    result = run_ingest(cfg, tmp_path, on_progress=lambda d, t: progress.append((d, t)))
    docs = list(generate_documents(cfg.ingest.synthetic, cfg.seed))
    assert result["rows"] == {"documents": 30, "shards": 4,
                              "gold_triplets": sum(len(d.gold) for d in docs),
                              "recalls": sum(len(d.recalls) for d in docs)}
    assert result["counters"] == {"empty_doc": 0, "invalid_utf8": 0, "duplicate_id": 0,
                                  "short_doc": 0}
    assert progress[-1] == (30, 30) and [d for d, _ in progress[:4]] == [8, 16, 24, 30]
    assert len(result["outputs"]) == 12 and all((tmp_path / p).is_file() for p in result["outputs"])
    by_id = {d.doc_id: d for d in docs}
    for k in range(4):
        shard = pq.read_table(shard_path(tmp_path, "docs", k))
        assert shard.schema.remove_metadata() == DOCS_SCHEMA
        ids = shard.column("doc_id").to_pylist()
        assert ids == [f"syn-{i:06d}" for i in range(8 * k, min(8 * k + 8, 30))]
        gold = pq.read_table(shard_path(tmp_path, "gold", k))
        recall = pq.read_table(shard_path(tmp_path, "recall", k))
        assert gold.schema.remove_metadata() == TRIPLET_SCHEMA
        assert recall.schema.remove_metadata() == RECALL_SCHEMA
        assert set(gold.column("doc_id").to_pylist()) == set(ids)
        for row in recall.to_pylist():
            assert by_id[row["doc_id"]].text[row["char_start"]:row["char_end"]] == row["value"]
    rows = documents(tmp_path)
    assert [r[0] for r in rows] == [d.doc_id for d in docs]
    for doc_id, shard, split, source, url, n_chars, text in rows:
        assert (shard, split, source, url) == (int(doc_id[4:]) // 8, split_of(doc_id, 0.1),
                                               "synthetic", None)
        assert text == by_id[doc_id].text and n_chars == len(text)

    before = mtimes(tmp_path)
    again = run_ingest(cfg, tmp_path)
    assert again["rows"] == result["rows"] and mtimes(tmp_path) == before  # nothing rewritten
    assert documents(tmp_path) == rows  # reloaded, not duplicated
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM recall_shards").fetchall()[0][0] == result["rows"]["recalls"]
    assert con.execute("SELECT count(*) FROM gold_shards").fetchall()[0][0] == result["rows"]["gold_triplets"]
    con.close()


def test_split_is_a_stable_hash_of_doc_id_with_the_configured_fraction():
    ids = [f"doc-{i}" for i in range(20000)]
    splits = [split_of(i, 0.1) for i in ids]
    assert 0.09 < splits.count("val") / len(ids) < 0.11
    code = "import sys; from corpora.ingest import split_of; print(''.join(split_of(f'doc-{i}', 0.1)[0] for i in range(300)))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2")}
    assert outs == {"".join(s[0] for s in splits[:300])}


def test_changed_config_rewrites_shards_and_removes_stale_ones(tmp_path):
    run_ingest(synthetic_cfg(num_docs=30, seed=0), tmp_path)
    text_before = pq.read_table(shard_path(tmp_path, "docs", 0)).column("text").to_pylist()
    result = run_ingest(synthetic_cfg(num_docs=12, seed=1), tmp_path)
    assert result["rows"]["shards"] == 2 and len(list_shards(tmp_path, "docs")) == 2
    assert len(list_shards(tmp_path, "recall")) == 2
    assert pq.read_table(shard_path(tmp_path, "docs", 0)).column("text").to_pylist() != text_before
    assert len(documents(tmp_path)) == 12


def _write_parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_source_counts_and_skips_empty_invalid_and_duplicate_docs(tmp_path, caplog):
    data = _write_parquet(
        tmp_path / "corpus.parquet",
        id=["a", "b", "c", "d", "a", "e"],
        text=pa.array([b"First document.", b"", b"  \n\t ", b"bad \xff\xfe bytes", b"dup of a",
                       "caf\u00e9 \u2013 last".encode()], pa.binary()),
        link=["u1", None, None, None, None, "u6"])
    cfg = parse_config({"name": "t", **NO_ORACLE, "ingest": {
        "source": "parquet", "docs_per_shard": 2,
        "parquet": {"paths": [str(data)], "id_column": "id", "url_column": "link"}}})
    with caplog.at_level(logging.WARNING, logger="corpora.ingest"):
        result = run_ingest(cfg, tmp_path / "run")
    assert result["counters"] == {"empty_doc": 2, "invalid_utf8": 1, "duplicate_id": 1,
                                  "short_doc": 0}
    assert result["rows"]["documents"] == 2 and result["rows"]["shards"] == 1
    assert not (tmp_path / "run" / "gold").exists() and not (tmp_path / "run" / "recall").exists()
    rows = documents(tmp_path / "run")
    assert [(r[0], r[4], r[6]) for r in rows] == [("a", "u1", "First document."),
                                                   ("e", "u6", "caf\u00e9 \u2013 last")]
    assert rows[1][5] == len("caf\u00e9 \u2013 last")
    skipped = [r.getMessage() for r in caplog.records]
    assert sum("'d'" in m and "invalid_utf8" in m for m in skipped) == 1
    assert sum("empty_doc" in m for m in skipped) == 2


def test_lone_surrogates_count_as_invalid_utf8():
    counters = Counter()
    records = [Document("x", "ok text", "parquet"), Document("y", "bad \udc80 text", "parquet"),
               Document("z", "more", "parquet")]
    assert [r.doc_id for r in clean_documents(records, counters)] == ["x", "z"]
    assert counters == {"invalid_utf8": 1}


def test_documents_shorter_than_min_chars_are_counted_as_short_doc_not_logged_each(caplog):
    counters = Counter()
    records = [Document("a", "x" * 99, "parquet"), Document("b", "y" * 100, "parquet"),
               Document("c", "", "parquet"), Document("d", "z" * 5, "parquet")]
    with caplog.at_level(logging.WARNING, logger="corpora.ingest"):
        kept = [r.doc_id for r in clean_documents(records, counters, min_chars=100)]
    assert kept == ["b"]
    assert counters == {"short_doc": 2, "empty_doc": 1}  # empty wins over short
    assert [m for m in caplog.messages if "short_doc" in m] == []


def test_a_source_with_no_valid_document_fails_with_one_line(tmp_path):
    data = _write_parquet(tmp_path / "empty.parquet", text=["", "   "])
    cfg = parse_config({"name": "t", **NO_ORACLE, "ingest": {
        "source": "parquet", "parquet": {"paths": [str(data)]}}})
    with pytest.raises(CorpusError, match="no documents left.*'empty_doc': 2"):
        run_ingest(cfg, tmp_path / "run")


def test_redocred_ingest_keeps_gold_and_writes_no_recall_shards(tmp_path):
    cfg = parse_config({"name": "t", "ingest": {"source": "redocred", "docs_per_shard": 2, "redocred": {
        "path": str(FIXTURES / "redocred_dev_sample.json"),
        "rel_info": str(FIXTURES / "docred_rel_info.json"), "limit": 5}}})
    result = run_ingest(cfg, tmp_path)
    assert result["rows"]["documents"] == 5 and result["rows"]["shards"] == 3
    assert result["rows"]["recalls"] == 0 and not (tmp_path / "recall").exists()
    rows = documents(tmp_path)
    assert {r[0]: r[1] for r in rows} == {  # doc_id -> shard, in the file's order
        "redocred-ellerbusch-site": 0, "redocred-anthony-steel-actor": 0,
        "redocred-ramada-shelter": 1, "redocred-mociny-metro-station": 1,
        "redocred-energy-and-environmental-security-initiative": 2}
    texts = {r[0]: r[6] for r in rows}
    gold = pa.concat_tables(pq.read_table(p) for p in list_shards(tmp_path, "gold")).to_pylist()
    assert len(gold) == result["rows"]["gold_triplets"] == 12 + 8 + 7 + 19 + 6  # one per label
    for t in gold:
        span = texts[t["doc_id"]][t["char_start"]:t["char_end"]]
        assert t["subject"] in span and t["object"] in span and t["extractor"] == "oracle"
        assert not t["relation"].startswith("P")  # names from rel_info
    steel = [(t["subject"], t["relation"], t["object"]) for t in gold
             if t["doc_id"] == "redocred-anthony-steel-actor"]
    assert steel[:3] == [("Anita Ekberg", "spouse", "Anthony Maitland Steel"),
                         ("The Wooden Horse", "publication date", "1950"),
                         ("The Wooden Horse", "cast member", "Anthony Maitland Steel")]


def test_leftover_temp_file_is_removed_and_a_cut_off_shard_is_rewritten(tmp_path):
    cfg = synthetic_cfg()
    run_ingest(cfg, tmp_path)
    reference = {kind: [pq.read_table(p).to_pylist() for p in list_shards(tmp_path, kind)]
                 for kind in ("docs", "gold", "recall")}
    before = mtimes(tmp_path)
    leftover = tmp_path / "docs" / ".shard_00001.parquet.tmp-99999"
    leftover.write_bytes(b"PAR1 half a shard")
    cut = shard_path(tmp_path, "docs", 2)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a docs shard cut off mid-write
    gold_cut = shard_path(tmp_path, "gold", 3)
    gold_cut.write_bytes(gold_cut.read_bytes()[:100])
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(cut)

    result = run_ingest(cfg, tmp_path)
    assert not leftover.exists() and result["rows"]["documents"] == 30
    after = mtimes(tmp_path)
    rewritten = {p for p in after if after[p] != before[p]}
    assert rewritten == {str(shard_path(tmp_path, k, i)) for k in ("docs", "gold", "recall")
                         for i in (2, 3)}
    assert {kind: [pq.read_table(p).to_pylist() for p in list_shards(tmp_path, kind)]
            for kind in ("docs", "gold", "recall")} == reference


_KILLABLE = """
import sys
from pathlib import Path
from configs.schema import parse_config
from corpora.ingest import run_ingest
cfg = parse_config({"name": "t", "ingest": {"source": "synthetic", "docs_per_shard": 20,
                    "synthetic": {"num_docs": 2000, "min_distance": 30, "max_distance": 60}}})
run_ingest(cfg, Path(sys.argv[1]))
"""


def test_sigkill_during_ingest_then_rerun_gives_the_uninterrupted_result(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(killed)], cwd=repo)
    first = shard_path(killed, "docs", 0)
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= len(list_shards(killed, "docs")) < 100  # cut off part way
    for run in (killed, clean):
        subprocess.run([sys.executable, "-c", _KILLABLE, str(run)], cwd=repo, check=True)
    resumed, uninterrupted = documents(killed), documents(clean)
    assert len(resumed) == 2000 and len({r[0] for r in resumed}) == 2000
    assert resumed == uninterrupted
    for kind in ("gold", "recall"):
        assert [pq.read_table(p).to_pylist() for p in list_shards(killed, kind)] == \
            [pq.read_table(p).to_pylist() for p in list_shards(clean, kind)]


# ---------------------------------------------------------------- bad sources, full disks, provenance

def _parquet_cfg(path, **parquet):
    return parse_config({"name": "t", **NO_ORACLE, "ingest": {
        "source": "parquet", "parquet": {"paths": [str(path)], **parquet}}})


@pytest.mark.parametrize("column, kind", [
    (pa.array([1, 2, 3], pa.int64()), "int64"),
    (pa.array([["a"], ["b"], []], pa.list_(pa.string())), "list<element: string>"),
])
def test_a_text_column_that_is_not_text_names_file_and_column(tmp_path, column, kind):
    data = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": column}), data)
    with pytest.raises(CorpusError) as err:
        run_ingest(_parquet_cfg(data), tmp_path / "run")
    assert str(err.value) == (f"{data}: column 'text' is {kind}, not text "
                              "(ingest.parquet.text_column)")
    assert not (tmp_path / "run" / "docs").exists()


def test_garbage_and_cut_off_corpus_files_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not a parquet file at all " * 20)
    with pytest.raises(CorpusError, match=rf"^{re.escape(str(garbage))}: not a readable parquet file"):
        run_ingest(_parquet_cfg(garbage), tmp_path / "run")
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"text": [f"document number {i} " * 50 for i in range(3000)]}), whole,
                   row_group_size=500)
    cut = tmp_path / "cut.parquet"
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 3] + data[-(len(data) // 10):])  # footer kept, pages lost
    with pytest.raises(CorpusError, match=rf"^{re.escape(str(cut))}: "):
        run_ingest(_parquet_cfg(cut), tmp_path / "run2")
    assert not list((tmp_path / "run2").glob("docs/shard_*.parquet"))


def test_overwriting_a_corpus_at_the_same_path_changes_ingests_key(tmp_path, monkeypatch):
    from tasks.stage import cache_key, plan_stages
    data = _write_parquet(tmp_path / "corpus.parquet", text=["one document", "another one"])
    monkeypatch.chdir(tmp_path)
    cfg = _parquet_cfg("corpus.parquet")
    assert cfg.ingest.section("parquet").paths == [str(data)]  # resolved: absolute
    ingest = plan_stages(cfg)[0]
    before = cache_key(cfg, ingest, {})
    assert cache_key(_parquet_cfg("corpus.parquet"), ingest, {}) == before
    _write_parquet(data, text=["one document", "another one, edited"])
    assert cache_key(_parquet_cfg("corpus.parquet"), ingest, {}) != before


def test_a_full_disk_is_one_line_naming_the_folder_and_nothing_is_half_written(tmp_path):
    """A 256 KiB tmpfs (its own mount namespace, so nothing outside the test sees it)."""
    if shutil.which("unshare") is None:
        pytest.fail("the full-disk test needs util-linux's unshare")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "full", "ingest": {"docs_per_shard": 50, "synthetic": {
            "num_docs": 400, "min_distance": 20, "max_distance": 40}}}))
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=256k tmpfs {disk} && cd {Path(__file__).resolve().parents[2]}"
              f" && {sys.executable} -m corpora.ingest --config {config} --run {disk}/run; "
              f"echo rc=$?; ls -a {disk}/run/docs")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          timeout=300)
    err = proc.stderr.strip().splitlines()
    assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
    assert err[-1].startswith(f"error: no space left on {disk}/run/"), err[-3:]
    listed = proc.stdout.split()
    assert not [n for n in listed if ".tmp-" in n], listed  # no temporary file left behind
