"""Extraction quality against gold: matching extracted triplets to gold ones, strict and relaxed.

    from extraction.quality import Dataset, score
    figures = score(triplets, Dataset("synthetic", docs, per_sentence=True))

Matching, per document, after `extraction.normalize`:
- strict: subject, relation and object all equal: `normalize_entity` on subject and object,
  `canonical_relation` (lemmas + the synonym table) on the relation, and the same polarity;
- relaxed: subject and object equal, relation and polarity ignored;
- no head-word or substring leniency: "Marie Curie" does not match "Curie". The one allowance is
  Re-DocRED's own alias lists: any mention name of a gold entity ("Schneider" for "Willi
  Schneider") counts as that entity, as the data set defines (`load_redocred`).
- gold stated per sentence (synthetic, CoNLL04) needs a prediction from an overlapping sentence
  (a fact restated later does not excuse a wrong triplet); Re-DocRED relations are
  document-level, so there each side is the document's set of distinct keys. Repeats of one key
  within one sentence count once on both sides.

`python -m extraction.score` runs a backend over a benchmark and prints these figures; the
evaluate stage scores every extractor of a run against its oracle triplets the same way.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable

from corpora.common import CorpusError
from corpora.redocred import RedocredSource, detokenize, redocred_records
from extraction.normalize import canonical_relation, normalize_entity
from warehouse.contracts import Document, Triplet


class DatasetError(ValueError):
    """A data file that is missing or not in its format."""


@dataclass
class Dataset:
    name: str
    docs: list[Document]
    per_sentence: bool  # gold is stated per sentence (match spans) or per document (sets)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)  # doc -> name -> entity key


def load_redocred(path: Path, limit: int | None, rel_info: Path | None) -> Dataset:
    """A Re-DocRED file as a document-level Dataset with its mention aliases."""
    try:
        records = list(redocred_records(RedocredSource(path=path, rel_info=rel_info, limit=limit)))
        raw = json.loads(Path(path).read_text(encoding="utf-8"))[:limit]
        aliases = {rec.doc_id: _redocred_aliases(doc) for rec, doc in zip(records, raw)}
    except CorpusError as err:
        raise DatasetError(str(err)) from None
    except (KeyError, IndexError, TypeError) as err:
        raise DatasetError(f"{path}: not in DocRED format ({type(err).__name__}: {err})") from None
    return Dataset("redocred", records, per_sentence=False, aliases=aliases)


def _redocred_aliases(doc: dict[str, Any]) -> dict[str, str]:
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
        out.update({f"{kind}_p": p, f"{kind}_r": r, f"{kind}_f1": f, f"{kind}_matched": tp,
                    f"{kind}_predicted": n_pred, f"{kind}_gold": n_gold})
    out["predicted"], out["gold"] = counts["strict"][1], counts["strict"][2]
    return out


