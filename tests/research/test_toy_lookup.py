"""The bisect toy's documents hold what its docstring promises: every recall has its fact in memory."""
import pytest

from research.bench_lookup import main
from research.toy_lookup import DOT, ToyTask, toy_document


@pytest.mark.parametrize("noise", [False, True])
def test_every_recalled_value_is_the_object_of_the_fact_stated_earlier(noise):
    args = ToyTask(facts=4, key_len=3, value_len=2, relations=2, filler_len=10, noise=noise)
    for i in range(20):
        row, memory = toy_document(i, args)
        memory = [m for m in memory if m["source"] == "oracle"]
        tokens = row["tokens"]
        assert len(memory) == len(row["recall_spans"]) == args.facts
        assert len({tuple(m["subject_tokens"]) for m in memory}) == args.facts  # keys distinct
        by_pos = {m["token_pos"]: m for m in memory}
        for span in row["recall_spans"]:
            fact = by_pos[span["stated_pos"]]
            assert tokens[span["start"]:span["end"]] == fact["object_tokens"]
            # the recall sentence repeats the key and relation right before the value
            cue = fact["subject_tokens"] + fact["relation_tokens"]
            assert tokens[span["start"] - len(cue):span["start"]] == cue
            # the statement ends (token_pos) right after its value and full stop
            assert tokens[fact["token_pos"] - 1] == DOT
            assert span["start"] - fact["token_pos"] >= args.filler_len
        assert row["recall"] == [t for s in row["recall_spans"] for t in range(s["start"], s["end"])]


def test_refuses_to_replace_a_folder_it_did_not_make(tmp_path):
    keep = tmp_path / "precious.txt"
    keep.write_text("x")
    with pytest.raises(SystemExit):
        main(["--dir", str(tmp_path)])
    assert keep.read_text() == "x"


def test_refuses_a_task_beyond_the_toy_token_ranges():
    with pytest.raises(SystemExit):
        main(["--facts", "20", "--key-len", "3", "--dir", "/nonexistent/never-made"])
