"""Normalization of entity and relation strings, shared by scoring and canonicalization.

Fast, deterministic string rules, no model:

    >>> normalize_entity("  The Curie's, ")
    'curie'
    >>> normalize_relation("Was born in"), normalize_relation("works at"), normalize_relation("is a")
    ('born in', 'work at', 'be a')
    >>> canonical_relation("moved to")
    'live in'

`normalize_relation` lower-cases and lemmatizes every word with a small irregular-verb table and
English suffix rules (no spaCy lemmatizer, so it is cheap enough to run on every triplet and gives
the same answer everywhere). Polarity lives in `Triplet.negated`, so negation words are dropped
from the relation; so are auxiliaries in front of a participle ("was born in" -> "born in",
"has worked at" -> "work at"), while a copula before a noun phrase stays ("is a" -> "be a").
`canonical_relation` additionally maps a relation through `RELATION_SYNONYMS`.
"""
from __future__ import annotations

import re
import unicodedata

_DETERMINERS = ("the", "a", "an")
_SPACES = re.compile(r"\s+")
# Punctuation trimmed from the ends of an entity: anything that is not a letter, digit or
# closing bracket/quote that belongs to the name is dropped.
_EDGE_PUNCT = " \t\n.,;:!?\"'`()[]{}<>«»“”‘’-–—*_/\\|"

# Irregular verb forms -> lemma (only forms the suffix rules get wrong).
_IRREGULAR = {
    "is": "be", "are": "be", "was": "be", "were": "be", "am": "be", "been": "be", "being": "be",
    "'s": "be", "'re": "be", "'m": "be",
    "has": "have", "had": "have", "having": "have", "'ve": "have",
    "does": "do", "did": "do", "done": "do", "doing": "do",
    "went": "go", "gone": "go", "goes": "go",
    "made": "make", "took": "take", "taken": "take", "gave": "give", "given": "give",
    "wrote": "write", "written": "write", "got": "get", "gotten": "get", "came": "come",
    "became": "become", "began": "begin", "begun": "begin", "left": "leave", "led": "lead",
    "held": "hold", "won": "win", "lost": "lose", "met": "meet", "sold": "sell", "bought": "buy",
    "built": "build", "taught": "teach", "thought": "think", "found": "find", "knew": "know",
    "known": "know", "saw": "see", "seen": "see", "grew": "grow", "grown": "grow", "ran": "run",
    "spoke": "speak", "spoken": "speak", "told": "tell", "said": "say", "paid": "pay",
    "kept": "keep", "brought": "bring", "fought": "fight", "chose": "choose", "chosen": "choose",
    "drove": "drive", "driven": "drive", "ate": "eat", "eaten": "eat", "fell": "fall",
    "fallen": "fall", "flew": "fly", "flown": "fly", "sang": "sing", "sung": "sing",
    "stood": "stand", "understood": "understand", "wore": "wear", "worn": "wear",
    "dies": "die", "died": "die", "lies": "lie",
    "going": "go", "agreed": "agree", "freed": "free", "created": "create", "creating": "create",
    "changed": "change", "changing": "change", "invited": "invite", "treated": "treat",
    # "born" is kept as is: "born in" is the relation everyone writes, never "bear in".
}
_AUXILIARIES = {"be", "have", "do", "will", "would", "shall", "should", "can", "could", "may",
                "might", "must", "'ll", "'d"}
_NEGATIONS = {"not", "n't", "never"}
_NO_LONGER = re.compile(r"\bno longer\b")
# Words the suffix rules must leave alone (function words, nouns ending in -s/-ed).
_KEEP = {
    "as", "is", "was", "has", "his", "its", "this", "us", "thus", "plus", "across", "towards",
    "besides", "whereas", "unless", "less", "news", "series", "species", "always", "perhaps",
    "bus", "gas", "status", "campus", "virus", "focus", "bonus", "census", "chaos", "ethos",
    "headquarters", "physics", "mathematics", "economics", "politics", "sometimes", "upon",
    "red", "bed", "shed", "bred", "wed", "hundred",
    "born", "during", "nothing", "something", "anything", "everything", "king", "thing",
    "wedding", "building", "spring", "string", "ceiling", "ring", "sibling", "morning", "evening",
}
_DETERMINER_WORDS = {"a", "an", "the", "this", "that", "these", "those", "his", "her", "its",
                     "their", "my", "our", "your", "some", "any", "no", "one"}
_PREPOSITIONS = {"in", "on", "at", "to", "for", "from", "of", "by", "with", "about", "into",
                 "onto", "as", "near", "over", "under", "after", "before", "since", "until"}
