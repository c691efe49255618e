"""How often a corpus gives memory something to hold: windows with evicted context, per T and length cut.

    python -m research.window_stats --parquet fineweb/*.parquet --windows 256,512,1024 \\
        --min-chars 0,2000,4000 [--tokenizer runs/fineweb-d12/tokenizer/tokenizer.json]

For every (window T, `ingest.min_chars`) pair: the documents and tokens that survive ingest's
length cut (corpora/ingest.py's own `clean_documents`) and, over their training windows, the share
with context evicted before them and the evicted tokens per window (model/dataloader.py's
`evicted_context`, the figures the shards manifest records). Tokens come from `--tokenizer`, or a
byte-level BPE of `--vocab-size` trained on the sample itself. Prints a table and, with --json,
writes every figure.

Without FineWeb on disk, `collect` writes a stand-in parquet of the documentation files on this
machine (Markdown and reStructuredText prose, one document per file, deduplicated by content):

    python -m research.window_stats collect --out /tmp/local_docs.parquet --roots / --min-bytes 512
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpora.ingest import clean_documents
from model.dataloader import evicted_context
from model.tokenizer import TextTokenizer, train_tokenizer
from warehouse.contracts import Document
from warehouse.shard_io import write_parquet_atomically, write_text_atomically

DOC_SUFFIXES = (".md", ".rst")


def read_documents(paths: list[Path], text_column: str, limit: int | None) -> list[Document]:
    docs: list[Document] = []
    for path in paths:
        for i, text in enumerate(pq.read_table(path, columns=[text_column]).column(text_column).to_pylist()):
            docs.append(Document(f"{path.name}:{i}", text, "parquet"))
            if limit is not None and len(docs) >= limit:
                return docs
    return docs


def document_tokens(tok: TextTokenizer, texts: list[str]) -> np.ndarray:
    """Tokens per document as the shards stage counts them: `<|bos|>` then the text's tokens."""
    return np.array([1 + len(ids) for ids in tok.encode_batch(texts)], dtype=np.int64)


def table_rows(docs: list[Document], n_tokens: np.ndarray, windows: list[int],
               min_chars: list[int]) -> list[dict]:
    rows = []
    index = {d.doc_id: i for i, d in enumerate(docs)}
    for cut in min_chars:
        counters: Counter[str] = Counter()
        kept = np.array([index[d.doc_id] for d in clean_documents(docs, counters, cut)], dtype=np.int64)
        lengths = n_tokens[kept] if len(kept) else np.zeros(0, dtype=np.int64)
        for window in windows:
            rows.append({"window_len": window, "min_chars": cut,
                         "docs_kept": round(len(kept) / len(docs), 4),
                         "tokens_kept": round(float(lengths.sum() / n_tokens.sum()), 4),
                         **evicted_context(lengths, window)})
    return rows


def print_table(rows: list[dict], n_docs: int, source: str) -> None:
    print(f"{n_docs:,} documents from {source}")
    print(f"{'T':>6} {'min_chars':>9} {'docs kept':>9} {'tokens kept':>11} {'docs > T':>10} "
          f"{'windows':>9} {'evicted share':>13} {'evicted mean':>12} {'median':>7}")
    for r in rows:
        print(f"{r['window_len']:>6} {r['min_chars']:>9} {r['docs_kept']:>9.3f} {r['tokens_kept']:>11.3f} "
              f"{r['share_documents_with_evicted']:>10.3f} {r['windows']:>9,} {r['share_with_evicted']:>13.3f} {r['evicted_tokens_mean']:>12,.0f} "
              f"{r['evicted_tokens_median']:>7,.0f}")


def local_documents(roots: list[Path], min_bytes: int) -> Iterator[tuple[str, str]]:
    """(path, text) of every documentation file under `roots`, first copy of each content."""
    seen: set[str] = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("proc", "sys", "dev"))
            for name in sorted(files):
                path = Path(folder) / name
                if path.suffix not in DOC_SUFFIXES or path.is_symlink():
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                digest = hashlib.sha256(data).hexdigest()
                if len(data) < min_bytes or digest in seen:
                    continue
                seen.add(digest)
                yield str(path), data.decode("utf-8", errors="replace")


def collect(out: Path, roots: list[Path], min_bytes: int) -> int:
    ids, texts = [], []
    for path, text in local_documents(roots, min_bytes):
        ids.append(path)
        texts.append(text)
    write_parquet_atomically(pa.table({"id": ids, "text": texts}), out)
    return len(ids)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    gather = sub.add_parser("collect", help="write a stand-in parquet of local documentation files")
    gather.add_argument("--out", type=Path, required=True)
    gather.add_argument("--roots", type=Path, nargs="+", default=[Path("/")])
    gather.add_argument("--min-bytes", type=int, default=512)
    parser.add_argument("--parquet", type=Path, nargs="+")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--windows", type=_ints, default=[256, 512, 1024])
    parser.add_argument("--min-chars", type=_ints, default=[0, 2000, 4000])
    parser.add_argument("--tokenizer", type=Path, help="a run's tokenizer.json (default: train one)")
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--limit", type=int, help="read at most this many documents")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if args.command == "collect":
        print(f"{collect(args.out, args.roots, args.min_bytes):,} documents -> {args.out}")
        return
    if not args.parquet:
        parser.error("--parquet is required")
    docs = read_documents(args.parquet, args.text_column, args.limit)
    if not docs:
        raise SystemExit(f"error: {args.parquet[0]}: no documents")
    texts = [d.text if isinstance(d.text, str) else "" for d in docs]
    tok = (TextTokenizer.load(args.tokenizer) if args.tokenizer
           else train_tokenizer(texts, args.vocab_size))
    rows = table_rows(docs, document_tokens(tok, texts), args.windows, args.min_chars)
    source = ", ".join(str(p) for p in args.parquet)
    print_table(rows, len(docs), source)
    if args.json:
        write_text_atomically(json.dumps({"source": source, "documents": len(docs),
                                          "tokenizer": str(args.tokenizer or f"BPE {tok.vocab_size} trained on the sample"),
                                          "rows": rows}, indent=2) + "\n", args.json)


if __name__ == "__main__":
    main()
