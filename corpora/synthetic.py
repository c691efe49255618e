"""Synthetic fact stories: the offline default corpus and the controlled test of the idea.

Each document introduces a few invented people (names built from syllables, so no model knows
them), states their attributes early ("Mara Quell works at Tessaly Labs."), then runs through
neutral filler, and later RECALLS each fact of the main people in a sentence that ends with the
value ("Years later, Mara Quell still worked at Tessaly Labs."), so the value's tokens are
predictable only from the earlier statement. Documents also hold updates of functional
attributes ("Mara Quell moved to Orvane.", after which the recall asks for the new value),
negations ("She does not live in Bexley."), distractor people whose facts are never recalled,
pronoun subjects (a pronoun always refers to the person named in the sentence just before it),
and organisations' own facts ("Tessaly Labs is based in Orvane.").

Distance: `distance_words` of a recall is the number of whitespace-separated words between the
end of the sentence that (last) stated the fact and the first character of the recalled value,
a tokenizer-free proxy for tokens. Every recall span lies within [min_distance, max_distance];
in the rare case the scheduler cannot place a recall inside that range (a very narrow range),
the sentence is still written, with its gold triplet, but no recall span is recorded for it.

Values (organisations and places) come from a pool of `value_pool_size` invented names shared by
all documents (so a small BPE learns them). Person names are fresh per document by default
(`name_pool_size: 0`: a small BPE cuts each into 4-6 pieces); with `name_pool_size: N` first and
last names are drawn from two shared pools of N invented words each, as names recur in real text
and a BPE learns each as one token. Within one document no two people share a first or a last
name either way. Within one
document each value is used once while the pool lasts, so a recalled value is not repeated by
another fact. Occupations ("is a") are ordinary words from synthetic_templates.OCCUPATIONS.

Gold triplets are complete: every sentence that states a relation (statements, updates,
negations, recalls, distractor and organisation facts) yields exactly one triplet whose span is
that sentence; filler yields none. Document i depends only on (seed, i, the config): generating
more documents never changes the earlier ones.

    .venv/bin/python -m corpora.synthetic --num-docs 2 --seed 0     # print two stories
"""
from __future__ import annotations

import argparse
import hashlib
import random
from dataclasses import dataclass
from typing import Iterator

from pydantic import Field, model_validator

from configs.base import Section
from corpora import synthetic_templates as tpl
from warehouse.contracts import Document, GoldRecall, Triplet

# relation -> (subject kind, object kind)
RELATIONS: dict[str, tuple[str, str]] = {
    "works at": ("person", "org"),
    "lives in": ("person", "place"),
    "is a": ("person", "occupation"),
    "born in": ("person", "place"),
    "based in": ("org", "place"),
    "knows": ("person", "person"),
}
# single-valued: a newer value replaces an older one ("knows" is the many-valued one)
FUNCTIONAL_RELATIONS: frozenset[str] = frozenset(
    {"works at", "lives in", "is a", "born in", "based in"})
UPDATABLE_RELATIONS: frozenset[str] = frozenset(tpl.UPDATE)
PERSON_ATTRIBUTES: tuple[str, ...] = ("works at", "lives in", "is a", "born in")

KNOWS_PROB = 0.3  # a person also "knows" another person of the story
ORG_FACT_PROB = 0.3  # an employer also gets its own "based in" fact
FILLER_BETWEEN_PEOPLE_PROB = 0.3
PARAGRAPH_BREAK_PROB = 0.12


class SyntheticSource(Section):
    """The `ingest.synthetic` section: fact stories with invented entities."""
    num_docs: int = Field(2000, ge=1, le=10**8)
    entities_per_doc: int = Field(3, ge=1, le=1000)
    distractors_per_doc: int = Field(2, ge=0, le=1000)
    facts_per_entity: int = Field(2, ge=1, le=100)
    # distance in tokens (roughly, whitespace words) between a fact's statement and its recall
    min_distance: int = Field(96, ge=0, le=10**6)
    max_distance: int = Field(256, ge=0, le=10**6)
    update_prob: float = Field(0.2, ge=0, le=1)
    negation_prob: float = Field(0.2, ge=0, le=1)
    pronoun_prob: float = Field(0.3, ge=0, le=1)
    value_pool_size: int = Field(200, ge=2, le=10**6)
    # 0: fresh person names per document; N: first and last names drawn from shared pools of N
    name_pool_size: int = Field(0, ge=0, le=10**6)

    @model_validator(mode="after")
    def _consistent(self) -> "SyntheticSource":
        people = self.entities_per_doc + self.distractors_per_doc
        if 0 < self.name_pool_size < people:
            raise ValueError(f"name_pool_size ({self.name_pool_size}) must be 0 or at least "
                             f"entities_per_doc + distractors_per_doc ({people}): no two people "
                             "of a document share a name")
        if self.min_distance > self.max_distance:
            raise ValueError("min_distance must be <= max_distance")
        if self.max_distance < 8:  # the recall sentence's lead-in ("Even then, Mara Quell was a") counts
            raise ValueError("max_distance must be at least 8 (words before the recalled value count)")
        return self


