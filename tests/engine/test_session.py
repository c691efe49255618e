"""The chat front end keeps one document: every reply token stays in it (a reply ends at its
first sentence), each turn is joined with a space, and the memory reads the joined text."""
import io

from engine.engine import make_sampler
from engine.session import chat, open_session


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
