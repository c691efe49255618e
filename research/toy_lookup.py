"""The toy lookup task on real shards: facts stated, filler, then every fact recalled.

One generator for the model tests (tests/model/conftest.py) and the bisect bench
(research/bench_lookup.py):

    document = <bos> (K R V .) x facts   filler   (K R V .) x facts, shuffled   filler[:4]

K (`key_len` tokens), R (one of `relations` tokens) and V (`value_len` tokens, one of `values`)
are byte-level token ids in disjoint ranges; keys and values are distinct within a document, so
at a recall V can be predicted only from the memory slot of its fact (or from raw context that
reaches back to the statement). Each fact has an oracle memory row and a wrong `spacy` row (its
value replaced by the first value), so tests can tell which memory source a model read.

    write_toy_tokenizer(run_dir)
    write_toy_shards(run_dir, ToyTask(facts=4, key_len=3), num_docs=1000)
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from model.tokenizer import train_tokenizer
from warehouse.contracts import MEMORY_SCHEMA, TOKENS_SCHEMA
from warehouse.shard_io import shard_path, write_parquet_atomically

# byte-level tokenizer ids (1..256 are bytes): disjoint ranges per role
DOT = 46
FIRST_RELATION = 50
KEYS = range(60, 90)
FILLER = range(100, 108)  # predictable filler: a cycle through these
NOISE = range(100, 150)   # random filler
VALUES = range(150, 250)


@dataclass(frozen=True)
class ToyTask:
    """One knob per difference between the simplest lookup and the synthetic corpus."""
    facts: int = 1        # facts stated, then each recalled once (memory must pick the right slot)
    keys: int = len(KEYS)  # distinct key tokens (how many names exist)
    key_len: int = 1      # tokens per key (names are several BPE tokens)
    value_len: int = 1    # tokens per value
    relations: int = 1    # distinct relation tokens (1: the key alone picks the slot)
    values: int = 32      # the value pool shared by all documents
    filler_len: int = 20  # filler tokens between statements and recalls
    noise: bool = False   # filler drawn at random (unpredictable tokens add gradient noise)
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.facts, self.keys, self.key_len, self.value_len, self.relations, self.values) < 1:
            raise ValueError("facts, keys, key_len, value_len, relations and values must be >= 1")
        if self.keys > len(KEYS) or self.facts * self.key_len > self.keys or self.facts > self.values \
                or self.values * self.value_len > len(VALUES) or self.relations > KEYS[0] - FIRST_RELATION:
            raise ValueError("too many facts / relations, or too long keys or values, for the "
                             "toy's token ranges")

    def value_pool(self) -> list[tuple[int, ...]]:
        return [tuple(VALUES[j * self.value_len:(j + 1) * self.value_len]) for j in range(self.values)]


def _chunks(flat: list[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(flat[j:j + size]) for j in range(0, len(flat), size)]


def toy_document(i: int, task: ToyTask) -> tuple[dict, list[dict]]:
    """(tokens row, memory rows) of toy document i (deterministic in i and the task)."""
    rng = random.Random(f"{task.seed}-{i}")
    pool = task.value_pool()
    key_tokens = KEYS[:task.keys]
    if task.facts == 1:
        keys, values = [tuple(rng.sample(key_tokens, task.key_len))], [rng.choice(pool)]
    else:
        keys = _chunks(rng.sample(key_tokens, task.facts * task.key_len), task.key_len)
        values = rng.sample(pool, task.facts)
    relations = [FIRST_RELATION + (rng.randrange(task.relations) if task.relations > 1 else 0)
                 for _ in range(task.facts)]
    doc_id = f"doc{i:04d}"
    tokens, memory = [0], []
    for key, relation, value in zip(keys, relations, values):
        clause_pos = len(tokens)
        tokens += [*key, relation, *value, DOT]
        fact = {"doc_id": doc_id, "token_pos": len(tokens), "clause_pos": clause_pos,
                "subject_tokens": list(key),
                "relation_tokens": [relation], "object_tokens": list(value),
                "subject_id": key[0], "relation_id": relation - FIRST_RELATION,
                "object_id": value[0], "negated": False, "functional": True, "source": "oracle"}
        wrong = {**fact, "object_tokens": list(pool[0]), "object_id": pool[0][0], "source": "spacy"}
        memory += [fact, wrong]
    start = rng.randrange(len(FILLER))
    filler = [rng.choice(NOISE) if task.noise else FILLER[(start + j) % len(FILLER)]
              for j in range(task.filler_len)]
    tokens += filler
    order = list(range(task.facts))
    rng.shuffle(order)
    spans = []
    for j in order:
        tokens += [*keys[j], relations[j]]
        spans.append({"start": len(tokens), "end": len(tokens) + task.value_len,
                      "stated_pos": memory[2 * j]["token_pos"]})
        tokens += [*values[j], DOT]
    tokens += filler[:4]
    row = {"doc_id": doc_id, "split": "val" if i % 5 == 0 else "train", "tokens": tokens,
           "recall": [t for s in spans for t in range(s["start"], s["end"])], "recall_spans": spans}
    return row, memory


def write_toy_shards(run_dir: Path, task: ToyTask, num_docs: int, docs_per_shard: int = 50) -> None:
    """The tokens and memory shards of `num_docs` toy documents under run_dir."""
    docs = [toy_document(i, task) for i in range(num_docs)]
    for k in range(0, num_docs, docs_per_shard):
        part = docs[k:k + docs_per_shard]
        memory = [m for _, rows in part for m in rows]
        write_parquet_atomically(pa.Table.from_pylist(memory, schema=MEMORY_SCHEMA),
                                 shard_path(run_dir, "memory", k // docs_per_shard))
        write_parquet_atomically(pa.Table.from_pylist([r for r, _ in part], schema=TOKENS_SCHEMA),
                                 shard_path(run_dir, "tokens", k // docs_per_shard))


def write_toy_tokenizer(run_dir: Path) -> None:
    """A byte-level tokenizer (ids 1..256 are bytes), so every toy token id is a real token."""
    tok = train_tokenizer(["a throwaway corpus for a toy tokenizer"] * 4, vocab_size=260)
    assert tok.bos_id == 0
    tok.save(run_dir / "tokenizer" / "tokenizer.json")
