"""The shards stage: token_pos mapping, recall spans (gold and heuristic), memory rows, resume."""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from configs.schema import parse_config
from model.dataloader import evicted_context, load_training_documents, window_starts
from model.memory import build_window_memory
from model.tokenizer import TOKENIZER_FILE, train_tokenizer
from shards.build import run_shards
from shards.recall import real_text_recall_spans
from shards.spans import char_span_tokens, token_pos, tokenize_docs
from warehouse.contracts import MEMORY_SCHEMA, TOKENS_SCHEMA
from warehouse.db import connect
from warehouse.shard_io import shard_path, write_parquet_atomically

FILLER = "The river ran past old mills and quiet fields under a grey sky. "
STATEMENT = "Mara Quell lives in Orvane."
DOC_TEXT = f"{STATEMENT} {FILLER * 6}Later Mara Quell returned to Orvane again. Orvane was calm."
CONFIG = {"name": "t", "model": {"sequence_len": 8, "memory_slots": 4}, "shards": {"workers": 2}}


@pytest.fixture(scope="module")
def tok():
    corpus = [DOC_TEXT, FILLER * 3, "Ilsa Brandt works at Tessaly Labs. She likes tea."] * 10
    return train_tokenizer(corpus, vocab_size=360)


def _doc(k: int, i: int) -> dict:
    return {"doc_id": f"d{k}_{i}", "text": DOC_TEXT.replace("Orvane", f"Orvane{k}{i}"),
            "source": "synthetic", "url": None, "split": "val" if i == 0 else "train"}


def make_run(tmp_path: Path, tok, shards: int = 3, docs_per_shard: int = 2,
             gold_recall: bool = True) -> Path:
    """A run folder with docs shards, a tokenizer, a warehouse with triplets and recall shards."""
    run = tmp_path / "run"
    tok.save(run / TOKENIZER_FILE)
    con = connect(run)
    con.execute("INSERT INTO relations VALUES (7, 'live in', true, 1)")
    tid = 0
    for k in range(shards):
        docs = [_doc(k, i) for i in range(docs_per_shard)]
        write_parquet_atomically(pa.Table.from_pylist(docs), shard_path(run, "docs", k))
        recall = []
        for d in docs:
            city = f"Orvane{d['doc_id'][1:].replace('_', '')}"
            stated_end = d["text"].index(".") + 1
            for extractor in ("oracle", "spacy"):  # canonicalized: the oracle's triplets only
                con.execute("INSERT INTO triplets VALUES (?, ?, ?, 'Mara Quell', 'lives in', ?, false, "
                            "0, ?, NULL, ?)", [tid, d["doc_id"], k, city, stated_end, extractor])
                if extractor == "oracle":
                    con.execute("INSERT INTO canonical_ids VALUES (?, 3, 7, 5)", [tid])
                tid += 1
            start = d["text"].index(city, stated_end)
            recall.append({"doc_id": d["doc_id"], "char_start": start, "char_end": start + len(city),
                           "subject": "Mara Quell", "relation": "lives in", "value": city,
                           "stated_char_end": stated_end, "distance_words": 70})
        if gold_recall:
            write_parquet_atomically(pa.Table.from_pylist(recall), shard_path(run, "recall", k))
    con.close()
    return run


def test_token_pos_is_first_token_at_or_after_char_end(tok):
    text = "Ilsa Brandt works at Tessaly Labs. She likes tea."
    (doc,) = tokenize_docs(tok, [text])
    assert doc.tokens[0] == tok.bos_id and tok.decode(doc.tokens[1:]) == text
    for char_end in (text.index(".") + 1, text.index("works"), text.index("likes") + 2, 0):
        pos = token_pos(doc, char_end)
        assert doc.starts[pos - 1] >= char_end  # document token pos = text token pos - 1
        if pos >= 2:
            assert doc.starts[pos - 2] < char_end
    assert token_pos(doc, len(text)) == len(doc.tokens)  # clause ends the text: clamped
    assert token_pos(doc, len(text) + 50) == len(doc.tokens)


def test_char_span_tokens_cover_exactly_the_overlapping_tokens(tok):
    text = "Ilsa Brandt works at Tessaly Labs. She likes tea."
    (doc,) = tokenize_docs(tok, [text])
    cs = text.index("Tessaly")
    start, end = char_span_tokens(doc, cs, cs + len("Tessaly Labs"))
    assert tok.decode(doc.tokens[start:end]).strip() == "Tessaly Labs"
    assert char_span_tokens(doc, cs, cs)[0] == char_span_tokens(doc, cs, cs)[1]  # empty span


