"""The byte-level BPE tokenizer: round trips, exact character offsets, bytes per token, training."""
from pathlib import Path

import pyarrow as pa
import pytest

from configs.schema import parse_config
from model.tokenizer import TOKENIZER_FILE, TextTokenizer, load_run_tokenizer, run_tokenizer, train_tokenizer
from warehouse.shard_io import shard_path, write_parquet_atomically

TEXTS = [
    "Mara Quell works at Tessaly Labs. She moved to Orvane in the spring.",
    "café Zürich — 東京\n\nnaïve résumé; emoji 😀 and tabs\tand   spaces",
    "Ωμέγα, Привет мир, مرحبا, नमस्ते, 한국어 — mixed scripts in one line.",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "a literal <|bos|> in the text stays text",
]


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    corpus = [f"{t} {i}" for i in range(20) for t in TEXTS]
    return train_tokenizer(corpus, vocab_size=400)


def test_round_trip_ascii_and_non_ascii(tok):
    for text in [*TEXTS, "", " ", "\n", "x", "never seen: ßŒ𝔘 ☃ 🜁"]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]


def test_merges_learned_and_vocab_in_range(tok):
    ids = tok.encode(TEXTS[0])
    assert len(ids) < len(TEXTS[0].encode())  # BPE merged something
    assert 256 < tok.vocab_size <= 400
    assert max(max(tok.encode(t)) for t in TEXTS) < tok.vocab_size


def test_offsets_are_exact_monotone_and_cover_the_text(tok):
    per_id = tok.token_bytes()
    for text, (ids, offsets) in zip(TEXTS, tok.encode_batch_with_offsets(TEXTS)):
        assert ids == tok.encode(text)
        assert len(offsets) == len(ids)
        assert "".join(text[a:b] for a, b in offsets) == text
        assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
        for (start, end), prev in zip(offsets, [(0, 0), *offsets]):
            assert start == prev[1] and start <= end  # contiguous and monotone
        # independent oracle: a token's end is the number of whole characters in the bytes so far
        data, byte_end = text.encode(), 0
        for i, (_, end) in zip(ids, offsets):
            byte_end += per_id[i]
            assert end == len(data[:byte_end].decode("utf-8", errors="ignore"))


def test_offsets_split_character_goes_to_token_with_its_last_byte(tok):
    text = "☃ 京"  # the snowman's three bytes never occur in training: three byte tokens
    ids, offsets = tok.encode_batch_with_offsets([text])[0]
    assert [tok.token_bytes()[i] for i in ids[:3]] == [1, 1, 1]
    assert offsets[:3] == [(0, 0), (0, 0), (0, 1)]
    # the first token starting at or after character 1 holds none of the snowman's bytes
    k = next(j for j, (start, _) in enumerate(offsets) if start >= 1)
    assert k == 3 and tok.decode(ids[k:]) == " 京"


def test_token_bytes_sum_to_utf8_length(tok):
    per_id = tok.token_bytes()
    assert len(per_id) == tok.vocab_size and per_id[tok.bos_id] == 0
    assert all(n >= 1 for i, n in enumerate(per_id) if i != tok.bos_id)
    for text in [*TEXTS, ""]:
        assert sum(per_id[i] for i in tok.encode(text)) == len(text.encode("utf-8"))


def test_bos_is_stable_and_never_produced_from_text(tok, tmp_path):
    assert tok.bos_id == 0
    assert tok.decode([tok.bos_id]) == "<|bos|>"
    for text in TEXTS:
        assert tok.bos_id not in tok.encode(text)
    assert tok.decode(tok.encode("<|bos|>")) == "<|bos|>"
    loaded = TextTokenizer.load(tok.save(tmp_path / "t.json"))
    assert loaded.bos_id == tok.bos_id and loaded.vocab_size == tok.vocab_size
    assert loaded.encode(TEXTS[1]) == tok.encode(TEXTS[1])
    assert loaded.token_bytes() == tok.token_bytes()


