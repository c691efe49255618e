"""Extraction quality against gold: precision, recall and F1, strict and relaxed, plus speed.

    .venv/bin/python -m extraction.score --backend spacy --dataset synthetic --limit 200
    .venv/bin/python -m extraction.score --backend spacy --dataset conll04 --json
    .venv/bin/python -m extraction.score --backend spacy --dataset redocred [--path FILE]

Datasets: `synthetic` (corpora.synthetic's documents and complete gold; seed 0, `--limit`
documents, default 200), `conll04` (sentences, default data/conll04_dev.json) and `redocred`
(Wikipedia introductions, default data/redocred_dev.json, relation names from the
docred_rel_info.json beside it when there is one); default paths are under the repository root
and written by `python -m corpora.fetch conll04|redocred`, a given --path is relative to the
current directory.

Matching, per document, after `extraction.normalize`:
- strict: subject, relation and object all equal: `normalize_entity` on subject and object,
  `canonical_relation` (lemmas + the synonym table) on the relation, and the same polarity;
- relaxed: subject and object equal, relation and polarity ignored;
- no head-word or substring leniency: "Marie Curie" does not match "Curie". The one allowance is
  Re-DocRED's own alias lists: any mention name of a gold entity ("Schneider" for "Willi
  Schneider") counts as that entity, as the data set defines.
- synthetic and CoNLL04 gold is per sentence, so a prediction must also come from an overlapping
  sentence (a fact restated later does not excuse a wrong triplet here); Re-DocRED relations are
  document-level, so there each side is the document's set of distinct keys. Repeats of one key
  within one sentence count once on both sides.
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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable

from configs.schema import ExtractConfig, SyntheticSource
from corpora.fetch import CONLL04_DEV, DATA_DIR, REDOCRED_DEV, REL_INFO
from extraction.base import Document, Triplet
from extraction.normalize import canonical_relation, normalize_entity
from extraction.registry import BACKENDS, make_backend

DEFAULT_PATHS = {"conll04": DATA_DIR / CONLL04_DEV, "redocred": DATA_DIR / REDOCRED_DEV}
DEFAULT_SYNTHETIC_DOCS = 200


class DatasetError(ValueError):
    """A data file that is missing or not in its format."""


@dataclass
class Dataset:
    name: str
    docs: list[Document]
    per_sentence: bool  # gold is stated per sentence (match spans) or per document (sets)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)  # doc -> name -> entity key


# ---------------------------------------------------------------- data sets

def load_dataset(name: str, path: Path | None, limit: int | None) -> Dataset:
    if name == "synthetic":
        if path is not None:
            raise DatasetError("--path is for conll04 and redocred; the synthetic corpus is generated")
        from corpora.synthetic import generate_documents
        cfg = SyntheticSource(num_docs=limit or DEFAULT_SYNTHETIC_DOCS)
        docs = [Document(d.doc_id, d.text, d.gold) for d in generate_documents(cfg, seed=0)]
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
    return _load_redocred(path, limit)


def _load_redocred(path: Path, limit: int | None) -> Dataset:
    from configs.schema import RedocredSource
    from corpora.records import CorpusError
    from corpora.redocred import detokenize, redocred_records
    rel_info = path.with_name(REL_INFO)  # relation names, used when they sit beside the file
    rel_info = rel_info if rel_info.is_file() else None
    try:
        records = list(redocred_records(RedocredSource(path=path, rel_info=rel_info, limit=limit)))
        raw = json.loads(path.read_text(encoding="utf-8"))[:limit]
        aliases = {rec.doc_id: _redocred_aliases(doc, detokenize) for rec, doc in zip(records, raw)}
    except CorpusError as err:
        raise DatasetError(str(err)) from None
    except (KeyError, IndexError, TypeError) as err:
        raise DatasetError(f"{path}: not in DocRED format ({type(err).__name__}: {err})") from None
    docs = [Document(r.doc_id, str(r.text), r.gold or []) for r in records]
    return Dataset("redocred", docs, per_sentence=False, aliases=aliases)


def _redocred_aliases(doc: dict[str, Any], detokenize) -> dict[str, str]:
    """Every mention surface (as in the text) and mention name of an entity -> 'e<index>'."""
    text, spans = detokenize(doc["sents"])
    out: dict[str, str] = {}
    for k, mentions in enumerate(doc["vertexSet"]):
        for m in mentions:
            sent = spans[m["sent_id"]]
            surface = text[sent[m["pos"][0]][0]:sent[m["pos"][1] - 1][1]]
            for s in (surface, m["name"]):
                out.setdefault(normalize_entity(s), f"e{k}")
    return out


# ---------------------------------------------------------------- matching

def _keys(t: Triplet, aliases: dict[str, str]) -> tuple[Hashable, Hashable]:
    s, o = normalize_entity(t.subject), normalize_entity(t.object)
    s, o = aliases.get(s, s), aliases.get(o, o)
    return (s, canonical_relation(t.relation), o, t.negated), (s, o)


def _count_matches(pred: set[tuple[Hashable, int, int]], gold: set[tuple[Hashable, int, int]],
                   per_sentence: bool) -> int:
    """Gold items matched by a prediction with the same key (and an overlapping span)."""
    if not per_sentence:
        return len({k for k, _, _ in pred} & {k for k, _, _ in gold})
    by_key: dict[Hashable, list[tuple[int, int]]] = defaultdict(list)
    for k, a, b in pred:
        by_key[k].append((a, b))
    matched = 0
    for k, a, b in gold:
        spans = by_key.get(k, [])
        hit = next((i for i, (c, d) in enumerate(spans) if c < b and a < d), None)
        if hit is not None:
            spans.pop(hit)
            matched += 1
    return matched


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _items(ts: list[Triplet], aliases: dict[str, str], key_index: int,
           per_sentence: bool) -> set[tuple[Hashable, int, int]]:
    """Match items: the strict (0) or relaxed (1) key, with the sentence span when per sentence."""
    if not per_sentence:  # document-level: one item per distinct key
        return {(_keys(t, aliases)[key_index], 0, 0) for t in ts}
    return {(_keys(t, aliases)[key_index], t.char_start, t.char_end) for t in ts}


def score(triplets: list[Triplet], data: Dataset) -> dict[str, float | int]:
    """Strict and relaxed precision/recall/F1 of `triplets` against the data set's gold."""
    pred_by_doc: dict[str, list[Triplet]] = defaultdict(list)
    for t in triplets:
        pred_by_doc[t.doc_id].append(t)
    counts = {"strict": [0, 0, 0], "relaxed": [0, 0, 0]}  # matched, predicted, gold
    for doc in data.docs:
        aliases = data.aliases.get(doc.doc_id, {})
        for i, kind in enumerate(("strict", "relaxed")):
            pred = _items(pred_by_doc.get(doc.doc_id, []), aliases, i, data.per_sentence)
            gold = _items(doc.gold, aliases, i, data.per_sentence)
            c = counts[kind]
            c[0] += _count_matches(pred, gold, data.per_sentence)
            c[1] += len(pred)
            c[2] += len(gold)
    out: dict[str, float | int] = {}
    for kind, (tp, n_pred, n_gold) in counts.items():
        p, r, f = _prf(tp, n_pred, n_gold)
        out.update({f"{kind}_p": p, f"{kind}_r": r, f"{kind}_f1": f, f"{kind}_matched": tp})
    out["predicted"], out["gold"] = counts["strict"][1], counts["strict"][2]
    return out


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