_VOWELS = set("aeiou")
_SILENT_E_ENDINGS = {"ar", "ib", "id", "in", "ir", "ok", "ol", "om", "or", "ot", "ud", "od", "ul",
                     "um", "ur", "ut", "ap", "at"}

# Relation synonyms applied after normalization (keys and values are normalized forms). Keep it
# small and explicit: each entry says that two phrasings state the same single fact.
# Updates say that a relation now holds ("moved to X": the subject lives in X now), which is how
# the synthetic corpus states a new value of a functional relation.
RELATION_SYNONYMS: dict[str, str] = {
    "move to": "live in",
    "relocate to": "live in",
    "reside in": "live in",
    "start work at": "work at",
    "begin work at": "work at",
    "become a": "be a",
    "become an": "be an",
    "employ by": "work for",
}


def _nfkc_lower(s: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", s)).strip().casefold()


def normalize_entity(s: str, casefold: bool = True) -> str:
    """Entity key: NFKC, one space between words, no leading the/a/an, no possessive 's or edge
    punctuation, case-folded (pass casefold=False for a display form that keeps the case)."""
    s = _SPACES.sub(" ", unicodedata.normalize("NFKC", s))
    before = None
    while s != before:  # until nothing more comes off, so a key normalizes to itself
        before = s
        s = s.strip(_EDGE_PUNCT)
        head, _, rest = s.partition(" ")
        if rest and head.casefold() in _DETERMINERS:
            s = rest
        for suffix in ("'s", "’s"):
            if s.casefold().endswith(suffix) and len(s) > len(suffix):
                s = s[: -len(suffix)]
    return s.casefold() if casefold else s


def _restore_e(stem: str) -> str:
    """The verb stem after removing -ed/-ing: 'liv' -> 'live', 'stopp' -> 'stop', 'work' -> 'work'."""
    if len(stem) < 2 or not any(c in _VOWELS for c in stem):
        return stem
    last, before = stem[-1], stem[-2]
    if last == before and last not in _VOWELS and last not in "lsz":
        return stem[:-1]  # doubled final consonant: stopped, admitted, planned
    if last in "vuc" or (last == "g" and before not in "ng") or (last in "sz" and before != last):
        return stem + "e"  # lived, argued, produced, managed, used, realized
    if last in _VOWELS or last in "wxy" or before not in _VOWELS:
        return stem
    if stem.endswith(("iat", "uat")):
        return stem + "e"  # graduated, negotiated, evaluated
    if len(stem) >= 3 and stem[-3] in _VOWELS:
        return stem  # two-vowel syllable: joined, remained, appeared
    if sum(1 for i, c in enumerate(stem) if c in _VOWELS and (i == 0 or stem[i - 1] not in _VOWELS)) == 1:
        return stem + "e"  # one syllable ending in vowel + consonant: liked, named, hoped
    # longer stems: these endings are usually a silent e (described, compared, decided), others
    # not (visited, entered, opened, travelled)
    return stem + "e" if stem[-2:] in _SILENT_E_ENDINGS else stem


def lemmatize_word(word: str) -> str:
    """Lemma of one lower-case English word, by table and suffix rules (verbs and plurals)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _KEEP or len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    if word.endswith("ied"):
        return word[:-3] + "y"
    if word.endswith("ed") and not word.endswith("eed"):
        return _restore_e(word[:-2])
    if word.endswith("ing") and len(word) > 4:
        return _restore_e(word[:-3])
    return word


def normalize_relation(s: str) -> str:
    """Relation key: NFKC, lower case, every word lemmatized, negation and auxiliaries in front of
    a participle dropped ("was born in" -> "born in", "is not a" -> "be a")."""
    s = _NO_LONGER.sub(" ", _nfkc_lower(s).replace("n't", " n't"))
    words = [w.strip(_EDGE_PUNCT) for w in s.split(" ")]
    lemmas = [lemmatize_word(w) for w in words if w and w not in _NEGATIONS]
    # an auxiliary in front of another verb adds tense, not meaning; before a determiner or
    # preposition it is the relation itself ("be a", "be in")
    while len(lemmas) > 1 and lemmas[0] in _AUXILIARIES and lemmas[1] not in _DETERMINER_WORDS \
            and lemmas[1] not in _PREPOSITIONS:
        lemmas = lemmas[1:]
    return " ".join(lemmas)


def canonical_relation(s: str) -> str:
    """normalize_relation, then the synonym table (the relation compared in strict scoring)."""
    rel = normalize_relation(s)
    return RELATION_SYNONYMS.get(rel, rel)