def test_training_is_deterministic(tmp_path):
    corpus = [f"{t} {i}" for i in range(10) for t in TEXTS]
    a = train_tokenizer(iter(corpus), vocab_size=350).save(tmp_path / "a.json")
    b = train_tokenizer(list(corpus), vocab_size=350).save(tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()


def test_load_reports_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the tokenizer stage"):
        TextTokenizer.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.0", "model": ', encoding="utf-8")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        TextTokenizer.load(bad)


def _write_docs(run_dir: Path, shards: list[list[tuple[str, str]]]) -> None:
    for k, rows in enumerate(shards):
        table = pa.table({
            "doc_id": [f"d{k}-{i}" for i in range(len(rows))],
            "text": [text for text, _ in rows],
            "source": ["synthetic"] * len(rows),
            "url": pa.array([None] * len(rows), pa.string()),
            "split": [split for _, split in rows],
        })
        write_parquet_atomically(table, shard_path(run_dir, "docs", k))


def test_run_tokenizer_trains_on_the_train_split_only(tmp_path):
    val_word = "Zqxvorpelunt"  # only in val docs, repeated so BPE would surely merge it
    train = [(f"{t} {i}", "train") for i in range(8) for t in TEXTS]
    val = [(f"{val_word} " * 50, "val")] * 10
    _write_docs(tmp_path, [train[:20] + val[:5], train[20:] + val[5:]])
    cfg = parse_config({"name": "t", "tokenizer": {"vocab_size": 400}})
    progress = []
    result = run_tokenizer(cfg, tmp_path, on_progress=lambda d, t: progress.append((d, t)))

    assert result["outputs"] == [str(TOKENIZER_FILE)]
    assert result["rows"]["train_docs"] == len(train)
    assert result["rows"]["train_chars"] == sum(len(t) for t, _ in train)
    assert progress == [(1, 2), (2, 2)]
    tok = load_run_tokenizer(tmp_path)
    assert result["rows"]["vocab_size"] == tok.vocab_size
    # nothing longer than a 2-byte fragment of the val-only word was learned
    assert len(tok.encode(val_word)) >= len(val_word) // 2
    assert len(tok.encode("Tessaly Labs")) <= 4


def test_run_tokenizer_caps_train_docs(tmp_path):
    rows = [(f"{t} {i}", "train") for i in range(4) for t in TEXTS]
    _write_docs(tmp_path, [rows] * 3)
    cfg = parse_config({"name": "t", "tokenizer": {"vocab_size": 300, "max_train_docs": 7}})
    progress = []
    result = run_tokenizer(cfg, tmp_path, on_progress=lambda d, t: progress.append((d, t)))
    assert result["rows"]["train_docs"] == 7
    assert result["rows"]["train_chars"] == sum(len(text) for text, _ in rows[:7])
    assert progress == [(3, 3)]
    assert (tmp_path / TOKENIZER_FILE).is_file()


def test_run_tokenizer_without_docs_or_train_split_fails_clearly(tmp_path):
    cfg = parse_config({"name": "t", "tokenizer": {"vocab_size": 300}})
    with pytest.raises(FileNotFoundError, match="run the ingest stage"):
        run_tokenizer(cfg, tmp_path)
    _write_docs(tmp_path, [[("only validation text", "val")]])
    with pytest.raises(ValueError, match="no train-split documents"):
        run_tokenizer(cfg, tmp_path)
    assert not (tmp_path / TOKENIZER_FILE).exists()


def test_run_tokenizer_names_a_broken_shard_and_keeps_the_old_tokenizer(tmp_path):
    _write_docs(tmp_path, [[(t, "train") for t in TEXTS]] * 2)
    cfg = parse_config({"name": "t", "tokenizer": {"vocab_size": 300}})
    run_tokenizer(cfg, tmp_path)
    saved = (tmp_path / TOKENIZER_FILE).read_bytes()
    broken = shard_path(tmp_path, "docs", 1)
    broken.write_bytes(broken.read_bytes()[:200])  # cut off mid-write
    with pytest.raises(ValueError, match="shard_00001.parquet: unreadable docs shard"):
        run_tokenizer(parse_config({"name": "t", "tokenizer": {"vocab_size": 280}}), tmp_path)
    assert (tmp_path / TOKENIZER_FILE).read_bytes() == saved
