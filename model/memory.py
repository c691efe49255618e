"""The memory batch (`Memory`) and the memory policy that builds one window's memory.

A window starting at token `s` sees the triplets stated in the evicted region (`token_pos <= s`),
after the policy of DESIGN §4. `Memory` holds them as padded tensors, one row per window.

    rows = memory_rows(doc_rows)                      # once per document (sorted, keys computed)
    slots = build_window_memory(rows, window_start=128, slots=16)
    memory = collate_memory([slots, ...], slots=16)   # a `Memory` batch

`kept_rows` is the policy itself (which rows survive); the variants that show the kept triplets
in another form (their stating sentences, their clauses as raw tokens, the facts as text) start
from it. `text_slot` makes a stretch of text one slot (the `pooled` and `sentences` variants).
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import torch


@dataclass
class Memory:
    """Padded triplet memory for a batch of windows.

    subject / relation / object: [B, M, L] token ids of the surface forms, padded with -1
    ids: [B, M, 3] canonical (subject, relation, object) ids, -1 when unknown
    negated: [B, M] polarity; age: [B, M] tokens between statement and window start
    mask: [B, M] True for valid slots
    """
    subject: torch.Tensor
    relation: torch.Tensor
    object: torch.Tensor
    ids: torch.Tensor
    negated: torch.Tensor
    age: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> "Memory":
        return Memory(**{k: v.to(device, non_blocking=True) for k, v in self.__dict__.items()})

    @property
    def slots(self) -> int:
        return self.mask.shape[1]


# ---------------------------------------------------------------- the memory policy
#
# A document's memory rows are prepared once (`memory_rows`: keys computed, sorted by token_pos);
# each window then takes the evicted prefix with a bisect and walks it newest-first until it has
# `slots` survivors, so the per-window cost is O(rows scanned), not O(all rows).

MAX_SURFACE_TOKENS = 16  # a surface form longer than this is cut (names are a few tokens)


class MemoryRow(NamedTuple):
    """One memory-shard row, with the keys the policy compares precomputed."""
    token_pos: int
    clause_pos: int  # the stating clause is the document tokens [clause_pos, token_pos)
    subject: tuple[int, ...]
    relation: tuple[int, ...]
    object: tuple[int, ...]
    ids: tuple[int, int, int]
    negated: bool
    functional: bool
    fact_key: tuple  # (subject, relation, object), by canonical id when known, else by tokens
    upsert_key: tuple | None  # (subject, relation) of a positive functional triplet, else None


class Slot(NamedTuple):
    """One triplet in a window's memory."""
    subject: tuple[int, ...]
    relation: tuple[int, ...]
    object: tuple[int, ...]
    ids: tuple[int, int, int]
    negated: bool
    age: int


def _part_key(canonical_id: int, tokens: tuple[int, ...]) -> object:
    return canonical_id if canonical_id >= 0 else tokens


def memory_row(row: Mapping[str, Any]) -> MemoryRow:
    """A `MemoryRow` from a memory-shard row (a dict with the DESIGN §4 columns)."""
    s, r, o = (tuple(row[f"{k}_tokens"]) for k in ("subject", "relation", "object"))
    ids = (int(row["subject_id"]), int(row["relation_id"]), int(row["object_id"]))
    sk, rk, ok = _part_key(ids[0], s), _part_key(ids[1], r), _part_key(ids[2], o)
    negated, functional = bool(row["negated"]), bool(row["functional"])
    return MemoryRow(int(row["token_pos"]), int(row["clause_pos"]), s, r, o, ids, negated, functional,
                     fact_key=(sk, rk, ok),
                     upsert_key=(sk, rk) if functional and not negated else None)


def memory_rows(rows: Iterable[Mapping[str, Any]]) -> list[MemoryRow]:
    """A document's rows, prepared for `build_window_memory` (stable sort by token_pos)."""
    return sorted((memory_row(r) for r in rows), key=lambda r: r.token_pos)


