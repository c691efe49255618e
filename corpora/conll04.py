"""CoNLL04 sentences with their gold relations, as `Document`s for extraction scoring.

Input: a JSON list (data/conll04_dev.json from `python -m corpora.fetch conll04`, or
tests/fixtures/conll04_sample.json): each item has `tokens`, BILOU
entity `tags` ("B-Peop", "I-Peop", "L-Peop", "U-Loc", "O") and `relations` [{head, tail, type}]
whose head/tail index the entity spans in tag order. The text is the tokens detokenized the way
corpora.redocred does it (no space before "," or "'s"; every token keeps its char span, so entity
mentions map exactly onto the text); each relation becomes one gold triplet (head entity, type
such as "Work_For", tail entity) spanning the sentence.

    .venv/bin/python -m corpora.conll04 data/conll04_dev.json --limit 2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from corpora.redocred import detokenize
from warehouse.contracts import Document, Triplet


class Conll04Error(ValueError):
    """The file is not CoNLL04 JSON."""


def entity_spans(tags: list[str]) -> list[tuple[int, int]]:
    """[start, end) token spans of the BILOU-tagged entities, in order."""
    spans, start = [], None
    for i, tag in enumerate(tags):
        prefix = tag.split("-", 1)[0]
        if prefix == "U":
            spans.append((i, i + 1))
        elif prefix == "B":
            start = i
        elif prefix == "L" and start is not None:
            spans.append((start, i + 1))
            start = None
    return spans


def sentence_document(item: dict[str, Any], doc_id: str) -> Document:
    text, (chars,) = detokenize([item["tokens"]])
    spans = entity_spans(item["tags"])

    def surface(k: int) -> str:
        a, b = spans[k]
        return text[chars[a][0]:chars[b - 1][1]]

    gold = [Triplet(doc_id, surface(r["head"]), r["type"], surface(r["tail"]), False, 0,
                    len(text), None, "oracle") for r in item["relations"]]
    return Document(doc_id, text, "conll04", gold=gold)


def load_conll04(path: Path, limit: int | None = None) -> list[Document]:
    """The sentences of a CoNLL04 JSON file (ids `conll04-<orig_id or index>`)."""
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Conll04Error(f"{path}: cannot read CoNLL04 JSON ({err})") from None
    if not isinstance(items, list):
        raise Conll04Error(f"{path}: expected a JSON list of sentences, got {type(items).__name__}")
    docs = []
    for i, item in enumerate(items[:limit]):
        try:
            docs.append(sentence_document(item, f"conll04-{item.get('orig_id', i)}"))
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise Conll04Error(f"{path}: sentence {i} is not in CoNLL04 format "
                               f"({type(err).__name__}: {err})") from None
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--limit", type=int, default=2)
    args = parser.parse_args()
    for doc in load_conll04(args.path, args.limit):
        print(f"=== {doc.doc_id}\n{doc.text}")
        for t in doc.gold:
            print(f"  ({t.subject} | {t.relation} | {t.object})")


if __name__ == "__main__":
    main()