@dataclass(frozen=True)
class ValuePool:
    orgs: tuple[str, ...]
    places: tuple[str, ...]


@dataclass(frozen=True)
class NamePool:
    firsts: tuple[str, ...]
    lasts: tuple[str, ...]


@dataclass(frozen=True)
class _Person:
    name: str
    gender: str


@dataclass
class _Statement:
    """A sentence waiting in the introduction queue (rendered when it is written)."""
    templates: list[str]
    subject: str
    relation: str
    value: str
    negated: bool = False
    person: _Person | None = None  # set when the subject is a person (pronoun allowed)
    recalled: bool = False  # a main person's fact: schedule its update/recall


@dataclass
class _Pending:
    """A later sentence about a stated fact: its recall, or an update before the recall."""
    subject: str
    relation: str
    value: str
    sentence: str  # pre-rendered, so its length is known to the scheduler
    value_offset: int  # char offset of the value in `sentence`
    lead_words: int  # words before the value (they count towards the distance)
    anchor_words: int  # words written when the stating sentence ended
    stated_char_end: int
    target: int  # falls due at this distance
    is_update: bool = False


def derived_seed(*parts: object) -> int:
    """A 64-bit seed from any parts (stable across processes, unlike hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def invented_word(rng: random.Random, syllables: int) -> str:
    word = "".join(rng.choice(tpl.ONSETS) + rng.choice(tpl.NUCLEI) for _ in range(syllables))
    return (word + rng.choice(tpl.CODAS)).capitalize()


def unseen_word(rng: random.Random, syllables: int, seen: set[str]) -> str:
    """An invented word of at least 4 letters not in `seen` (added to it)."""
    while True:
        word = invented_word(rng, syllables)
        if word not in seen and len(word) >= 4:
            seen.add(word)
            return word


def value_pool(size: int, seed: int) -> ValuePool:
    """`size` invented names, half organisations ("Tessaly Labs"), half places ("Orvane")."""
    rng = random.Random(derived_seed("synthetic-pool", seed, size))
    seen: set[str] = set()
    n_orgs = size // 2
    orgs = tuple(f"{unseen_word(rng, 2, seen)} {rng.choice(tpl.ORG_SUFFIXES)}" for _ in range(n_orgs))
    places = tuple(unseen_word(rng, 2, seen) for _ in range(size - n_orgs))
    return ValuePool(orgs, places)


def name_pool(size: int, seed: int, taken_words: set[str]) -> NamePool:
    """Two pools of `size` invented words (first names, last names), disjoint from each other and
    from `taken_words` (the value pool's words)."""
    rng = random.Random(derived_seed("synthetic-names", seed, size))
    seen = set(taken_words)
    firsts = tuple(unseen_word(rng, 2, seen) for _ in range(size))
    lasts = tuple(unseen_word(rng, rng.choice((1, 2)), seen) for _ in range(size))
    return NamePool(firsts, lasts)


class _Values:
    """Draws values for one document, each at most once while the pool lasts."""

    def __init__(self, rng: random.Random, pool: ValuePool):
        self.rng = rng
        self.by_kind = {"org": pool.orgs, "place": pool.places, "occupation": tuple(tpl.OCCUPATIONS)}
        self.used: set[str] = set()

    def draw(self, kind: str) -> str:
        choices = [v for v in self.by_kind[kind] if v not in self.used] or list(self.by_kind[kind])
        value = self.rng.choice(choices)
        self.used.add(value)
        return value


def _people(rng: random.Random, count: int, taken_words: set[str],
            names: NamePool | None = None) -> list[_Person]:
    """`count` people with distinct first and last names: fresh words, or drawn from `names`."""
    people: list[_Person] = []
    used = set(taken_words)
    while len(people) < count:
        if names is None:
            first, last = invented_word(rng, 2), invented_word(rng, rng.choice((1, 2)))
        else:
            first, last = rng.choice(names.firsts), rng.choice(names.lasts)
        if first in used or last in used or first == last or len(last) < 4:
            continue
        used.update((first, last))
        people.append(_Person(f"{first} {last}", rng.choice(("female", "male"))))
    return people


def _filler(rng: random.Random) -> str:
    clause = rng.choice(tpl.FILLER_CLAUSES)
    roll = rng.random()
    if roll < 0.35:
        clause = f"{rng.choice(tpl.FILLER_OPENERS)}, {clause}"
    elif roll < 0.6:
        clause = f"{clause}{rng.choice(tpl.FILLER_JOINERS)}{rng.choice(tpl.FILLER_CLAUSES)}"
    return clause[0].upper() + clause[1:] + "."


def _render(template: str, subject: str, value: str) -> tuple[str, int]:
    """The sentence and the char offset of the value in it."""
    before, after = template.split("{o}")
    head = before.replace("{s}", subject)
    if head and head[0].islower():
        head = head[0].upper() + head[1:]
    return head + value + after.replace("{s}", subject), len(head)


class _StoryWriter:
    """Writes one document sentence by sentence, keeping the gold in step with the text."""

    def __init__(self, doc_id: str, rng: random.Random, cfg: SyntheticSource, values: _Values):
        self.doc_id, self.rng, self.cfg, self.values = doc_id, rng, cfg, values
        self.parts: list[str] = []
        self.chars = 0
        self.words = 0
        self.gold: list[Triplet] = []
        self.recalls: list[GoldRecall] = []
        self.pending: list[_Pending] = []
        self.last_person: str | None = None  # the person named last in the previous sentence

    # ---------------------------------------------------------------- writing

    def _append(self, sentence: str) -> tuple[int, int]:
        if self.parts:
            sep = "\n\n" if self.rng.random() < PARAGRAPH_BREAK_PROB else " "
            self.parts.append(sep)
            self.chars += len(sep)
        start = self.chars
        self.parts.append(sentence)
        self.chars += len(sentence)
        self.words += len(sentence.split())
        return start, self.chars

    def _fact(self, sentence: str, subject: str, relation: str, value: str,
              negated: bool) -> tuple[int, int]:
        start, end = self._append(sentence)
        self.gold.append(Triplet(self.doc_id, subject, relation, value, negated, start, end,
                                 None, "oracle"))
        return start, end

    def write_filler(self, sentence: str) -> None:
        self._append(sentence)
        self.last_person = None

    def write_statement(self, st: _Statement, sentence: str) -> None:
        _, end = self._fact(sentence, st.subject, st.relation, st.value, st.negated)
        self.last_person = st.value if st.relation == "knows" else (
            st.subject if st.person else None)
        if st.recalled:
            self._schedule(st.subject, st.relation, st.value, end,
                           may_update=st.relation in UPDATABLE_RELATIONS)

    def write_pending(self, ev: _Pending) -> None:
        self.pending.remove(ev)
        distance = self.distance(ev)
        start, end = self._fact(ev.sentence, ev.subject, ev.relation, ev.value, False)
        self.last_person = ev.subject
        if ev.is_update:
            self._schedule(ev.subject, ev.relation, ev.value, end, may_update=False)
            return
        value_start = start + ev.value_offset
        if self.cfg.min_distance <= distance <= self.cfg.max_distance:
            self.recalls.append(GoldRecall(value_start, value_start + len(ev.value), ev.subject,
                                           ev.relation, ev.value, ev.stated_char_end, distance))

    def render_statement(self, st: _Statement) -> str:
        template = self.rng.choice(st.templates)
        subject = st.subject
        if st.person is not None and self.last_person == st.subject \
                and self.rng.random() < self.cfg.pronoun_prob:
            subject = tpl.PRONOUNS[st.person.gender]
        return _render(template, subject, st.value)[0]

    # ---------------------------------------------------------------- scheduling

    def _schedule(self, subject: str, relation: str, value: str, stated_char_end: int,
                  may_update: bool) -> None:
        cfg, rng = self.cfg, self.rng
        is_update = may_update and rng.random() < cfg.update_prob
        if is_update:
            value = self.values.draw(RELATIONS[relation][1])
            template = rng.choice(tpl.UPDATE[relation])
        else:
            template = rng.choice(tpl.RECALL[relation])
        sentence, offset = _render(template, subject, value)
        self.pending.append(_Pending(
            subject, relation, value, sentence, offset,
            lead_words=0 if is_update else len(sentence[:offset].split()),
            anchor_words=self.words, stated_char_end=stated_char_end,
            target=rng.randint(cfg.min_distance, cfg.max_distance), is_update=is_update))

    def distance(self, ev: _Pending) -> int:
        return self.words - ev.anchor_words + ev.lead_words

    def _slack(self, ev: _Pending) -> float:
        return float("inf") if ev.is_update else self.cfg.max_distance - self.distance(ev)

    def fits(self, extra_words: int, writing: _Pending | None = None) -> bool:
        """Can every pending recall (but `writing`) still be written within max_distance after
        `extra_words` more words? (Checked by writing them in order of urgency.)"""
        at = self.words + extra_words
        for ev in sorted(self.pending, key=self._slack):
            if ev.is_update:
                break
            if ev is writing:
                continue
            if at - ev.anchor_words + ev.lead_words > self.cfg.max_distance:
                return False
            at += len(ev.sentence.split())
        return True

    def write_story(self, queue: list[_Statement | str]) -> None:
        """Write the introduction queue (statements and filler), then everything pending."""
        while queue or self.pending:
            due = [ev for ev in self.pending if self.distance(ev) >= ev.target]
            if due:
                ev = min(due, key=self._slack)
                if not self.fits(len(ev.sentence.split()), writing=ev):
                    ev = min(self.pending, key=self._slack)
                self.write_pending(ev)
                continue
            if queue:
                head = queue[0]
                sentence = head if isinstance(head, str) else self.render_statement(head)
                if self.fits(len(sentence.split())):
                    queue.pop(0)
                    if isinstance(head, str):
                        self.write_filler(sentence)
                    else:
                        self.write_statement(head, sentence)
                    continue
            filler = _filler(self.rng)
            if self.fits(len(filler.split())):
                self.write_filler(filler)
                continue
            # No room for another sentence: write the most urgent recall now (if it is still
            # short of min_distance, write_pending records no recall span for it).
            self.write_pending(min(self.pending, key=self._slack))

    def text(self) -> str:
        return "".join(self.parts)


def _introduction(rng: random.Random, cfg: SyntheticSource, values: _Values,
                  main: list[_Person], distractors: list[_Person]) -> list[_Statement | str]:
    """Every person's facts, one block per person, blocks in random order."""
    everyone = main + distractors
    blocks: list[list[_Statement]] = []
    for person in everyone:
        recalled = person in main
        relations = rng.sample(PERSON_ATTRIBUTES, min(cfg.facts_per_entity, len(PERSON_ATTRIBUTES)))
        block: list[_Statement] = []
        for rel in relations:
            value = values.draw(RELATIONS[rel][1])
            block.append(_Statement(tpl.STATEMENT[rel], person.name, rel, value,
                                    person=person, recalled=recalled))
            if rel == "works at" and rng.random() < ORG_FACT_PROB:
                block.append(_Statement(tpl.STATEMENT["based in"], value, "based in",
                                        values.draw("place")))
        if rng.random() < cfg.negation_prob:
            rel = rng.choice(relations)
            block.append(_Statement(tpl.NEGATION[rel], person.name, rel,
                                    values.draw(RELATIONS[rel][1]), negated=True, person=person))
        others = [p for p in everyone if p is not person]
        if others and rng.random() < KNOWS_PROB:
            block.append(_Statement(tpl.STATEMENT["knows"], person.name, "knows",
                                    rng.choice(others).name, person=person))
        blocks.append(block)
    rng.shuffle(blocks)
    queue: list[_Statement | str] = [_filler(rng)] if rng.random() < 0.5 else []
    for i, block in enumerate(blocks):
        if i and rng.random() < FILLER_BETWEEN_PEOPLE_PROB:
            queue.append(_filler(rng))
        queue.extend(block)
    return queue


def pool_words(pool: ValuePool) -> set[str]:
    return {w for name in pool.orgs + pool.places for w in name.split()}


def generate_document(cfg: SyntheticSource, pool: ValuePool, seed: int, index: int,
                      names: NamePool | None = None) -> Document:
    """Document `index` of the corpus (independent of how many documents are generated).
    `names`: the shared person-name pools (`name_pool_size > 0`), else fresh names."""
    doc_id = f"syn-{index:06d}"
    rng = random.Random(derived_seed("synthetic-doc", seed, index))
    values = _Values(rng, pool)
    people = _people(rng, cfg.entities_per_doc + cfg.distractors_per_doc, pool_words(pool), names)
    main, distractors = people[:cfg.entities_per_doc], people[cfg.entities_per_doc:]
    writer = _StoryWriter(doc_id, rng, cfg, values)
    writer.write_story(_introduction(rng, cfg, values, main, distractors))
    return Document(doc_id, writer.text(), "synthetic", gold=writer.gold, recalls=writer.recalls)


def generate_documents(cfg: SyntheticSource, seed: int) -> Iterator[Document]:
    """The corpus: `cfg.num_docs` documents, deterministic in (cfg, seed)."""
    pool = value_pool(cfg.value_pool_size, seed)
    names = name_pool(cfg.name_pool_size, seed, pool_words(pool)) if cfg.name_pool_size else None
    for index in range(cfg.num_docs):
        yield generate_document(cfg, pool, seed, index, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-docs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = SyntheticSource(num_docs=args.num_docs)
    for doc in generate_documents(cfg, args.seed):
        print(f"=== {doc.doc_id}\n{doc.text}\n--- gold")
        for t in doc.gold:
            print(f"  ({t.subject} | {t.relation} | {t.object}){' NOT' if t.negated else ''}")
        print("--- recalls")
        for r in doc.recalls:
            print(f"  {r.subject} {r.relation} -> {doc.text[r.char_start:r.char_end]!r} "
                  f"({r.distance_words} words back)")


if __name__ == "__main__":
    main()
