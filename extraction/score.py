"""Benchmark a backend against gold: precision, recall and F1, strict and relaxed, plus speed.

    .venv/bin/python -m extraction.score --backend spacy --dataset synthetic --limit 200
    .venv/bin/python -m extraction.score --backend spacy --dataset conll04 --json
    .venv/bin/python -m extraction.score --backend spacy --dataset redocred [--path FILE]

Datasets: `synthetic` (corpora.synthetic's documents and complete gold; seed 0, `--limit`
documents, default 200), `conll04` (sentences, default data/conll04_dev.json) and `redocred`
(Wikipedia introductions, default data/redocred_dev.json, relation names from the
docred_rel_info.json beside it when there is one); default paths are under the repository root
and written by `python -m corpora.fetch conll04|redocred`, a given --path is relative to the
current directory.

Matching (strict and relaxed, per sentence or per document) is extraction/quality.py's.
CoNLL04 and Re-DocRED relations are typed labels (Work_For, "located in the administrative
territorial entity") that an open extractor never writes, so strict F1 there is ~0 by design and
relaxed F1 is the figure to compare.

Throughput: whitespace-separated words of the documents per second of `backend.extract` (model
loading excluded), so every backend is measured in the same unit; `tokens_per_cpu_s` divides by
this process's CPU time instead, the per-core figure on a shared machine (spaCy with n_process=1;
worker processes' CPU time is not counted). With --json the last line is
one JSON object (strict_p, strict_r, strict_f1, relaxed_p, relaxed_r, relaxed_f1, tokens_per_s,
docs, words, seconds, docs_with_triplets, errors, ...). A missing or malformed data file: one line,
exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from configs.schema import ExtractConfig
from corpora.fetch import CONLL04_DEV, DATA_DIR, REDOCRED_DEV, REL_INFO
from corpora.synthetic import SyntheticSource
from extraction.quality import Dataset, DatasetError, load_redocred, score
from extraction.registry import BACKENDS, make_backend

DEFAULT_PATHS = {"conll04": DATA_DIR / CONLL04_DEV, "redocred": DATA_DIR / REDOCRED_DEV}
DEFAULT_SYNTHETIC_DOCS = 200


# ---------------------------------------------------------------- data sets

def load_dataset(name: str, path: Path | None, limit: int | None) -> Dataset:
    if name == "synthetic":
        if path is not None:
            raise DatasetError("--path is for conll04 and redocred; the synthetic corpus is generated")
        from corpora.synthetic import generate_documents
        cfg = SyntheticSource(num_docs=limit or DEFAULT_SYNTHETIC_DOCS)
        docs = list(generate_documents(cfg, seed=0))
        return Dataset(name, docs, per_sentence=True)
    path = Path(path) if path is not None else DEFAULT_PATHS[name]
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (`python -m corpora.fetch {name}` downloads "
                           f"it into data/; or pass --path to a {name} JSON file)")
    if name == "conll04":
        from corpora.conll04 import Conll04Error, load_conll04
        try:
            return Dataset(name, load_conll04(path, limit), per_sentence=True)
        except Conll04Error as err:
            raise DatasetError(str(err)) from None
    rel_info = path.with_name(REL_INFO)  # relation names, used when they sit beside the file
    return load_redocred(path, limit, rel_info if rel_info.is_file() else None)


# ---------------------------------------------------------------- CLI

def evaluate(backend_name: str, data: Dataset, cfg: ExtractConfig | None = None) -> dict[str, Any]:
    """Run a backend over the data set and score it (the CLI's work, as a function)."""
    backend = make_backend(backend_name, cfg or ExtractConfig())
    started, cpu_started = time.perf_counter(), time.process_time()
    triplets, errors = backend.extract(data.docs)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    words = sum(len(d.text.split()) for d in data.docs)
    with_triplets = len({t.doc_id for t in triplets})
    return {
        "backend": backend_name, "dataset": data.name, **score(triplets, data),
        "tokens_per_s": words / seconds if seconds > 0 else 0.0, "token_unit": "whitespace words",
        "tokens_per_cpu_s": words / cpu_seconds if cpu_seconds > 0 else 0.0,
        "docs": len(data.docs), "words": words, "seconds": seconds,
        "docs_with_triplets": with_triplets / len(data.docs) if data.docs else 0.0,
        "errors": len(errors),
    }


def format_table(r: dict[str, Any]) -> str:
    lines = [
        f"extraction quality: backend {r['backend']} on {r['dataset']} "
        f"({r['docs']} docs, {r['words']} words, {r['predicted']} predicted / {r['gold']} gold triplets)",
        f"{'':9}{'precision':>10}{'recall':>9}{'F1':>8}",
    ]
    for kind in ("strict", "relaxed"):
        lines.append(f"{kind:9}{r[f'{kind}_p']:>10.3f}{r[f'{kind}_r']:>9.3f}{r[f'{kind}_f1']:>8.3f}")
    lines.append(f"throughput: {r['tokens_per_s']:,.0f} {r['token_unit']}/s wall "
                 f"({r['seconds']:.2f} s), {r['tokens_per_cpu_s']:,.0f}/s of this process's CPU "
                 f"time; docs with >= 1 triplet: {r['docs_with_triplets']:.1%}; "
                 f"extraction errors: {r['errors']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True, choices=sorted(set(BACKENDS) | {"vllm"}))
    parser.add_argument("--dataset", required=True, choices=["synthetic", "conll04", "redocred"])
    parser.add_argument("--path", type=Path, default=None, help="data file (conll04, redocred)")
    parser.add_argument("--limit", type=int, default=None, help="first N documents")
    parser.add_argument("--json", action="store_true", help="last line: the figures as JSON")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    try:
        data = load_dataset(args.dataset, args.path, args.limit)
        result = evaluate(args.backend, data)
    except (DatasetError, ValueError, RuntimeError, ImportError) as err:
        print(f"extraction.score: {err}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
