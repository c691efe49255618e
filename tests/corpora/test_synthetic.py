"""The synthetic fact-story generator: determinism, exact gold spans, recalls, updates, negations."""
import re

import pytest

from corpora.synthetic import SyntheticSource
from corpora.synthetic import (FUNCTIONAL_RELATIONS, RELATIONS, generate_document,
                               generate_documents, name_pool, pool_words, value_pool)
from corpora.synthetic_templates import PRONOUNS

CFG = SyntheticSource(num_docs=60, min_distance=40, max_distance=90)


@pytest.fixture(scope="module")
def docs():
    return list(generate_documents(CFG, seed=7))


def _key(doc):
    return (doc.doc_id, doc.text, doc.gold, doc.recalls)


def test_same_seed_same_corpus_and_doc_i_independent_of_corpus_size(docs):
    again = list(generate_documents(CFG, seed=7))
    assert [_key(d) for d in again] == [_key(d) for d in docs]
    fewer = list(generate_documents(CFG.model_copy(update={"num_docs": 5}), seed=7))
    assert [_key(d) for d in fewer] == [_key(d) for d in docs[:5]]
    other = list(generate_documents(CFG.model_copy(update={"num_docs": 5}), seed=8))
    assert [d.text for d in other] != [d.text for d in docs[:5]]
    assert [d.doc_id for d in docs] == [f"syn-{i:06d}" for i in range(60)]


def test_no_empty_docs_and_every_main_fact_is_recalled(docs):
    for doc in docs:
        assert doc.text.strip() and doc.gold
        # entities_per_doc main people x facts_per_entity facts, each recalled once
        assert len(doc.recalls) <= CFG.entities_per_doc * CFG.facts_per_entity
    total = sum(len(d.recalls) for d in docs)
    assert total >= 0.97 * len(docs) * CFG.entities_per_doc * CFG.facts_per_entity


def test_gold_sentence_spans_state_their_triplet(docs):
    pronouns = {p.capitalize() for p in PRONOUNS.values()} | set(PRONOUNS.values())
    for doc in docs:
        prev_end = -1
        for t in doc.gold:
            sentence = doc.text[t.char_start:t.char_end]
            assert t.char_start >= prev_end and sentence.endswith("."), sentence
            prev_end = t.char_end
            assert t.relation in RELATIONS and t.extractor == "oracle" and t.doc_id == doc.doc_id
            assert t.object in sentence
            words = set(re.findall(r"\w+", sentence))
            assert t.subject in sentence or words & pronouns, sentence
            assert (" not " in sentence or " never " in sentence) == t.negated, sentence


def test_gold_is_complete_no_name_outside_a_gold_sentence(docs):
    pool = value_pool(CFG.value_pool_size, 7)
    for doc in docs:
        names = {t.subject for t in doc.gold} | {t.object for t in doc.gold if t.relation != "is a"}
        filler = list(doc.text)
        for t in doc.gold:
            filler[t.char_start:t.char_end] = " " * (t.char_end - t.char_start)
        filler = "".join(filler)
        for name in names | set(pool.orgs) | set(pool.places):
            assert name not in filler, (doc.doc_id, name)
        # filler sentences never start with a pronoun (no hidden subject)
        assert not re.search(r"\b(She|He)\b", filler)


def test_recall_spans_point_at_the_value_at_the_end_of_a_restating_sentence(docs):
    for doc in docs:
        gold_ends = {t.char_end: t for t in doc.gold}
        for r in doc.recalls:
            assert doc.text[r.char_start:r.char_end] == r.value
            assert doc.text[r.char_end] == "."  # the value ends the sentence
            stated = gold_ends[r.stated_char_end]
            assert (stated.subject, stated.relation, stated.object, stated.negated) == \
                (r.subject, r.relation, r.value, False)
            recall_sentence = gold_ends[r.char_end + 1]
            assert (recall_sentence.subject, recall_sentence.object) == (r.subject, r.value)
            assert r.subject in doc.text[recall_sentence.char_start:r.char_start]


def test_distance_is_the_word_count_and_within_the_configured_range(docs):
    for doc in docs:
        for r in doc.recalls:
            assert r.distance_words == len(doc.text[r.stated_char_end:r.char_start].split())
            assert CFG.min_distance <= r.distance_words <= CFG.max_distance


