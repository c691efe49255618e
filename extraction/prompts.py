"""Prompts for LLM triplet extraction: the JSON schema, sentence numbering, chunks, few-shot.

    >>> chunks = build_chunks("d1", "Mara Quell works at Tessaly Labs. She lives in Orvane.", 24)
    >>> print(chunks[0].text)
    [1] Mara Quell works at Tessaly Labs.
    [2] She lives in Orvane.
    >>> chunks[0].spans[2]
    (34, 54)

Layout of one request (`chat_messages`): the fixed instructions, then the few-shot examples as
user/assistant turns, then the document chunk LAST, so every request of a batch shares one long
prefix and vLLM's automatic prefix caching computes it once.

Sentences are numbered in the prompt ("[1] ...") and the model answers with each triplet's
sentence number, which maps back to an exact char span of the document (`PromptChunk.spans`).
Numbers run through the whole document, so a chunk may start at [25].

Sentence splitting is a documented regex, not a model: a sentence ends at `.`, `!` or `?`
(plus closing quotes/brackets) followed by whitespace, unless the word before a `.` is a known
abbreviation or a single capital letter (an initial), or the next word starts in lower case; a
blank line always ends a sentence. Spans exclude surrounding whitespace, so
`text[start:end]` is the sentence and every non-space character lies in exactly one sentence.

Long documents are split into chunks of `chunk_sentences` sentences. All chunks go into the same
batched `generate` call, so the model's answers for earlier chunks are not available yet; the
coreference hint for a later chunk is a line "Entities mentioned earlier: ..." with the proper
names (runs of capitalised words, `proper_names`) of the earlier chunks, most recent last.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TRIPLETS_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "triplets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "minLength": 1},
                    "relation": {"type": "string", "minLength": 1},
                    "object": {"type": "string", "minLength": 1},
                    "negated": {"type": "boolean"},
                    "sentence": {"type": "integer", "minimum": 1},
                },
                "required": ["subject", "relation", "object", "negated", "sentence"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["triplets"],
    "additionalProperties": False,
}

INSTRUCTIONS = """\
You extract facts from a document as (subject, relation, object) triplets.
- The document's sentences are numbered [1], [2], ...; give each triplet the number of the \
sentence that states it.
- Use full names, never pronouns or partial names: if "she" or "Quell" refers to Mara Quell, \
write "Mara Quell". A line "Entities mentioned earlier" lists names from earlier parts of the \
document that pronouns may refer to.
- The relation is a short verb phrase from the text ("works at", "born in", "is a", "founded").
- A statement the text says is false gets "negated": true ("Mara Quell does not live in Bexley" \
gives Mara Quell / lives in / Bexley with negated true); every other triplet has "negated": false.
- Leave out opinions, beliefs, wishes, plans, questions and hypotheticals (might, would, if, \
thinks, hopes): only facts the text states as true or as false.
- Answer with JSON only, {"triplets": [...]}; an empty list when the text states no fact."""

# Few-shot documents (invented names) with their answers; rendered exactly like a real chunk.
FEW_SHOT: tuple[tuple[str, list[tuple[str, str, str, bool, int]]], ...] = (
    ("Ilse Varga was born in Dunmore. She works at Harlow Mills as a chemist. Varga no longer "
     "lives in Dunmore. Her friend Tomas Reyne thinks Harlow Mills might move to Calder. "
     "Harlow Mills is based in Pellton.",
     [("Ilse Varga", "born in", "Dunmore", False, 1),
      ("Ilse Varga", "works at", "Harlow Mills", False, 2),
      ("Ilse Varga", "is a", "chemist", False, 2),
      ("Ilse Varga", "lives in", "Dunmore", True, 3),
      ("Tomas Reyne", "is a friend of", "Ilse Varga", False, 4),
      ("Harlow Mills", "based in", "Pellton", False, 5)]),
    ("The Orlin Prize was awarded to Beth Amsel in 1998. If Amsel had stayed in Kerrow, she "
     "would have joined the Kerrow Institute. Amsel did not attend the ceremony.",
     [("Beth Amsel", "was awarded", "Orlin Prize", False, 1),
      ("Beth Amsel", "attended", "Orlin Prize ceremony", True, 3)]),
)

_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|\Z)")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_WORD_BEFORE = re.compile(r"(\S+)\Z")
_NEXT_WORD = re.compile(r"\s*(\S)")
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "ft", "inc", "ltd", "co", "corp",
    "vs", "etc", "e.g", "i.e", "cf", "no", "vol", "fig", "gen", "col", "lt", "sgt", "capt", "rev",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s",
    "u.k", "approx", "ca",
})
_NAME_RUN = re.compile(r"[A-Z][\w'’-]*(?: [A-Z][\w'’-]*)*")
# capitalised only because they start a sentence or a clause: never a name's first word
_NOT_NAME_WORDS = frozenset({
    "The", "A", "An", "In", "On", "At", "By", "For", "From", "To", "Of", "After", "Before", "When",
    "While", "Since", "During", "His", "Her", "Their", "Its", "She", "He", "They", "It", "We", "I",
    "This", "That", "These", "Those", "There", "Years", "Later", "Then", "But", "And", "Or", "So",
    "As", "If", "Yet", "Also", "Still", "Now", "Today", "Meanwhile",
})
_OPENING_PUNCT = " \"'“‘(["
MAX_CARRY_NAMES = 20


@dataclass(frozen=True)
class PromptChunk:
    doc_id: str
    index: int  # chunk number within the document, from 0
    spans: dict[int, tuple[int, int]]  # sentence number -> (char_start, char_end) in the document
    text: str  # the user message: carry-over line, then the numbered sentences


def _is_abbreviation(text: str, dot: int) -> bool:
    word = _WORD_BEFORE.search(text, 0, dot)
    if not word:
        return False
    w = word.group(1).lstrip("\"'“‘([")
    return w.lower() in ABBREVIATIONS or (len(w) == 1 and w.isupper())


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Char spans (start, end) of the sentences of `text`, by the rule in the module doc."""
    cuts = set()
    for end in _SENTENCE_END.finditer(text):
        if end.group() == "." and _is_abbreviation(text, end.start()):
            continue
        following = _NEXT_WORD.match(text, end.end())
        if following and following.group(1).islower():
            continue
        cuts.add(end.end())
    cuts.update(m.start() for m in _BLANK_LINE.finditer(text))
    spans, prev = [], 0
    for cut in sorted(cuts) + [len(text)]:
        piece = text[prev:cut]
        start, end = prev + len(piece) - len(piece.lstrip()), cut - (len(piece) - len(piece.rstrip()))
        if start < end:
            spans.append((start, end))
        prev = cut
    return spans


