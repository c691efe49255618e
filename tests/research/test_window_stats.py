"""research/window_stats.py: the evicted-context table of a parquet corpus, and its stand-in corpus."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.dataloader import evicted_context
from model.tokenizer import train_tokenizer
from research.window_stats import collect, document_tokens, main

WORDS = "the river town kept a ledger of every boat that passed under its bridge".split()


def text_of(n_words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, n_words)) + "."


def test_table_applies_ingest_length_cut_and_counts_windows_like_the_loader(tmp_path, capsys):
    texts = [text_of(n, i) for i, n in enumerate([5, 40, 120, 400, 900])]
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": texts}), corpus)
    tok = train_tokenizer(texts, 300)
    (tmp_path / "tok").mkdir()
    tok_file = tok.save(tmp_path / "tok" / "tokenizer.json")
    out = tmp_path / "stats.json"
    main(["--parquet", str(corpus), "--text-column", "body", "--windows", "32,64",
          "--min-chars", f"0,{len(texts[2])}", "--tokenizer", str(tok_file), "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    n = document_tokens(tok, texts)
    assert [(r["window_len"], r["min_chars"]) for r in rows] == [
        (32, 0), (64, 0), (32, len(texts[2])), (64, len(texts[2]))]
    for r in rows:
        kept = n[[len(t) >= r["min_chars"] for t in texts]]
        assert r["docs_kept"] == round(len(kept) / 5, 4)
        assert r["tokens_kept"] == round(float(kept.sum() / n.sum()), 4)
        assert {k: r[k] for k in evicted_context(kept, 32)} == evicted_context(kept, r["window_len"])
    assert rows[2]["docs_kept"] == 0.6 and rows[2]["share_with_evicted"] > rows[0]["share_with_evicted"]
    assert "5 documents from" in capsys.readouterr().out


def test_collect_keeps_one_copy_of_each_documentation_file_above_the_size(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "guide.md").write_text("x" * 600)
    (root / "copy.rst").write_text("x" * 600)  # same content: kept once
    (root / "short.md").write_text("tiny")
    (root / "code.py").write_text("y" * 600)
    out = tmp_path / "docs.parquet"
    assert collect(out, [root], min_bytes=512) == 1
    assert pq.read_table(out).column("id").to_pylist() == [str(root / "copy.rst")]  # found first