def test_char_span_tokens_keep_every_byte_of_a_split_character(tok):
    # a character the BPE splits over several byte tokens: its leading-byte tokens have empty
    # character spans and must still belong to the span
    text = "say \u2603 now and \u6771\u4eac later"
    (doc,) = tokenize_docs(tok, [text])
    for value in ("\u2603", "\u6771\u4eac"):
        cs = text.index(value)
        start, end = char_span_tokens(doc, cs, cs + len(value))
        assert tok.decode(doc.tokens[start:end]).strip() == value


def test_shards_parallel_gold_recall_memory_and_views(tmp_path, tok):
    run = make_run(tmp_path, tok)
    cfg = parse_config(CONFIG)
    progress = []
    result = run_shards(cfg, run, on_progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (3, 3)
    assert result["rows"]["documents"] == 6
    assert result["rows"]["memory_rows_oracle"] == 6 and result["rows"]["memory_rows_spacy"] == 6
    assert result["rows"]["recall_spans"] == 6
    assert sorted(result["outputs"]) == sorted(
        [f"{kind}/shard_{k:05d}.parquet" for kind in ("tokens", "memory", "windows") for k in range(3)])

    evicted = result["stats"]["evicted_context"]
    lengths = pa.concat_tables(pq.read_table(shard_path(run, "tokens", k)) for k in range(3))
    by_split = {}
    for row in lengths.to_pylist():
        by_split.setdefault(row["split"], []).append(len(row["tokens"]))
    assert evicted == {"window_len": cfg.model.sequence_len,
                       **{split: evicted_context(np.array(n), cfg.model.sequence_len)
                          for split, n in by_split.items()}}

    tokens = pq.read_table(shard_path(run, "tokens", 1))
    assert tokens.schema.equals(TOKENS_SCHEMA)
    memory = pq.read_table(shard_path(run, "memory", 1))
    assert memory.schema.equals(MEMORY_SCHEMA)
    assert result["rows"]["tokens"] > 0
    for row in tokens.to_pylist():
        ids = row["tokens"]
        assert ids[0] == tok.bos_id
        (span,) = row["recall_spans"]
        city = "Orvane" + row["doc_id"][1:].replace("_", "")
        assert tok.decode(ids[span["start"]:span["end"]]).strip() == city
        assert row["recall"] == list(range(span["start"], span["end"]))
        text = DOC_TEXT.replace("Orvane", city)
        doc = tokenize_docs(tok, [text])[0]
        assert doc.tokens == ids
        assert span["stated_pos"] == token_pos(doc, text.index(".") + 1)
        # the statement's last token ("." of the clause) is just before stated_pos
        assert tok.decode(ids[span["stated_pos"] - 1:span["stated_pos"]]) == "."

    rows = memory.to_pylist()
    oracle = [r for r in rows if r["source"] == "oracle"]
    spacy = [r for r in rows if r["source"] == "spacy"]
    assert len(oracle) == len(spacy) == 2
    assert all(r["functional"] for r in oracle) and not any(r["functional"] for r in spacy)
    assert all((r["subject_id"], r["relation_id"], r["object_id"]) == (-1, -1, -1) for r in spacy)
    assert all((r["subject_id"], r["relation_id"], r["object_id"]) == (3, 7, 5) for r in oracle)
    for r in rows:
        ids = tokens.filter(pa.compute.equal(tokens["doc_id"], r["doc_id"]))["tokens"][0].as_py()
        # the statement is exactly the tokens before token_pos
        city = "Orvane" + r["doc_id"][1:].replace("_", "")
        assert tok.decode(ids[1:r["token_pos"]]) == STATEMENT.replace("Orvane", city)
        assert tok.decode(r["subject_tokens"]) == " Mara Quell"
        # a name in memory has the ids it has mid-sentence in the text
        subject, n = r["subject_tokens"], len(r["subject_tokens"])
        assert any(ids[i:i + n] == subject for i in range(len(ids)))

    con = connect(run, read_only=True)
    assert con.execute("SELECT count(*) FROM tokens_shards").fetchall() == [(6,)]
    assert con.execute("SELECT count(DISTINCT source) FROM memory_shards").fetchall() == [(2,)]
    con.close()


def test_window_memory_is_what_each_window_saw(tmp_path, tok):
    """The window_memory view answers "what did window k of document d see?" with the slots the
    training code builds (for every M up to the recorded depth) and the window's recall spans."""
    run = make_run(tmp_path, tok, shards=1)
    text = _doc(0, 1)["text"]
    first_filler_end = text.index("sky.") + 4
    con = connect(run)
    # a later statement replaces the functional value; a negation is kept with its polarity
    con.execute("INSERT INTO triplets VALUES (100, 'd0_1', 0, 'Mara Quell', 'lives in', 'Tessaly', "
                "false, 0, ?, NULL, 'oracle'), (101, 'd0_1', 0, 'Ilsa Brandt', 'works at', 'Orvane', "
                "true, 0, ?, NULL, 'oracle')", [first_filler_end, first_filler_end])
    con.execute("INSERT INTO canonical_ids VALUES (100, 3, 7, 9)")
    con.close()
    cfg = parse_config(CONFIG)
    run_shards(cfg, run)

    con = connect(run, read_only=True)
    query = ("SELECT subject, relation, object, negated, age FROM window_memory WHERE doc_id = ? "
             "AND window_index = ? AND source = ? AND rank <= ? ORDER BY rank DESC")
    checked_slots = 0
    for source in ("oracle", "spacy"):
        for doc in load_training_documents(run, "train", source):
            for k, start in enumerate(window_starts(len(doc.tokens), cfg.model.sequence_len)):
                for slots in (1, 2, cfg.model.memory_slots):
                    expected = [(tok.decode(list(s.subject)).strip(), tok.decode(list(s.relation)).strip(),
                                 tok.decode(list(s.object)).strip(), s.negated, s.age)
                                for s in build_window_memory(doc.memory, start, slots)]
                    assert con.execute(query, [doc.doc_id, k, source, slots]).fetchall() == expected
                    checked_slots += len(expected)
    assert checked_slots > 0
    later = con.execute("SELECT window_index, rank, subject, relation, object, negated FROM window_memory "
                        "WHERE doc_id = 'd0_1' AND source = 'oracle' ORDER BY window_index DESC, rank "
                        "LIMIT 2").fetchall()
    assert [r[1:] for r in later] == [(1, "Ilsa Brandt", "works at", "Orvane", True),
                                      (2, "Mara Quell", "lives in", "Tessaly", False)]
    # the first window has nothing evicted: one row, no slot
    assert con.execute("SELECT rank, subject FROM window_memory WHERE doc_id = 'd0_1' "
                       "AND window_index = 0 AND source = 'oracle'").fetchall() == [(None, None)]
    recalled = con.execute("SELECT window_index, recall FROM window_memory WHERE doc_id = 'd0_1' "
                           "AND source = 'spacy' AND len(recall) > 0").fetchall()
    assert recalled == [(recalled[0][0], ["Orvane01"])]
    con.close()


def test_a_canonical_relation_is_spelt_by_its_most_frequent_surface(tmp_path, tok):
    run = make_run(tmp_path, tok, shards=1)  # 2 docs: oracle and spaCy "lives in" each, id 7 oracle only
    con = connect(run)
    con.execute("INSERT INTO canonical_ids SELECT triplet_id, 3, 7, 5 FROM triplets "
                "WHERE extractor = 'spacy'")
    con.execute("UPDATE triplets SET relation = 'lived in' WHERE extractor = 'spacy' AND doc_id = 'd0_0'")
    con.execute("INSERT INTO triplets SELECT 99, doc_id, shard, subject, 'moved to', object, negated, "
                "char_start, char_end, confidence, 'vllm:x' "
                "FROM triplets WHERE triplet_id = 0")  # no canonical ids: keeps its own surface
    con.close()
    run_shards(parse_config(CONFIG), run)
    spelt = {(r["source"], r["doc_id"]): tok.decode(r["relation_tokens"])
             for r in pq.read_table(shard_path(run, "memory", 0)).to_pylist()}
    # 'lives in' 3 times, 'lived in' once: both spelt ' lives in', not the lemma 'live in'
    assert spelt.pop(("vllm:x", "d0_0")) == " moved to"
    assert len(spelt) == 4 and set(spelt.values()) == {" lives in"}


def test_rerun_resumes_only_missing_shards(tmp_path, tok):
    run = make_run(tmp_path, tok)
    cfg = parse_config(CONFIG)
    first = run_shards(cfg, run)
    kept = {k: shard_path(run, "tokens", k).stat().st_mtime_ns for k in (0, 2)}
    shard_path(run, "tokens", 1).unlink()  # killed between the memory and the tokens write
    second = run_shards(cfg, run)
    assert second["counters"]["shards_resumed"] == 2
    assert second["rows"] == first["rows"]
    assert {k: shard_path(run, "tokens", k).stat().st_mtime_ns for k in (0, 2)} == kept
    assert pq.read_table(shard_path(run, "tokens", 1)).num_rows == 2
    third = run_shards(cfg.model_copy(update={"shards": cfg.shards.model_copy(update={"workers": 1})}), run)
    assert third["counters"]["shards_resumed"] == 3 and third["rows"] == first["rows"]


def test_changed_inputs_rebuild_their_shards_only(tmp_path, tok):
    run = make_run(tmp_path, tok)
    cfg = parse_config({**CONFIG, "shards": {"workers": 1}})
    first = run_shards(cfg, run)
    mtimes = lambda: {k: shard_path(run, "memory", k).stat().st_mtime_ns for k in range(3)}  # noqa: E731
    before = mtimes()
    con = connect(run)  # canonicalize reran and a triplet of shard 2 changed
    con.execute("INSERT INTO canonical_ids SELECT triplet_id, 3, 7, 99 FROM triplets "
                "WHERE shard = 2 AND extractor = 'spacy'")
    con.close()
    path = shard_path(run, "tokens", 0)
    path.write_bytes(path.read_bytes()[:100])  # a cut-off file
    write_parquet_atomically(pa.Table.from_pylist([_doc(9, 0)]), shard_path(run, "docs", 9))
    write_parquet_atomically(pq.read_table(shard_path(run, "tokens", 1)), shard_path(run, "tokens", 7))

    second = run_shards(cfg, run)
    assert second["counters"]["shards_resumed"] == 1  # shard 1 only
    after = mtimes()
    assert after[1] == before[1] and after[0] != before[0] and after[2] != before[2]
    memory = pq.read_table(shard_path(run, "memory", 2)).to_pylist()
    assert {r["object_id"] for r in memory if r["source"] == "spacy"} == {99}
    assert not shard_path(run, "tokens", 7).exists()  # no docs shard 7: removed
    assert second["rows"]["documents"] == first["rows"]["documents"] + 1  # docs shard 9
    assert pq.read_table(shard_path(run, "memory", 9)).num_rows == 0  # no triplets there


def test_real_text_recall_heuristic(tok):
    reach = 12  # T + M
    (doc,) = tokenize_docs(tok, [DOC_TEXT])
    spans = real_text_recall_spans(doc, DOC_TEXT, [("Orvane", len(STATEMENT))], reach, min_chars=3)
    # "returned to Orvane" is far from the statement; "Orvane was calm" follows it closely
    (span,) = spans
    assert tok.decode(doc.tokens[span.start:span.end]) == " Orvane"
    second = DOC_TEXT.rindex("Orvane")
    assert span.start < char_span_tokens(doc, second, second + 6)[0]
    assert span.start - span.stated_pos >= reach
    # too short an object, or a reach longer than the document: no recall
    assert real_text_recall_spans(doc, DOC_TEXT, [("Orvane", len(STATEMENT))], reach, 7) == []
    assert real_text_recall_spans(doc, DOC_TEXT, [("Orvane", len(STATEMENT))], 10_000, 3) == []
    # an object stated only late in the document has nothing to recall
    assert real_text_recall_spans(doc, DOC_TEXT, [("Orvane", len(DOC_TEXT))], reach, 3) == []
    # whole words only: "Orvan" never matches inside "Orvane"
    assert real_text_recall_spans(doc, DOC_TEXT, [("Orvan", len(STATEMENT))], reach, 3) == []


def test_real_text_run_uses_heuristic_without_recall_shards(tmp_path, tok):
    run = make_run(tmp_path, tok, shards=1, gold_recall=False)
    result = run_shards(parse_config(CONFIG), run)
    rows = pq.read_table(shard_path(run, "tokens", 0)).to_pylist()
    assert result["rows"]["recall_spans"] == 2
    for row in rows:
        (span,) = row["recall_spans"]
        assert tok.decode(row["tokens"][span["start"]:span["end"]]).startswith(" Orvane")


def test_missing_inputs_say_which_stage_to_run(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="run the ingest stage"):
        run_shards(parse_config(CONFIG), tmp_path / "empty")
    run = make_run(tmp_path, tok, shards=1)
    (run / TOKENIZER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="run the tokenizer stage"):
        run_shards(parse_config(CONFIG), run)


def test_a_cut_off_docs_shard_is_one_clear_error(tmp_path, tok):
    run = make_run(tmp_path, tok, shards=2)
    path = shard_path(run, "docs", 1)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"shard_00001.parquet: unreadable docs shard .*rerun the ingest"):
        run_shards(parse_config({**CONFIG, "shards": {"workers": 1}}), run)


def test_the_shards_key_covers_the_window_but_not_m_up_to_the_recorded_depth():
    from configs.schema import stage_section
    from warehouse.contracts import WINDOW_MEMORY_DEPTH

    def section(**model):
        return stage_section(parse_config({**CONFIG, "model": {**CONFIG["model"], **model}}), "shards")
    # a sweep over M shares one shards stage: the windows shards hold the slots of every M
    assert section(memory_slots=4) == section(memory_slots=WINDOW_MEMORY_DEPTH)
    assert section(memory_slots=WINDOW_MEMORY_DEPTH + 1) != section(memory_slots=4)
    assert section(sequence_len=16) != section(sequence_len=8)  # other windows
