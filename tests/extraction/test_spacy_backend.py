"""The spaCy backend's rules on hand-written sentences, its pipeline, and its synthetic quality."""
import pytest

from corpora.synthetic import SyntheticSource
from warehouse.contracts import Document


def facts(backend, text):
    triplets, errors = backend.extract([Document("d", text)])
    assert errors == []
    return [(t.subject, t.relation, t.object, t.negated) for t in triplets]


@pytest.mark.parametrize("text, expected", [
    # subject - verb - object
    ("Kai Brollu knows Mara Quell.", ("Kai Brollu", "knows", "Mara Quell", False)),
    # prepositional object
    ("Marie Curie was born in Warsaw.", ("Marie Curie", "was born in", "Warsaw", False)),
    ("Alice Smith works at the Bank of Oslo.", ("Alice Smith", "works at", "Bank of Oslo", False)),
    # copula
    ("Tom Bell is a chemist.", ("Tom Bell", "is a", "chemist", False)),
    ("Oslo is the capital of Norway.", ("Oslo", "is the capital of", "Norway", False)),
    # passive with an agent
    ("The book was written by John Smith.", ("book", "was written by", "John Smith", False)),
    # negation: not, never, n't
    ("Tom Bell is not a chemist.", ("Tom Bell", "is a", "chemist", True)),
    ("Kutho Kren never worked at Jailes Press.", ("Kutho Kren", "worked at", "Jailes Press", True)),
    ("Anna Berg doesn't live in Oslo.", ("Anna Berg", "live in", "Oslo", True)),
    # an open complement carries the relation on
    ("Mara Quell started working at Zouvex Holdings.",
     ("Mara Quell", "started working at", "Zouvex Holdings", False)),
    # relative clause: the relative pronoun is the noun it modifies
    ("John Wilkes Booth, who assassinated President Lincoln, was an actor.",
     ("John Wilkes Booth", "assassinated", "President Lincoln", False)),
    # apposition
    ("Tom Bell, a chemist, likes tea.", ("Tom Bell", "is a", "chemist", False)),
    # a name's own prepositional phrase
    ("Diver Brian Michaud of Millinocket hooked the men.",
     ("Diver Brian Michaud", "of", "Millinocket", False)),
])
def test_each_construct(spacy_backend, text, expected):
    assert expected in facts(spacy_backend, text)


def test_conjoined_subjects_and_objects_give_every_pair(spacy_backend):
    got = facts(spacy_backend, "Bob and Carol moved to Paris and Berlin.")
    assert sorted(got) == sorted((s, "moved to", o, False)
                                 for s in ("Bob", "Carol") for o in ("Paris", "Berlin"))


def test_conjoined_verbs_share_the_subject(spacy_backend):
    got = facts(spacy_backend, "Tom Bell lives in Rome and works at Krelol Press.")
    assert ("Tom Bell", "lives in", "Rome", False) in got
    assert ("Tom Bell", "works at", "Krelol Press", False) in got


def test_a_fact_reached_by_two_parse_paths_is_stated_once(spacy_backend):
    # a demo-corpus passage whose parse reaches the last fact twice (a duplicate row before)
    text = ("Years later, Zekraira Wond was still a librarian. Even then, Zekraira Wond lived in "
            "Rekrock. By then, Soushaind Gaikal was still a baker.")
    triplets, _ = spacy_backend.extract([Document("d", text)])
    stated = [(t.subject, t.relation, t.object, t.char_start) for t in triplets]
    assert len(stated) == len(set(stated))
    assert ("Soushaind Gaikal", "was a", "baker") in {s[:3] for s in stated}


def test_pronouns_are_resolved_or_dropped(spacy_backend):
    got = facts(spacy_backend, "Mara Quell works at Tessaly Labs. She lives in Orvane. "
                               "His sister lives in Oslo. It rained. Nobody said much.")
    assert ("Mara Quell", "lives in", "Orvane", False) in got
    assert ("Mara Quell's sister", "lives in", "Oslo", False) not in got  # his != Mara (she)
    # nothing names the subject of "It rained" or "Nobody said much"
    assert all(s not in ("It", "Nobody", "it") for s, *_ in got)


def test_fronted_adverbials_and_filler_yield_nothing(spacy_backend):
    assert facts(spacy_backend, "Of course, the tea went cold. After all, the wind rose.") == []
    got = facts(spacy_backend, "Of course, Tifa Quur was born in Raidrora.")
    assert got == [("Tifa Quur", "was born in", "Raidrora", False)]


def test_spans_are_the_stating_sentence(spacy_backend):
    text = "The wind rose.\n\nMarie Curie was born in Warsaw. She was a chemist."
    triplets, _ = spacy_backend.extract([Document("d", text)])
    spans = {text[t.char_start:t.char_end] for t in triplets}
    assert spans == {"Marie Curie was born in Warsaw.", "She was a chemist."}
    assert {t.extractor for t in triplets} == {"spacy"} and all(t.doc_id == "d" for t in triplets)


def test_pipeline_runs_only_what_the_rules_need(spacy_backend):
    assert "ner" not in spacy_backend.nlp.pipe_names
    assert "lemmatizer" not in spacy_backend.nlp.pipe_names
    assert {"tagger", "parser"} <= set(spacy_backend.nlp.pipe_names)


def test_odd_documents_never_raise_and_too_long_ones_are_errors(spacy_backend):
    docs = [Document("empty", ""), Document("punct", "!!! ... ???"), Document("emoji", "🙂 " * 50),
            Document("long", "x " * (spacy_backend.nlp.max_length // 2 + 1))]
    triplets, errors = spacy_backend.extract(docs)
    assert triplets == []
    assert [e.doc_id for e in errors] == ["long"] and "spaCy's limit" in errors[0].error


def test_missing_model_says_how_to_install():
    from extraction.coref import CorefConfig
    from extraction.spacy_backend import SpacyConfig
    from extraction.spacy_backend import SpacyBackend
    with pytest.raises(RuntimeError, match="not installed"):
        SpacyBackend(SpacyConfig(model="en_no_such_model"), CorefConfig())


def test_strict_f1_on_the_synthetic_corpus(spacy_backend):
    from corpora.synthetic import generate_documents
    from extraction.score import Dataset, score
    docs = [Document(d.doc_id, d.text, gold=d.gold)
            for d in generate_documents(SyntheticSource(num_docs=12), seed=3)]
    triplets, errors = spacy_backend.extract(docs)
    result = score(triplets, Dataset("synthetic", docs, per_sentence=True))
    assert errors == [] and result["strict_f1"] >= 0.9, result
