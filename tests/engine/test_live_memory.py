"""Live memory against the pipeline's: for every window of every document of a real run, the
memory made live from the evicted text (real spaCy) equals the policy's result over the memory
shards; saved memories merge by set union with upsert; bad memory files fail in one line."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.engine import live_document, window_context
from engine.live_memory import (LiveMemory, MemoryFileError, RunVocabulary, kept_triplets,
                                read_memories, read_memory, save_memory)
from extraction.registry import make_backend
from model.dataloader import load_training_documents
from model.memory import build_window_memory, kept_rows
from model.tokenizer import load_run_tokenizer
from model.variants import VARIANTS, prepared_spec
from warehouse.contracts import TRIPLET_SCHEMA, Triplet
from warehouse.db import connect


@pytest.fixture(scope="module")
def live(story_run):
    cfg, run_dir = story_run
    return LiveMemory(load_run_tokenizer(run_dir), make_backend("spacy", cfg.extract),
                      RunVocabulary(run_dir), cfg.canonicalize)


def test_live_memory_equals_the_offline_memory_of_every_window(story_run, live):
    # Equal but for spaCy's sentence boundaries, which can depend on the text after the window:
    # offline, a sentence was parsed together with the next ("... knows Thekair Cill.\n\nBy
    # then, ... Failoth."), so its fact joins the offline memory one sentence late (2 of 207).
    # The same holds for the context of every variant built from memory rows (their stating
    # clauses included: the live rows' clause spans are the offline ones).
    cfg, run_dir = story_run
    T, M = cfg.model.sequence_len, cfg.model.memory_slots
    from_rows = {name: prepared_spec(cfg, name, run_dir) for name in VARIANTS
                 if VARIANTS[name].reads_memory_rows}
    windows, equal, nonempty = 0, 0, 0
    contexts_equal = dict.fromkeys(from_rows, 0)
    for split in ("train", "val"):
        for doc in load_training_documents(run_dir, split, "spacy"):
            for start in range(T, len(doc.tokens) - 1, T):
                state = live.state_after(doc.tokens[:start].tolist())
                offline = build_window_memory(doc.memory, start, M)
                equal += build_window_memory(state.rows, start, M) == offline
                windows += 1
                nonempty += bool(offline)
                now = live_document(doc.tokens[:start], state.rows)
                for name, spec in from_rows.items():
                    contexts_equal[name] += (window_context(VARIANTS[name], now, start, spec) ==
                                             window_context(VARIANTS[name], doc, start, spec))
    assert windows >= 200 and nonempty >= 0.8 * windows
    assert equal >= windows - 2
    assert {"sentences", "selected_raw", "text"} <= set(from_rows)
    assert all(n >= windows - 2 for n in contexts_equal.values()), (windows, contexts_equal)


def test_names_the_run_knows_keep_its_ids_and_new_ones_get_new_ids(story_run):
    _, run_dir = story_run
    con = connect(run_dir, read_only=True)
    (name, entity_id), = con.execute("SELECT name, entity_id FROM entities LIMIT 1").fetchall()
    (most,) = con.execute("SELECT max(entity_id) FROM entities").fetchone()
    con.close()
    vocab = RunVocabulary(run_dir)
    ids = vocab.entity_ids([name, "nobody we know", "nor this one"])
    assert ids[name] == entity_id and sorted(ids.values())[1:] == [most + 1, most + 2]
    assert vocab.entity_ids(["nobody we know"]) == {"nobody we know": ids["nobody we know"]}
    assert vocab.relation("live in").functional and vocab.relation("live in").spelling == "lives in"
    assert not vocab.relation("admire").functional and vocab.relation("admire").spelling is None


def test_only_finished_sentences_are_read(live):
    text = "Mara Quell was born in Orvane. Ilsa Brandt worked at Tessaly Labs"
    assert [(t.subject, t.object) for t in live.stated_triplets(text)] == [("Mara Quell", "Orvane")]
    assert len(live.stated_triplets(text + ".")) == 2
    # the fragment is not read at all, so it cannot sway the parse of the sentence before it
    cut = "Motouth Wall was born in Pivond. Tousoura Lais"
    assert [t.object for t in live.stated_triplets(cut)] == ["Pivond"]
    assert live.stated_triplets("Mara Quell was born in") == []


def _triplet(subject, relation, obj, negated=False, doc="story"):
    return Triplet(doc, subject, relation, obj, negated, 0, 1, None, "spacy")


def _write(path, triplets):
    pq.write_table(pa.Table.from_pylist([t.row() for t in triplets], schema=TRIPLET_SCHEMA), path)
    return str(path)


def _facts(live, state):
    return {(live.tok.decode(list(r.subject)).strip(), live.tok.decode(list(r.relation)).strip(),
             live.tok.decode(list(r.object)).strip(), r.negated)
            for r in kept_rows(state.rows, 0, len(state.rows))}


def test_merging_memories_is_a_set_union_with_upsert(tmp_path, live):
    a = _write(tmp_path / "a.parquet", [
        _triplet("Mara Quell", "lives in", "Orvane"),
        _triplet("Mara Quell", "works at", "Tessaly Labs"),
        _triplet("Ilsa Brandt", "knows", "Mara Quell")])
    b = _write(tmp_path / "b.parquet", [
        _triplet("Mara Quell", "moved to", "Lethull"),          # live in is functional: replaces Orvane
        _triplet("Mara Quell", "worked at", "Tessaly Labs"),    # the same fact: kept once
        _triplet("Ilsa Brandt", "lived in", "Orvane", negated=True),  # a negation keeps its polarity
        _triplet("Ilsa Brandt", "knows", "Tam Orrin")])         # know is many-valued: both stay
    merged = _facts(live, LiveMemory(live.tok, None, live.vocab, loaded=read_memories([a, b])).state([], None))
    assert merged == {("Mara Quell", "lives in", "Lethull", False),
                      ("Mara Quell", "works at", "Tessaly Labs", False),
                      ("Ilsa Brandt", "lives in", "Orvane", True),
                      ("Ilsa Brandt", "knows", "Mara Quell", False),
                      ("Ilsa Brandt", "knows", "Tam Orrin", False)}
    # the newest statement wins: the other order keeps Orvane
    reverse = _facts(live, LiveMemory(live.tok, None, live.vocab, loaded=read_memories([b, a])).state([], None))
    assert ("Mara Quell", "lives in", "Orvane", False) in reverse
    assert ("Mara Quell", "lives in", "Lethull", False) not in reverse


def test_a_saved_memory_reloads_to_the_same_memory(tmp_path, live):
    a = _write(tmp_path / "a.parquet", [_triplet("Mara Quell", "lives in", "Orvane"),
                                        _triplet("Mara Quell", "moved to", "Lethull"),
                                        _triplet("Mara Quell", "works at", "Tessaly Labs")])
    state = LiveMemory(live.tok, None, live.vocab, loaded=read_memories([a])).state([], None)
    assert save_memory(state, tmp_path / "saved.parquet") == 2  # Orvane was replaced
    again = LiveMemory(live.tok, None, live.vocab, loaded=read_memories([str(tmp_path / "saved.parquet")]))
    assert _facts(live, again.state([], None)) == _facts(live, state)
    assert [t.object for t in kept_triplets(state)] == ["Lethull", "Tessaly Labs"]


def test_a_run_document_is_a_memory_equal_to_its_offline_memory(story_run, live):
    cfg, run_dir = story_run
    doc = load_training_documents(run_dir, "val", "spacy")[0]
    loaded = read_memories([f"{run_dir}:{doc.doc_id}"])
    state = LiveMemory(live.tok, None, live.vocab, loaded=loaded).state([], None)
    end = len(doc.tokens)
    strip_age = lambda slots: [s._replace(age=0) for s in slots]  # stated at token 0 when loaded
    assert strip_age(build_window_memory(state.rows, end, 100)) == \
        strip_age(build_window_memory(doc.memory, end, 100))
    with pytest.raises(MemoryFileError, match="no spacy triplets for document 'nope'"):
        read_memory(f"{run_dir}:nope")


def test_bad_memory_files_fail_in_one_line(tmp_path):
    with pytest.raises(MemoryFileError, match="no such memory file"):
        read_memory(str(tmp_path / "missing.parquet"))
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(MemoryFileError, match="not a parquet file"):
        read_memory(str(tmp_path / "junk.parquet"))
    pq.write_table(pa.table({"doc_id": ["d"], "subject": ["x"]}), tmp_path / "narrow.parquet")
    with pytest.raises(MemoryFileError, match="not a memory file: no column relation, object"):
        read_memory(str(tmp_path / "narrow.parquet"))
    wrong = {f.name: ["x"] for f in TRIPLET_SCHEMA}
    pq.write_table(pa.table(wrong), tmp_path / "types.parquet")  # negated "x" is no bool
    with pytest.raises(MemoryFileError, match="not a memory file"):
        read_memory(str(tmp_path / "types.parquet"))
