"""Prompt building: sentence spans, numbering, chunks with carry-over, layout for prefix caching."""
import itertools
import json
import re

from corpora.synthetic import SyntheticSource
from corpora.synthetic import generate_documents
from extraction.parsing import parse_llm_output
from extraction.prompts import (FEW_SHOT, INSTRUCTIONS, MAX_CARRY_NAMES, TRIPLETS_JSON_SCHEMA,
                                build_chunks, chat_messages, plain_prompt, proper_names,
                                split_sentences)

TEXT = ("Dr. J. Smith met Mr. Brown at Acme Inc. in the U.S. on Monday. \"Is it true?\" she asked."
        "  Yes!\n\nA heading without a full stop\nThen a line. It costs approx. three euros. "
        "Ilse Varga was born in Dunmore. She works at Harlow Mills.")


def test_sentences_and_exact_spans():
    spans = split_sentences(TEXT)
    assert [TEXT[s:e] for s, e in spans] == [
        "Dr. J. Smith met Mr. Brown at Acme Inc. in the U.S. on Monday.",
        "\"Is it true?\" she asked.",
        "Yes!",
        "A heading without a full stop\nThen a line.",
        "It costs approx. three euros.",
        "Ilse Varga was born in Dunmore.",
        "She works at Harlow Mills.",
    ]


def test_spans_cover_every_character_once():
    for text in (TEXT, "", "   ", "no end", "One. Two.  Three!?  \n\n\n Four", "a.b.c. D"):
        spans = split_sentences(text)
        assert all(0 <= s < e <= len(text) and text[s:e] == text[s:e].strip() for s, e in spans)
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))
        covered = "".join(text[s:e] for s, e in spans)
        assert re.sub(r"\s", "", covered) == re.sub(r"\s", "", text)


def test_sentence_spans_match_the_synthetic_gold_spans():
    # every gold triplet's span is one sentence of the generator: the splitter must agree
    docs = list(itertools.islice(generate_documents(SyntheticSource(num_docs=60), seed=3), 60))
    checked = 0
    for doc in docs:
        spans = set(split_sentences(doc.text))
        for t in doc.gold:
            assert (t.char_start, t.char_end) in spans, doc.text[t.char_start:t.char_end]
            checked += 1
    assert checked > 500


def test_chunk_numbering_runs_through_the_document():
    chunks = build_chunks("d1", TEXT, chunk_sentences=3)
    assert [sorted(c.spans) for c in chunks] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [c.index for c in chunks] == [0, 1, 2] and {c.doc_id for c in chunks} == {"d1"}
    for chunk in chunks:
        lines = [ln for ln in chunk.text.splitlines() if ln.startswith("[")]
        for n, line in zip(sorted(chunk.spans), lines):
            s, e = chunk.spans[n]
            assert line == f"[{n}] {' '.join(TEXT[s:e].split())}"


def test_carry_over_names_earlier_entities_only():
    chunks = build_chunks("d1", TEXT, chunk_sentences=3)
    assert not chunks[0].text.startswith("Entities")
    assert chunks[1].text.splitlines()[0] == "Entities mentioned earlier: Smith, Brown, Acme Inc, Monday."
    assert chunks[2].text.splitlines()[0] == (
        "Entities mentioned earlier: Smith, Brown, Acme Inc, Monday, Ilse Varga, Dunmore.")
    # a name mentioned again moves to the end (most recent last); the list is capped
    text = " ".join(f"Person{i} Kay met Arlo Wen." for i in range(40))
    carry = build_chunks("d2", text, chunk_sentences=39)[1].text.splitlines()[0]
    names = carry.removeprefix("Entities mentioned earlier: ").rstrip(".").split(", ")
    assert len(names) == MAX_CARRY_NAMES and names[-1] == "Arlo Wen" and names.count("Arlo Wen") == 1


def test_proper_names_skip_sentence_openers_initials_and_abbreviations():
    assert proper_names("The Orlin Prize went to Beth Amsel.") == ["Orlin Prize", "Beth Amsel"]
    assert proper_names("Varga left Dunmore.") == ["Dunmore"]
    assert proper_names("Dr. J. Smith met Mr. Brown.") == ["Smith", "Brown"]


def test_layout_fixed_part_first_document_last():
    chunk_a, chunk_b = build_chunks("a", TEXT, 3)[0], build_chunks("b", "Mara Quell works at Tessaly Labs.", 3)[0]
    msgs_a, msgs_b = chat_messages(chunk_a), chat_messages(chunk_b)
    assert msgs_a[0] == {"role": "system", "content": INSTRUCTIONS}
    assert msgs_a[:-1] == msgs_b[:-1]  # one shared prefix for every request
    assert msgs_a[-1] == {"role": "user", "content": chunk_a.text}
    assert [m["role"] for m in msgs_a[1:-1]] == ["user", "assistant"] * len(FEW_SHOT)
    text = plain_prompt(msgs_a)
    assert text.index(INSTRUCTIONS) < text.index(chunk_a.text) and text.endswith("### assistant\n")
    assert plain_prompt(msgs_b).startswith(text[: text.index(chunk_a.text)])


def test_instructions_ask_for_coreference_negation_and_facts_only():
    for phrase in ("full names, never pronouns", '"negated": true', "opinions", "hypotheticals",
                   "sentence that states it"):
        assert phrase in INSTRUCTIONS


def test_few_shot_answers_follow_the_schema_and_parse_cleanly():
    props = TRIPLETS_JSON_SCHEMA["properties"]["triplets"]["items"]
    for turn in chat_messages(build_chunks("d", "Hi there.", 3)[0])[2:-1:2]:
        answer = json.loads(turn["content"])
        for item in answer["triplets"]:
            assert set(item) == set(props["required"]) == set(props["properties"])
        items, errors = parse_llm_output(turn["content"])
        assert errors == [] and len(items) == len(answer["triplets"])
    # few-shot sentence numbers point at sentences that exist in their example
    for text, triplets in FEW_SHOT:
        assert max(k for *_, k in triplets) <= len(split_sentences(text))
