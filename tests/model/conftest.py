"""Model test helpers: a toy run folder (tokenizer, tokens + memory shards, config) built in tmp.

The toy task: each document states a fact "K R V ." at its start (one memory row), then runs
through predictable filler, and recalls "K R V" two windows later (with `facts` > 1: several facts
with distinct keys, all recalled, so the model must pick the slot whose key matches). V is one of 32 values drawn at
random, so at the recall it can be predicted only from the memory slot (or from raw context that
reaches back to the statement: only the `full` variant's).
"""
import random
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from model.tokenizer import train_tokenizer
from warehouse.shards import shard_path, write_parquet_atomically
from warehouse.training_shards import MEMORY_SCHEMA, TOKENS_SCHEMA

RELATION, DOT = 50, 46
KEYS = range(60, 70)
VALUES = range(150, 182)
FILLER = list(range(100, 108))
FILLER_LEN = 20  # statement ends at token 5, the recall's value is token 27: window 2 of T=16


def toy_document(i: int, seed: int = 0, facts: int = 1) -> tuple[dict, list[dict]]:
    """(tokens row, memory rows) of toy document i: `facts` statements "K R V ." (distinct keys
    and values), the filler, then every fact recalled once in a shuffled order."""
    rng = random.Random(f"{seed}-{i}")
    if facts == 1:
        keys, values = [rng.choice(KEYS)], [rng.choice(VALUES)]
    else:
        keys, values = rng.sample(KEYS, facts), rng.sample(VALUES, facts)
    start = rng.randrange(len(FILLER))
    filler = [FILLER[(start + j) % len(FILLER)] for j in range(FILLER_LEN)]
    doc_id = f"doc{i:04d}"
    tokens, memory, stated = [0], [], []
    for key, value in zip(keys, values):
        tokens += [key, RELATION, value, DOT]
        stated.append(len(tokens))
        fact = {"doc_id": doc_id, "token_pos": len(tokens), "subject_tokens": [key],
                "relation_tokens": [RELATION], "object_tokens": [value], "subject_id": key,
                "relation_id": 0, "object_id": value, "negated": False, "functional": True,
                "source": "oracle"}
        wrong = {**fact, "object_tokens": [VALUES[0]], "object_id": VALUES[0], "source": "spacy"}
        memory += [fact, wrong]
    tokens += filler
    order = list(range(facts))
    rng.shuffle(order)
    spans = []
    for j in order:
        tokens += [keys[j], RELATION]
        spans.append({"start": len(tokens), "end": len(tokens) + 1, "stated_pos": stated[j]})
        tokens += [values[j], DOT]
    tokens += filler[:4]
    row = {"doc_id": doc_id, "split": "val" if i % 5 == 0 else "train", "tokens": tokens,
           "recall": [span["start"] for span in spans], "recall_spans": spans}
    return row, memory


def write_toy_shards(run_dir: Path, num_docs: int, docs_per_shard: int = 50, seed: int = 0,
                     facts: int = 1) -> None:
    docs = [toy_document(i, seed, facts) for i in range(num_docs)]
    for k in range(0, num_docs, docs_per_shard):
        part = docs[k:k + docs_per_shard]
        memory = [m for _, rows in part for m in rows]
        write_parquet_atomically(pa.Table.from_pylist(memory, schema=MEMORY_SCHEMA),
                                 shard_path(run_dir, "memory", k // docs_per_shard))
        write_parquet_atomically(pa.Table.from_pylist([r for r, _ in part], schema=TOKENS_SCHEMA),
                                 shard_path(run_dir, "tokens", k // docs_per_shard))


def write_toy_tokenizer(run_dir: Path) -> None:
    # byte-level: ids 1..256 are bytes, so every toy token id is a real one-byte token
    tok = train_tokenizer(["a throwaway corpus for a toy tokenizer"] * 4, vocab_size=260)
    assert tok.bos_id == 0
    tok.save(run_dir / "tokenizer" / "tokenizer.json")


def toy_config(model: dict | None = None, **train) -> dict:
    return {
        "name": "toy",
        "model": {"depth": 2, "n_embd": 64, "n_head": 2, "sequence_len": 16, "memory_slots": 4,
                  "attn_backend": "sdpa", **(model or {})},
        "train": {"steps": 8, "device_batch_size": 8, "checkpoint_every": 4, "warmup_steps": 2,
                  "matrix_lr": 0.02, "embedding_lr": 0.01, "full_context_cap": 48, **train},
        "evaluate": {"batch_size": 16},
    }


def build_toy_run(root: Path, num_docs: int = 60, facts: int = 1, model: dict | None = None,
                  **train) -> tuple[Path, Path]:
    """Write root/runs/toy (tokenizer, shards) and root/toy.yaml; returns (config, runs dir)."""
    runs = root / "runs"
    write_toy_tokenizer(runs / "toy")
    write_toy_shards(runs / "toy", num_docs, facts=facts)
    config = root / "toy.yaml"
    config.write_text(yaml.safe_dump(toy_config(model, **train)))
    return config, runs


@pytest.fixture(scope="session")
def toy_run_builder():
    """`build_toy_run` itself, for fixtures of wider scope."""
    return build_toy_run


@pytest.fixture
def toy_run(tmp_path):
    """A function(num_docs, facts, model, **train) -> (config path, runs dir) in tmp_path."""
    return lambda num_docs=60, **kwargs: build_toy_run(tmp_path, num_docs, **kwargs)
