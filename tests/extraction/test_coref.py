"""Rule coreference (pronoun -> most recent compatible name) and the neural resolver's fallback."""
import logging

import pytest

from extraction.coref import CorefConfig
from extraction.coref import RuleCoref, make_resolver


@pytest.fixture(scope="module")
def nlp(spacy_backend):
    return spacy_backend.nlp


def resolve(nlp, text):
    doc = nlp(text)
    return [(doc[i].text, name) for i, name in sorted(RuleCoref().resolve(doc).items())]


def test_person_pronoun_takes_the_most_recent_person_not_a_place(nlp):
    got = resolve(nlp, "Shoucaim Vocem was born in Jestoune. She lived in Drepaind.")
    assert got == [("She", "Shoucaim Vocem")]


def test_most_recent_person_even_as_an_object(nlp):
    # the synthetic corpus's rule: a pronoun refers to the person named last
    got = resolve(nlp, "Kai Brollu knows Mara Quell. She became a chemist.")
    assert got == [("She", "Mara Quell")]


def test_gender_learned_from_an_earlier_pronoun(nlp):
    got = resolve(nlp, "Anna Berg met Tom Bell. He was tired. Later Anna Berg called Tom Bell. "
                       "She laughed.")
    assert got == [("He", "Tom Bell"), ("She", "Anna Berg")]  # "she" skips Tom Bell (he)


def test_titles_give_gender(nlp):
    got = resolve(nlp, "Mrs. Clara Holt hired Mr. Ivo Stan. She paid him well.")
    assert got == [("She", "Clara Holt"), ("him", "Ivo Stan")]


def test_it_takes_the_most_recent_non_person(nlp):
    got = resolve(nlp, "Mara Quell works at Tessaly Labs. It is based in Orvane.")
    assert got == [("It", "Tessaly Labs")]


def test_short_mention_resolves_to_the_full_name(nlp):
    got = resolve(nlp, "Marie Curie was born in Warsaw. Curie moved to Paris. She was a chemist.")
    assert got == [("She", "Marie Curie")]


def test_no_antecedent_no_resolution(nlp):
    assert resolve(nlp, "It rained. He left. Nobody said much.") == []


def test_resolver_choice_and_neural_fallback(tmp_path, caplog):
    assert make_resolver(CorefConfig(resolver="none")) is None
    assert isinstance(make_resolver(CorefConfig(resolver="rules")), RuleCoref)
    with caplog.at_level(logging.WARNING, logger="extraction.coref"):
        missing = make_resolver(CorefConfig(resolver="neural", neural_model_path=tmp_path / "nope"))
    assert isinstance(missing, RuleCoref)
    assert len(caplog.records) == 1 and "not found" in caplog.records[0].getMessage()
    caplog.clear()
    import importlib.util
    if importlib.util.find_spec("fastcoref") is None:  # the package is an optional extra
        with caplog.at_level(logging.WARNING, logger="extraction.coref"):
            fallback = make_resolver(CorefConfig(resolver="neural", neural_model_path=tmp_path))
        assert isinstance(fallback, RuleCoref)
        assert len(caplog.records) == 1 and "fastcoref" in caplog.records[0].getMessage()