def proper_names(sentence: str) -> list[str]:
    """Runs of capitalised words in one sentence, in order. A single word is skipped where it opens
    the sentence or a line (capitalised by position, not because it is a name), and where it is
    an initial or an abbreviation."""
    names = []
    for run in _NAME_RUN.finditer(sentence):
        words, start = run.group().split(" "), run.start()
        while words and words[0] in _NOT_NAME_WORDS:
            start += len(words.pop(0)) + 1
        opens_line = not sentence[:start].strip(_OPENING_PUNCT) or sentence[start - 1] == "\n"
        if not words or (len(words) == 1 and (opens_line or len(words[0]) < 2
                                              or words[0].lower() in ABBREVIATIONS)):
            continue
        names.append(" ".join(words))
    return names


def numbered(sentences: list[str], first: int = 1) -> str:
    """The sentences as the prompt shows them: "[n] sentence" lines, inner whitespace collapsed."""
    return "\n".join(f"[{first + i}] {' '.join(s.split())}" for i, s in enumerate(sentences))


def _chunk_text(sentences: list[str], first: int, earlier_names: list[str]) -> str:
    body = numbered(sentences, first)
    if not earlier_names:
        return body
    return f"Entities mentioned earlier: {', '.join(earlier_names)}.\n\n{body}"


def build_chunks(doc_id: str, text: str, chunk_sentences: int) -> list[PromptChunk]:
    """The document as prompt chunks of at most `chunk_sentences` numbered sentences each."""
    spans = split_sentences(text)
    chunks = []
    seen: dict[str, None] = {}  # names in order of their last mention (most recent last)
    for index, lo in enumerate(range(0, len(spans), chunk_sentences)):
        part = spans[lo: lo + chunk_sentences]
        chunks.append(PromptChunk(
            doc_id=doc_id, index=index,
            spans={lo + 1 + i: span for i, span in enumerate(part)},
            text=_chunk_text([text[s:e] for s, e in part], lo + 1, list(seen)[-MAX_CARRY_NAMES:])))
        for s, e in part:
            for name in proper_names(text[s:e]):
                seen.pop(name, None)
                seen[name] = None
    return chunks


def _few_shot_turns() -> list[dict[str, str]]:
    turns = []
    for text, triplets in FEW_SHOT:
        answer = {"triplets": [{"subject": s, "relation": r, "object": o, "negated": n, "sentence": k}
                               for s, r, o, n, k in triplets]}
        turns.append({"role": "user", "content": numbered([text[s:e] for s, e in split_sentences(text)])})
        turns.append({"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)})
    return turns


def chat_messages(chunk: PromptChunk) -> list[dict[str, str]]:
    """One request: instructions, few-shot turns, then the chunk (the only part that varies)."""
    return [{"role": "system", "content": INSTRUCTIONS}, *_few_shot_turns(),
            {"role": "user", "content": chunk.text}]


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """The messages as plain text, for a model without a chat template."""
    body = "\n\n".join(f"### {m['role']}\n{m['content']}" for m in messages)
    return f"{body}\n\n### assistant\n"