def kept_rows(rows: Sequence[MemoryRow], window_start: int, slots: int) -> list[MemoryRow]:
    """The rows the memory policy keeps for the window starting at token `window_start` (DESIGN
    §4), oldest first.

    `rows` come from `memory_rows` (sorted by token_pos). Only fully evicted triplets
    (`token_pos <= window_start`) count. Walking newest-first:
    - a fact (subject, relation, object) already kept is dropped: the newest statement of a fact
      wins, with its polarity ("X lives in B" then "X does not live in B" keeps the negation);
    - upsert: once a positive triplet of a functional relation is kept, older positive triplets
      with the same (subject, relation) are dropped (the value was replaced). A negated triplet
      states no value, so it neither replaces nor is replaced;
    - the newest `slots` survivors are kept. Identity uses canonical ids where known (>= 0),
      else the token ids of the surface form.
    """
    if slots <= 0:
        return []
    end = bisect_right(rows, window_start, key=lambda r: r.token_pos)
    kept: list[MemoryRow] = []
    seen_facts: set[tuple] = set()
    seen_upserts: set[tuple] = set()
    for row in reversed(rows[:end]):
        if row.fact_key in seen_facts or (row.upsert_key is not None and row.upsert_key in seen_upserts):
            continue
        seen_facts.add(row.fact_key)
        if row.upsert_key is not None:
            seen_upserts.add(row.upsert_key)
        kept.append(row)
        if len(kept) == slots:
            break
    kept.reverse()
    return kept


def build_window_memory(rows: Sequence[MemoryRow], window_start: int, slots: int) -> list[Slot]:
    """The triplet memory of the window starting at `window_start`: one slot per kept row."""
    return [Slot(row.subject, row.relation, row.object, row.ids, row.negated,
                 window_start - row.token_pos) for row in kept_rows(rows, window_start, slots)]


UNKNOWN_IDS = (-1, -1, -1)


def text_slot(tokens: Sequence[int], age: int) -> Slot:
    """A stretch of text as one slot: its tokens cut into three consecutive parts that take the
    subject / relation / object places, so it goes through the TripletEncoder's pooling (a gated
    mean per part) and MLP exactly as a triplet does; positive, canonical ids unknown. Each part
    keeps at most the encoder's `max_surface_len` tokens (collate_memory cuts the rest)."""
    tokens = [int(t) for t in tokens]
    third = -(-len(tokens) // 3)
    parts = [tuple(tokens[i * third:(i + 1) * third]) for i in range(3)]
    return Slot(*parts, ids=UNKNOWN_IDS, negated=False, age=age)


def collate_memory(windows: Sequence[Sequence[Slot]], slots: int,
                   max_surface_len: int = MAX_SURFACE_TOKENS) -> Memory:
    """Pad the slot lists of B windows into one `Memory` of shape [B, slots, max_surface_len]."""
    batch = len(windows)
    surface = np.full((3, batch, slots, max_surface_len), -1, dtype=np.int64)
    ids = np.full((batch, slots, 3), -1, dtype=np.int64)
    negated = np.zeros((batch, slots), dtype=bool)
    age = np.zeros((batch, slots), dtype=np.int64)
    mask = np.zeros((batch, slots), dtype=bool)
    for b, window in enumerate(windows):
        if len(window) > slots:
            raise ValueError(f"window {b} has {len(window)} slots but memory holds {slots}")
        for m, slot in enumerate(window):
            for part, tokens in enumerate((slot.subject, slot.relation, slot.object)):
                tokens = tokens[:max_surface_len]
                surface[part, b, m, :len(tokens)] = tokens
            ids[b, m] = slot.ids
            negated[b, m] = slot.negated
            age[b, m] = slot.age
            mask[b, m] = True
    subject, relation, obj = (torch.from_numpy(s) for s in surface)
    return Memory(subject=subject, relation=relation, object=obj, ids=torch.from_numpy(ids),
                  negated=torch.from_numpy(negated), age=torch.from_numpy(age),
                  mask=torch.from_numpy(mask))
