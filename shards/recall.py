"""Recall spans: the tokens of a value stated earlier, which the window alone cannot predict.

Synthetic documents carry gold spans (`recall/shard_k.parquet`, written by ingest):
`gold_recall_spans` maps their characters to tokens. Real text has none, so
`real_text_recall_spans` marks an occurrence of a triplet's object (case-sensitive, whole words,
at least `shards.recall_min_object_chars` characters) as a recall when a triplet stating it ends
at least `T + M` tokens (sequence_len + memory_slots) before the occurrence and the object string
does not occur anywhere in those `T + M` tokens: the fact is in evicted memory, while neither the
window nor the `raw` variant's M extra tokens show it.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from typing import Any

from shards.spans import TokenizedDoc, char_span_tokens, token_pos
from warehouse.contracts import RecallSpan


def gold_recall_spans(doc: TokenizedDoc, rows: list[dict[str, Any]]) -> list[RecallSpan]:
    """Recall spans from the synthetic generator's gold character spans."""
    spans = []
    for r in rows:
        start, end = char_span_tokens(doc, r["char_start"], r["char_end"])
        if end > start:
            spans.append(RecallSpan(start, end, token_pos(doc, r["stated_char_end"])))
    return spans


def real_text_recall_spans(doc: TokenizedDoc, text: str, statements: list[tuple[str, int]],
                           reach: int, min_chars: int) -> list[RecallSpan]:
    """Recall spans for text without gold spans (the heuristic in the module docstring).

    `statements` are (object string, char_end of the stating clause); `reach` is T + M tokens.
    """
    stated_at: dict[str, list[int]] = defaultdict(list)
    for obj, char_end in statements:
        if len(obj) >= min_chars:
            stated_at[obj].append(token_pos(doc, char_end))
    spans = []
    for obj, positions in stated_at.items():
        positions.sort()
        previous_end = None  # token end of the object's previous occurrence
        for m in re.finditer(rf"(?<!\w){re.escape(obj)}(?!\w)", text):
            start, end = char_span_tokens(doc, m.start(), m.end())
            reachable_from = start - reach  # tokens before this are beyond window + M raw tokens
            i = bisect_right(positions, reachable_from)
            shown_nearby = previous_end is not None and previous_end > reachable_from
            if i > 0 and not shown_nearby and end > start:
                spans.append(RecallSpan(start, end, positions[i - 1]))
            previous_end = end
    return sorted(spans)
