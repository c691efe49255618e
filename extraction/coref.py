"""Coreference before extraction: which name does each pronoun stand for?

A resolver takes a parsed spaCy `Doc` and returns `{token index: resolved surface string}` for the
pronouns it resolved; the spaCy backend puts that string where the pronoun was.

- `RuleCoref` (default, `extract.coref.resolver: rules`): a pronoun refers to the most recent
  compatible mention in the document. he/she/him/her/his/hers -> the most recent person-like
  name whose gender is compatible (unknown, or learned from an earlier pronoun or a title such as
  "Mrs."); it/its -> the most recent non-person name. Plain recency, not subject preference: the
  synthetic corpus refers to whoever was named last ("A knows B. He ..." is B), and on real text
  recency with gender agreement is the usual rule baseline. A shorter mention of an earlier full
  name ("Curie" after "Marie Curie") resolves to the full name.
  Person or not, without NER (the backend leaves it out for speed): a name is a non-person when it
  is the object of a preposition ("in Warsaw", "at Tessaly Labs") or ends in an organisation word
  ("Labs", "University"), and a person otherwise.
- `NeuralCoref` (`resolver: neural`): fastcoref weights from the LOCAL folder
  `extract.coref.neural_model_path`. Nothing is ever downloaded; when the folder or the package is
  missing, `make_resolver` logs one line and falls back to the rules.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from configs.base import Section

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span, Token

log = logging.getLogger(__name__)


class CorefConfig(Section):
    """The `extract.coref` section (used by the spaCy backend)."""
    resolver: Literal["rules", "neural", "none"] = "rules"
    neural_model_path: Path | None = None  # local weights only; never downloaded at run time


PERSON_PRONOUNS = {"he": "male", "him": "male", "his": "male", "himself": "male",
                   "she": "female", "her": "female", "hers": "female", "herself": "female"}
THING_PRONOUNS = {"it", "its", "itself"}
TITLES = {"mr": "male", "mr.": "male", "sir": "male", "mrs": "female", "mrs.": "female",
          "ms": "female", "ms.": "female", "miss": "female", "lady": "female"}
ORG_WORDS = {"labs", "systems", "works", "group", "foundry", "institute", "partners", "industries",
             "studios", "holdings", "company", "press", "clinic", "bank", "inc", "inc.", "ltd",
             "corp", "corporation", "university", "college", "school", "museum", "council",
             "party", "association", "society", "agency", "ministry", "department", "club"}
THING_ROLES = {"pobj"}
# "<word> of <name>" is one name ("Bank of Oslo", "Palace of Fine Arts"), unlike "Michaud of Maine"
INSTITUTION_WORDS = ORG_WORDS | {
    "palace", "city", "republic", "kingdom", "state", "states", "province", "church", "house",
    "court", "office", "board", "bureau", "embassy", "academy", "union", "federation", "league",
    "county", "district", "island", "islands", "gulf", "bay", "lake", "mount", "cape", "arts",
    "sciences", "commission", "committee", "service", "center", "centre", "hospital", "library",
    "research", "mechanics", "technology", "fund", "army", "navy", "force", "assembly"}


class CorefResolver(Protocol):
    def resolve(self, doc: Doc) -> dict[int, str]:
        """{token index of a pronoun: the surface string it refers to}."""
        ...


@dataclass
class _Entity:
    name: str  # the fullest surface form seen
    is_person: bool
    gender: str | None = None


def is_name_word(token: Token) -> bool:
    """A capitalized word that is part of a name. Mid-sentence capitals count whatever their POS
    (the tagger often calls an unknown name an adjective or a verb: "Nunam Live"); the first word
    of a sentence only when it is a proper noun or modifies the next word ("Legal Kroucath")."""
    if not token.text[:1].isupper() or token.is_punct or token.lower_ == "i":
        return False
    if token.is_sent_start or (token.i > 0 and token.nbor(-1).is_punct and token.nbor(-1).text in "\"'“‘("):
        return token.pos_ == "PROPN" or token.dep_ in ("compound", "amod", "flat", "nmod")
    return True


def name_span(token: Token) -> Span:
    """The name around `token`: the run of adjacent capitalized words (plus a proper-noun "of"
    phrase after an institution word: "Bank of Oslo")."""
    doc = token.doc
    sent = token.sent
    start = token.i
    while start > sent.start and is_name_word(doc[start - 1]):
        start -= 1
    end = token.i + 1
    while end < sent.end and is_name_word(doc[end]):
        end += 1
    if end + 1 < sent.end and doc[end].lower_ == "of" and doc[end - 1].lower_ in INSTITUTION_WORDS \
            and start <= doc[end].head.i < end and doc[end + 1].pos_ == "PROPN":
        end = name_span(doc[end + 1]).end
    return doc[start:end]


def _is_person(head: Token, span: Span) -> bool:
    if span[-1].lower_ in ORG_WORDS:
        return False
    role = head.dep_ if head.dep_ != "conj" else head.head.dep_
    return role not in THING_ROLES


class RuleCoref:
    """Pronoun -> most recent compatible name (see the module docstring)."""

    def resolve(self, doc: Doc) -> dict[int, str]:
        entities: dict[str, _Entity] = {}  # key: fullest name
        history: list[_Entity] = []  # mentions in document order (most recent last)
        resolved: dict[int, str] = {}
        covered = 0  # tokens before this index are part of a name already seen
        for token in doc:
            lower = token.lower_
            if token.pos_ == "PRON":
                target = self._antecedent(lower, history)
                if target is not None:
                    resolved[token.i] = target.name
                    if target.is_person and target.gender is None and lower in PERSON_PRONOUNS:
                        target.gender = PERSON_PRONOUNS[lower]  # learned for later pronouns
                    history.append(target)
                continue
            if token.pos_ != "PROPN" or token.i < covered:
                continue  # the rest of a name already seen ("Quell" of "Mara Quell")
            span = name_span(token)
            covered = span.end
            history.append(self._entity(span, _is_person(span.root, span), entities))
        return resolved

    @staticmethod
    def _entity(span: Span, is_person: bool, entities: dict[str, _Entity]) -> _Entity:
        words = [t.text for t in span if t.lower_ not in TITLES]
        name = " ".join(words) or span.text
        gender = next((TITLES[t.lower_] for t in span if t.lower_ in TITLES), None)
        if name in entities:
            return entities[name]
        # "Curie" after "Marie Curie": the same entity, under its full name
        for entity in reversed(list(entities.values())):
            full = entity.name.split(" ")
            if entity.is_person == is_person and len(words) < len(full) \
                    and all(w in full for w in words):
                return entity
        entities[name] = _Entity(name, is_person, gender)
        return entities[name]

    @staticmethod
    def _antecedent(pronoun: str, history: list[_Entity]) -> _Entity | None:
        if pronoun in PERSON_PRONOUNS:
            gender = PERSON_PRONOUNS[pronoun]
            return next((e for e in reversed(history)
                         if e.is_person and e.gender in (None, gender)), None)
        if pronoun in THING_PRONOUNS:
            return next((e for e in reversed(history) if not e.is_person), None)
        return None


class NeuralCoref:
    """fastcoref clusters from a local model folder: every pronoun of a cluster -> the cluster's
    first non-pronoun mention."""

    def __init__(self, model_path: Path):
        from fastcoref import FCoref  # imported here: an optional package
        self.model = FCoref(model_name_or_path=str(model_path), device="cpu")

    def resolve(self, doc: Doc) -> dict[int, str]:
        result = self.model.predict(texts=[doc.text])[0]
        resolved: dict[int, str] = {}
        for cluster in result.get_clusters(as_strings=False):
            spans = [doc.char_span(a, b, alignment_mode="expand") for a, b in cluster]
            spans = [s for s in spans if s is not None]
            name = next((s.text for s in spans if s.root.pos_ != "PRON"), None)
            if name is None:
                continue
            for s in spans:
                if len(s) == 1 and s[0].pos_ == "PRON":
                    resolved[s[0].i] = name
        return resolved


def make_resolver(cfg: CorefConfig) -> CorefResolver | None:
    """The configured resolver; `neural` falls back to rules (one log line) when unavailable."""
    if cfg.resolver == "none":
        return None
    if cfg.resolver == "neural":
        import importlib.util
        path = cfg.neural_model_path
        if path is None or not Path(path).exists():
            log.warning("neural coreference: model folder %s not found; using the rule resolver "
                        "(set extract.coref.neural_model_path to a local fastcoref model)", path)
        elif importlib.util.find_spec("fastcoref") is None:
            log.warning("neural coreference: package fastcoref is not installed "
                        "(pip install fastcoref); using the rule resolver")
        else:
            return NeuralCoref(Path(path))
    return RuleCoref()