@pytest.mark.parametrize("lo,hi", [(0, 30), (100, 200), (300, 320)])
def test_distance_ranges_are_respected(lo, hi):
    cfg = SyntheticSource(num_docs=15, min_distance=lo, max_distance=hi)
    recalls = [r for d in generate_documents(cfg, 0) for r in d.recalls]
    assert len(recalls) >= 0.8 * 15 * cfg.entities_per_doc * cfg.facts_per_entity
    assert all(lo <= r.distance_words <= hi for r in recalls)


def test_updates_make_the_recall_ask_for_the_new_value():
    cfg = SyntheticSource(num_docs=30, update_prob=1.0, min_distance=30, max_distance=60)
    updated = 0
    for doc in generate_documents(cfg, 3):
        for r in doc.recalls:
            before = [t for t in doc.gold if t.char_end <= r.char_start and not t.negated
                      and (t.subject, t.relation) == (r.subject, r.relation)]
            assert before[-1].object == r.value  # the newest value stated before the recall
            if len({t.object for t in before}) > 1:
                updated += 1
                assert r.relation in FUNCTIONAL_RELATIONS
                assert before[0].object != r.value
    assert updated >= 30  # update_prob=1: every updatable recalled fact changed


def test_negations_and_pronouns_and_distractors_occur(docs):
    negated = [t for d in docs for t in d.gold if t.negated]
    assert len(negated) >= 0.5 * len(docs) * CFG.negation_prob * (
        CFG.entities_per_doc + CFG.distractors_per_doc)
    for doc in docs:
        recalled = {(r.subject, r.relation, r.value) for r in doc.recalls}
        assert not recalled & {(t.subject, t.relation, t.object) for t in doc.gold if t.negated}
        people = {t.subject for t in doc.gold if t.relation != "based in"}
        assert len(people) >= CFG.entities_per_doc + CFG.distractors_per_doc
        assert len({r.subject for r in doc.recalls}) <= CFG.entities_per_doc
    pronoun_sentences = 0
    for doc in docs:
        for prev, t in zip(doc.gold, doc.gold[1:]):
            sentence = doc.text[t.char_start:t.char_end]
            if sentence.split()[0] in ("She", "He"):
                pronoun_sentences += 1
                # the pronoun refers to the person named last, in the sentence just before
                assert doc.text[prev.char_end:t.char_start].strip() == ""
                last_named = prev.object if prev.relation == "knows" else prev.subject
                assert last_named == t.subject
    assert pronoun_sentences >= 20


def test_values_come_from_the_shared_pool_and_names_are_fresh():
    cfg = SyntheticSource(num_docs=2, value_pool_size=20)
    pool = value_pool(20, 0)
    assert len(set(pool.orgs)) + len(set(pool.places)) == 20
    for i in range(2):
        doc = generate_document(cfg, pool, 0, i)
        for t in doc.gold:
            kind = RELATIONS[t.relation][1]
            if kind == "org":
                assert t.object in pool.orgs
            elif kind == "place":
                assert t.object in pool.places
        assert not {t.subject for t in doc.gold if t.relation != "based in"} & set(pool.orgs)


def test_a_name_pool_draws_people_from_shared_first_and_last_names():
    cfg = SyntheticSource(num_docs=30, entities_per_doc=4, distractors_per_doc=1, name_pool_size=12)
    docs = list(generate_documents(cfg, seed=3))
    pool = value_pool(cfg.value_pool_size, 3)
    names = name_pool(12, 3, pool_words(pool))
    assert len(set(names.firsts) | set(names.lasts)) == 24  # disjoint, no repeats
    assert not (set(names.firsts) | set(names.lasts)) & pool_words(pool)
    seen_firsts = set()
    for doc in docs:
        people = {t.subject for t in doc.gold if t.subject not in pool.orgs}
        assert len(people) == 5
        firsts = [p.split()[0] for p in people]
        lasts = [p.split()[1] for p in people]
        assert set(firsts) <= set(names.firsts) and set(lasts) <= set(names.lasts)
        assert len(set(firsts)) == len(set(lasts)) == 5  # nobody in a story shares a name
        seen_firsts |= set(firsts)
    assert len(seen_firsts) == 12  # 150 people over 30 stories reuse the pool
    # without a pool, names are fresh: the same documents' people differ
    fresh = list(generate_documents(cfg.model_copy(update={"name_pool_size": 0}), seed=3))
    assert fresh[0].text != docs[0].text


def test_a_name_pool_smaller_than_a_story_is_refused():
    with pytest.raises(ValueError, match="name_pool_size"):
        SyntheticSource(entities_per_doc=4, distractors_per_doc=2, name_pool_size=5)
