"""Re-DocRED / DocRED documents (Wikipedia introductions) with their gold triplets.

Input: a DocRED-format JSON list (`title`, `sents` as token lists, `vertexSet` entity mentions,
`labels` {r, h, t, evidence}): Re-DocRED dev, fetched into data/ by `python -m corpora.fetch
redocred`, or tests/fixtures/redocred_dev_sample.json. Each document becomes
- text: the sentences detokenized (no space before "," "." ")" "'s", none after "(", hyphens and
  slashes attached, straight quotes paired) and joined by single spaces; every token keeps its
  character span, so entity mentions map exactly onto the text;
- doc_id: `redocred-<title, lower-cased ASCII, non-alphanumerics as '-'>`, with `-2`, `-3`... for
  repeated titles (stable: the file's order is fixed); url: the Wikipedia page of the title;
- gold: one oracle triplet per label. The relation is its name from `rel_info`
  (docred_rel_info.json: "P131" -> "located in the administrative territorial entity") or the
  P-id without it. Subject and object are the surfaces, as they appear in the text, of the head's
  and tail's mentions in the stating sentence: the first evidence sentence that mentions both, or
  else the mentions nearest to (and preferably before the end of) the evidence; labels without
  evidence (Re-DocRED has many) use the first mentions. The char span is that one sentence when
  an evidence sentence mentions both; else it runs from the first to the last sentence among the
  evidence and the chosen mentions' sentences, so the triplet enters memory only after everything
  that states it.
There are no gold recall spans (`recalls` is None): the shards stage uses its real-text heuristic.

    .venv/bin/python -m corpora.redocred data/redocred_dev.json --limit 1
"""
from __future__ import annotations

import argparse
import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterator

from pydantic import Field, field_validator

from configs.base import Section
from corpora.common import CorpusError
from warehouse.contracts import Document, Triplet


class RedocredSource(Section):
    """The `ingest.redocred` section: a Re-DocRED / DocRED JSON file."""
    path: Path
    rel_info: Path | None = None  # DocRED relation-id -> name table
    limit: int | None = Field(None, ge=1)

    @field_validator("path", "rel_info")
    @classmethod
    def _exists(cls, p: Path | None) -> Path | None:
        if p is not None and not p.is_file():
            raise ValueError(f"file not found: {p} (`python -m corpora.fetch redocred` downloads "
                             "the Re-DocRED files into data/)")
        return None if p is None else p.resolve()

_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "’s", "n't", "'m",
                    "'re", "'ve", "'ll", "'d", "-", "/", "”", "..."}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "#", "-", "/", "“"}


def detokenize(sents: list[list[str]]) -> tuple[str, list[list[tuple[int, int]]]]:
    """Text of tokenized sentences and each token's (char_start, char_end) in it."""
    out: list[str] = []
    length = 0
    spans: list[list[tuple[int, int]]] = []
    for sent in sents:
        sent_spans = []
        glue = not out  # no space at the very start
        quote_open = False
        for token in sent:
            token = token.strip()  # DocRED has a few whitespace-only tokens (no-break spaces)
            if not token:
                sent_spans.append((length, length))
                continue
            closing_quote = token == '"' and quote_open
            if not glue and token not in _NO_SPACE_BEFORE and not closing_quote:
                out.append(" ")
                length += 1
            out.append(token)
            sent_spans.append((length, length + len(token)))
            length += len(token)
            if token == '"':
                quote_open = not quote_open
            glue = token in _NO_SPACE_AFTER or (token == '"' and quote_open)
        spans.append(sent_spans)
    return "".join(out), spans


def title_doc_id(title: str, taken: set[str]) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    base = "redocred-" + (re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:80] or "untitled")
    doc_id, n = base, 1
    while doc_id in taken:
        n += 1
        doc_id = f"{base}-{n}"
    taken.add(doc_id)
    return doc_id


def _pick_mention(mentions: list[dict[str, Any]], evidence: list[int]) -> dict[str, Any]:
    if not evidence:
        return mentions[0]
    inside = [m for m in mentions if m["sent_id"] in evidence]
    if inside:
        return inside[0]
    last = max(evidence)
    # the nearest mention, preferring those before the last evidence sentence
    return min(mentions, key=lambda m: (m["sent_id"] > last, abs(m["sent_id"] - last)))


def gold_triplets(doc: dict[str, Any], doc_id: str, text: str,
                  spans: list[list[tuple[int, int]]], rel_names: dict[str, str]) -> list[Triplet]:
    def surface(m: dict[str, Any]) -> str:
        sent = spans[m["sent_id"]]
        return text[sent[m["pos"][0]][0]:sent[m["pos"][1] - 1][1]]

    sent_start = [s[0][0] for s in spans]
    sent_end = [s[-1][1] for s in spans]
    gold = []
    for label in doc["labels"]:
        heads, tails = doc["vertexSet"][label["h"]], doc["vertexSet"][label["t"]]
        evidence = sorted(label.get("evidence") or [])
        both = [s for s in evidence if any(m["sent_id"] == s for m in heads)
                and any(m["sent_id"] == s for m in tails)]
        focus = both[:1] or evidence
        h, t = _pick_mention(heads, focus), _pick_mention(tails, focus)
        sents = focus + [h["sent_id"], t["sent_id"]]
        gold.append(Triplet(doc_id, surface(h), rel_names.get(label["r"], label["r"]), surface(t),
                            False, sent_start[min(sents)], sent_end[max(sents)], None, "oracle"))
    return gold


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorpusError(f"{path}: cannot read the {what} ({err})") from None


def redocred_records(cfg: RedocredSource) -> Iterator[Document]:
    docs = _load_json(cfg.path, "Re-DocRED/DocRED JSON")
    rel_names = _load_json(cfg.rel_info, "relation names") if cfg.rel_info else {}
    if not isinstance(docs, list):
        raise CorpusError(f"{cfg.path}: expected a JSON list of documents, got {type(docs).__name__}")
    taken: set[str] = set()
    for i, doc in enumerate(docs[:cfg.limit]):
        try:
            doc_id = title_doc_id(doc["title"], taken)
            text, spans = detokenize(doc["sents"])
            gold = gold_triplets(doc, doc_id, text, spans, rel_names)
        except (KeyError, IndexError, TypeError) as err:
            raise CorpusError(f"{cfg.path}: document {i} is not in DocRED format "
                              f"({type(err).__name__}: {err})") from None
        url = "https://en.wikipedia.org/wiki/" + doc["title"].replace(" ", "_")
        yield Document(doc_id=doc_id, text=text, source="redocred", url=url, gold=gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rel-info", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=1)
    args = parser.parse_args()
    for rec in redocred_records(RedocredSource(path=args.path, rel_info=args.rel_info, limit=args.limit)):
        print(f"=== {rec.doc_id}\n{rec.text}\n--- gold")
        for t in rec.gold or []:
            print(f"  ({t.subject} | {t.relation} | {t.object})  "
                  f"[{rec.text[t.char_start:t.char_end][:60]}...]")


if __name__ == "__main__":
    main()
