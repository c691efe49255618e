"""Extraction scoring: matching rules, data-set loaders and the CLI's output contract."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corpora.conll04 import entity_spans, load_conll04
from warehouse.contracts import Document, Triplet
from extraction.score import Dataset, load_dataset, score

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
KEYS = {"strict_p", "strict_r", "strict_f1", "relaxed_p", "relaxed_r", "relaxed_f1", "tokens_per_s"}


def t(s, r, o, negated=False, span=(0, 10), doc="d"):
    return Triplet(doc, s, r, o, negated, span[0], span[1], None, "x")


def test_strict_needs_the_relation_relaxed_does_not():
    gold = [t("Marie Curie", "lives in", "Paris"), t("Marie Curie", "is a", "chemist")]
    data = Dataset("toy", [Document("d", "...", gold=gold)], per_sentence=True)
    pred = [t("the Marie Curie", "moved to", "Paris"),  # normalization + synonym: strict match
            t("Marie Curie", "studied", "chemist"),  # wrong relation: relaxed only
            t("Curie", "is a", "chemist")]  # no head-word leniency: no match at all
    r = score(pred, data)
    assert (r["strict_matched"], r["relaxed_matched"]) == (1, 2)
    assert r["strict_p"] == pytest.approx(1 / 3) and r["strict_r"] == pytest.approx(1 / 2)
    assert r["relaxed_r"] == pytest.approx(1.0)


def test_polarity_and_sentence_must_match_for_sentence_level_gold():
    gold = [t("A", "knows", "B", span=(0, 10))]
    data = Dataset("toy", [Document("d", "...", gold=gold)], per_sentence=True)
    assert score([t("A", "knows", "B", negated=True)], data)["strict_matched"] == 0
    assert score([t("A", "knows", "B", span=(20, 30))], data)["strict_matched"] == 0
    assert score([t("A", "knew", "B", span=(5, 12))], data)["strict_matched"] == 1
    # a repeat in the same sentence counts once
    assert score([t("A", "knows", "B")] * 2, data)["predicted"] == 1


def test_document_level_gold_uses_alias_lists():
    gold = [t("Willi Schneider", "P27", "Germany")]
    data = Dataset("toy", [Document("d", "...", gold=gold)], per_sentence=False,
                   aliases={"d": {"willi schneider": "e0", "schneider": "e0", "germany": "e1"}})
    r = score([t("Schneider", "was born in", "Germany", span=(50, 60))], data)
    assert (r["strict_matched"], r["relaxed_matched"]) == (0, 1)


def test_conll04_loader_maps_entities_onto_the_text():
    assert entity_spans(["B-Peop", "I-Peop", "L-Peop", "O", "U-Loc"]) == [(0, 3), (4, 5)]
    docs = load_conll04(DATA / "conll04_dev.json")
    assert len(docs) == 231
    for doc in docs:
        for g in doc.gold:
            assert g.subject in doc.text and g.object in doc.text
    first = docs[0]
    assert first.text.startswith("John Wilkes Booth, who assassinated")
    assert [(g.subject, g.relation, g.object) for g in first.gold] == [
        ("John Wilkes Booth", "Kill", "President Lincoln")]


def test_redocred_gold_entities_resolve_through_aliases():
    data = load_dataset("redocred", None, 3)
    assert len(data.docs) == 3 and not data.per_sentence
    for doc in data.docs:
        aliases = data.aliases[doc.doc_id]
        from extraction.normalize import normalize_entity
        assert all(normalize_entity(g.subject) in aliases for g in doc.gold)


def run_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "extraction.score", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_json_last_line_oracle_is_perfect():
    out = run_cli("--backend", "oracle", "--dataset", "conll04", "--limit", "30", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert result["strict_f1"] == 1.0 and result["relaxed_f1"] == 1.0 and result["docs"] == 30
    assert "strict" in out.stdout and "relaxed" in out.stdout  # the table comes first


def test_cli_spacy_on_synthetic(tmp_path):
    out = run_cli("--backend", "spacy", "--dataset", "synthetic", "--limit", "5", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["strict_f1"] >= 0.9 and result["tokens_per_s"] > 0
    assert result["docs_with_triplets"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--dataset", "conll04", "--path", "no/such/file.json"], "file not found"),
    (["--dataset", "synthetic", "--path", "x.json"], "--path is for"),
])
def test_cli_bad_path_is_one_line_and_exit_2(args, message):
    out = run_cli("--backend", "oracle", *args)
    assert out.returncode == 2
    assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr


def test_cli_malformed_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"tokens": ')
    out = run_cli("--backend", "oracle", "--dataset", "conll04", "--path", str(bad))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "cannot read CoNLL04 JSON" in out.stderr


def test_cli_missing_optional_backend_is_one_line_and_exit_2():
    import importlib.util
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here; this checks the message where it is not")
    out = run_cli("--backend", "vllm", "--dataset", "conll04", "--limit", "2")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "pip install" in out.stderr
