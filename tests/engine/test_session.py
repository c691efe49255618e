"""The chat front end keeps one document: every reply token stays in it (a reply ends at its
first sentence), each turn is joined with a space, and the memory reads the joined text; what
--show-memory and --explain print about slots and layers."""
import io
from dataclasses import replace

from engine.engine import make_sampler
from engine.session import chat, explain_header, open_session, slot_text
from model.gpt import GPTConfig
from model.memory import Slot, text_slot
from model.tokenizer import load_run_tokenizer


def test_a_chat_is_one_document_of_turns_and_whole_replies(story_run):
    _, run_dir = story_run
    session = open_session(run_dir, "triplet", budget=None)
    try:
        turns = ["Mara Quell was born in Orvane. Mara Quell works at Tessaly Labs.",
                 "Ilsa Brandt lives in Lethull.", "Tam Orrin was born in"]
        out = io.StringIO()
        assert chat(session, turns, 8, make_sampler(0, None, 0), out) == 3
        replies = [line[2:] for line in out.getvalue().splitlines() if line.startswith("> ")]
        expected = ""
        for turn, reply in zip(turns, replies):
            expected += (" " if expected else "") + turn + reply
        assert session.tok.decode(session.engine.tokens[1:]) == expected
        assert all(r.endswith((".", "!", "?")) or len(session.tok.encode(r)) == 8 for r in replies)
    finally:
        session.close()


def test_text_slots_read_as_their_text_and_explain_names_the_layers_that_read_memory(story_run):
    _, run_dir = story_run
    tok = load_run_tokenizer(run_dir)
    stretch = tok.encode("went by. Tam Orrin was born in Kess.")  # a pooled chunk, say
    assert slot_text(tok, text_slot(stretch, 3)) == repr(tok.decode(stretch))
    parts = (tuple(tok.encode(text)) for text in ("Tam Orrin", " born in", " Kess"))
    assert slot_text(tok, Slot(*parts, (1, 2, 3), True, 5)) == "(Tam Orrin, not born in, Kess)"
    positions = GPTConfig(vocab_size=64, n_layer=4, n_head=2, n_embd=32, memory_slots=4)
    assert "(mean over heads and layers), top 3 slots" in explain_header(positions, 3)
    kv = replace(positions, memory_injection="kv", kv_layer_stride=3)
    assert "(mean over heads and layers 0, 3 of 4, the ones that read memory)" in explain_header(kv, 3)
