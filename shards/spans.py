"""Characters to tokens: a document's token ids with the character span of each token.

    doc = tokenize_docs(tok, [text])[0]        # TokenizedDoc: <|bos|> first, then the text's tokens
    text, doc = decode_doc(tok, tokens)        # the same for given token ids (a model's output)
    token_pos(doc, char_end)                   # the first token after a clause (a triplet's token_pos)
    char_span_tokens(doc, start, end)          # the tokens overlapping a character span

- a triplet's `token_pos` is the first token starting at or after the clause's `char_end` (the
  first token after the statement), clamped to the document's length;
- a character span covers every token that overlaps it.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import NamedTuple

from model.tokenizer import TextTokenizer


class TokenizedDoc(NamedTuple):
    """A document's token ids (`<|bos|>` first) and the character span of each text token."""
    tokens: list[int]
    starts: list[int]  # starts[i], ends[i]: characters of text token i = document token i + 1
    ends: list[int]


def tokenize_docs(tok: TextTokenizer, texts: list[str]) -> list[TokenizedDoc]:
    return [_tokenized(tok.bos_id, ids, offsets) for ids, offsets in tok.encode_batch_with_offsets(texts)]


def decode_doc(tok: TextTokenizer, tokens: list[int]) -> tuple[str, TokenizedDoc]:
    """The text of document tokens (`<|bos|>` first) and the `TokenizedDoc` of those very tokens,
    which need not be the text's own encoding (a model's output)."""
    ids = list(tokens[1:])
    text = tok.decode(ids)
    return text, _tokenized(tok.bos_id, ids, tok.char_offsets(text, ids))


def _tokenized(bos_id: int, ids: list[int], offsets: list[tuple[int, int]]) -> TokenizedDoc:
    return TokenizedDoc([bos_id, *ids], [s for s, _ in offsets], [e for _, e in offsets])


def token_pos(doc: TokenizedDoc, char_end: int) -> int:
    """Index of the first document token starting at or after `char_end` (len(tokens) if none)."""
    return 1 + bisect_left(doc.starts, char_end)


def char_span_tokens(doc: TokenizedDoc, char_start: int, char_end: int) -> tuple[int, int]:
    """Document token range [start, end) of the tokens overlapping characters [char_start, char_end)."""
    if char_end <= char_start:
        return (token_pos(doc, char_start),) * 2
    # first token ending after char_start, or starting at it: a character split over several
    # byte-level tokens gives its leading-byte tokens the empty span (c, c), and they belong too
    first = min(bisect_right(doc.ends, char_start), bisect_left(doc.starts, char_start))
    stop = bisect_left(doc.starts, char_end)  # first text token starting at or after char_end
    return 1 + first, 1 + max(first, stop)
