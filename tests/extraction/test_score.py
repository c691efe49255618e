"""Extraction scoring: matching rules, data-set loaders and the CLI's output contract."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import extraction.score
from corpora.conll04 import entity_spans, load_conll04
from extraction.normalize import normalize_entity
from extraction.score import Dataset, load_dataset, main, score
from warehouse.contracts import Document, Triplet

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
CONLL04 = FIXTURES / "conll04_sample.json"
REDOCRED = FIXTURES / "redocred_dev_sample.json"
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
    docs = load_conll04(CONLL04)
    assert [d.doc_id for d in docs] == [f"conll04-{90001 + i}" for i in range(10)]
    for doc in docs:
        for g in doc.gold:
            assert g.subject in doc.text and g.object in doc.text
            assert (g.char_start, g.char_end) == (0, len(doc.text))  # the whole sentence
    first = docs[0]
    assert first.text == "Marta Lindqvist, who shot Governor Abel Hartmann, was arrested in Duluth."
    assert [(g.subject, g.relation, g.object) for g in first.gold] == [
        ("Marta Lindqvist", "Kill", "Abel Hartmann")]
    # punctuation, a hyphen split into tokens, "n't", quotes; relations index entities in tag order
    assert [(d.text, [(g.subject, g.relation, g.object) for g in d.gold]) for d in docs[2:10:3]] == [
        ("The Kestrel Bank Group (KBG), based in Lisbon, opened a branch in Porto last year.",
         [("Kestrel Bank Group", "OrgBased_In", "Lisbon"), ("KBG", "OrgBased_In", "Lisbon")]),
        ('The mayor of Aldport, Ruth Okafor, called the flood "a warning" on Monday.',
         [("Ruth Okafor", "Live_In", "Aldport")]),
        ('The Meridian Theatre Company of Halifax will stage "The Salt Road" in May.',
         [("Meridian Theatre Company", "OrgBased_In", "Halifax")])]
    assert docs[6].gold[0].subject == "Jonas Berg-Halvorsen"
    assert docs[9].text.startswith("Officials at Brightwater Utilities, a firm in Leeds, didn't")
    assert [(g.subject, g.relation, g.object) for g in docs[9].gold][1] == (
        "Amir Haddad", "Work_For", "Brightwater Utilities")
    assert {g.relation for d in docs for g in d.gold} == {
        "Work_For", "Kill", "OrgBased_In", "Live_In", "Located_In"}
    assert len(load_conll04(CONLL04, limit=3)) == 3


def test_redocred_gold_entities_resolve_through_aliases():
    data = load_dataset("redocred", REDOCRED, 3)
    assert [d.doc_id for d in data.docs] == [
        "redocred-ellerbusch-site", "redocred-anthony-steel-actor", "redocred-ramada-shelter"]
    assert not data.per_sentence and [len(d.gold) for d in data.docs] == [12, 8, 7]
    for doc in data.docs:
        aliases = data.aliases[doc.doc_id]
        assert all(normalize_entity(g.subject) in aliases for g in doc.gold)
        assert all(normalize_entity(g.object) in aliases for g in doc.gold)
    steel = data.aliases["redocred-anthony-steel-actor"]
    assert steel["steel"] == steel["anthony maitland steel"]  # a later mention, one entity
    # names from the docred_rel_info.json beside the data file
    assert (data.docs[1].gold[0].subject, data.docs[1].gold[0].relation,
            data.docs[1].gold[0].object) == ("Anita Ekberg", "spouse", "Anthony Maitland Steel")
    # the alias "Steel" names the gold entity; the reversed triplet matches nothing
    pred = [t("The Wooden Horse", "cast member", "Steel", doc="redocred-anthony-steel-actor"),
            t("Steel", "cast member", "The Wooden Horse", doc="redocred-anthony-steel-actor")]
    r = score(pred, data)
    assert (r["strict_matched"], r["relaxed_matched"], r["predicted"], r["gold"]) == (1, 1, 2, 27)


def test_redocred_without_relation_names_beside_it_keeps_the_ids(tmp_path):
    alone = tmp_path / "redocred.json"
    alone.write_bytes(REDOCRED.read_bytes())
    data = load_dataset("redocred", alone, 2)
    assert data.docs[1].gold[0].relation == "P26"


@pytest.mark.benchmark_data
def test_full_conll04_dev_file(benchmark_file):
    docs = load_conll04(benchmark_file("conll04_dev.json"))
    assert len(docs) == 231
    for doc in docs:
        for g in doc.gold:
            assert g.subject in doc.text and g.object in doc.text
    assert docs[0].text.startswith("John Wilkes Booth, who assassinated")
    assert [(g.subject, g.relation, g.object) for g in docs[0].gold] == [
        ("John Wilkes Booth", "Kill", "President Lincoln")]


@pytest.mark.benchmark_data
def test_full_redocred_dev_file(benchmark_file):
    path = benchmark_file("redocred_dev.json")
    data = load_dataset("redocred", path, None)
    assert len(data.docs) == 500
    for doc in data.docs:
        aliases = data.aliases[doc.doc_id]
        assert all(normalize_entity(g.subject) in aliases for g in doc.gold)
    if path.with_name("docred_rel_info.json").is_file():  # every relation id has its name
        assert not any(g.relation[0] == "P" and g.relation[1:].isdigit()
                       for d in data.docs for g in d.gold)


def run_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "extraction.score", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("dataset, path, limit, gold", [
    ("conll04", CONLL04, 8, 11), ("redocred", REDOCRED, 5, 52)])
def test_cli_json_last_line_oracle_is_perfect(dataset, path, limit, gold):
    out = run_cli("--backend", "oracle", "--dataset", dataset, "--path", str(path),
                  "--limit", str(limit), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert result["strict_f1"] == 1.0 and result["relaxed_f1"] == 1.0
    assert (result["docs"], result["gold"]) == (limit, gold)
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


@pytest.mark.parametrize("dataset", ["conll04", "redocred"])
def test_missing_default_file_names_the_fetch_command(dataset, tmp_path, monkeypatch, capsys):
    absent = tmp_path / "data" / f"{dataset}_dev.json"  # as on a fresh clone: data/ not fetched
    monkeypatch.setitem(extraction.score.DEFAULT_PATHS, dataset, absent)
    assert main(["--backend", "oracle", "--dataset", dataset]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"extraction.score: {absent}: file not found (`python -m corpora.fetch {dataset}` "
        f"downloads it into data/; or pass --path to a {dataset} JSON file)\n")


def test_default_paths_are_the_fetch_destinations():
    from corpora.fetch import DATA_DIR, SOURCES
    assert DATA_DIR == REPO / "data"
    for dataset, path in extraction.score.DEFAULT_PATHS.items():
        assert path.parent == DATA_DIR and path.name == SOURCES[dataset].files[0].name


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
    out = run_cli("--backend", "vllm", "--dataset", "conll04", "--path", str(CONLL04), "--limit", "2")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "pip install" in out.stderr
