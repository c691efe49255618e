"""Which step from a one-slot toy to the synthetic corpus stops the memory lookup being learnt?

A toy generator with one knob per difference between the toy of tests/model/test_learning.py and
configs/tiny.yaml, trained and evaluated through the real `model.train` / `model.evaluate` code on
real shards (BENCHMARKS.md "Why the lookup does not start"):

    document = <bos> (K R V .) x facts   filler   (K R V .) x facts, shuffled    recall = V

    facts       key/value pairs stated, then each recalled once (memory must pick the right slot)
    key_len     tokens per key (names are several BPE tokens)
    value_len   tokens per value
    relations   distinct relation tokens (1: the key alone picks the slot)
    filler_len  filler tokens between statements and recalls (fewer recall tokens per token)
    noise       filler drawn at random (unpredictable tokens, like names, add gradient noise)

    python -m model.bench_lookup --facts 6 --slots 8 --short-conv 4          # one run, one line
    python -m model.bench_lookup --facts 4 --filler-len 100 --noise --recall-loss-weight 10
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import pyarrow as pa
import torch
import yaml

from configs.schema import load_config
from model.evaluate import evaluate_variant
from model.tokenizer import train_tokenizer
from model.train import main as train_main
from warehouse.shards import shard_path, write_parquet_atomically
from warehouse.training_shards import MEMORY_SCHEMA, TOKENS_SCHEMA

# byte-level tokenizer ids (1..256 are bytes): disjoint ranges per role
DOT, FIRST_RELATION, KEYS, FILLER, NOISE, VALUES = 46, 50, range(60, 90), range(100, 108), \
    range(100, 150), range(150, 250)


def lookup_document(i: int, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """(tokens row, oracle memory rows) of document i; keys and values distinct within it."""
    rng = random.Random(i)
    pool_rng = random.Random("pool")  # the same value pool for every document
    flat_values = pool_rng.sample(VALUES, args.values * args.value_len)
    pool = [tuple(flat_values[j * args.value_len:(j + 1) * args.value_len])
            for j in range(args.values)]
    flat_keys = rng.sample(KEYS, args.facts * args.key_len)
    keys = [tuple(flat_keys[j * args.key_len:(j + 1) * args.key_len]) for j in range(args.facts)]
    relations = [FIRST_RELATION + rng.randrange(args.relations) for _ in range(args.facts)]
    values = rng.sample(pool, args.facts)
    doc_id = f"doc{i:05d}"
    tokens, memory = [0], []
    for key, relation, value in zip(keys, relations, values):
        tokens += [*key, relation, *value, DOT]
        memory.append({"doc_id": doc_id, "token_pos": len(tokens), "subject_tokens": list(key),
                       "relation_tokens": [relation], "object_tokens": list(value),
                       "subject_id": -1, "relation_id": relation, "object_id": pool.index(value),
                       "negated": False, "functional": True, "source": "oracle"})
    start = rng.randrange(len(FILLER))
    tokens += [rng.choice(NOISE) if args.noise else FILLER[(start + j) % len(FILLER)]
               for j in range(args.filler_len)]
    order = list(range(args.facts))
    rng.shuffle(order)
    spans = []
    for j in order:
        tokens += [*keys[j], relations[j]]
        spans.append({"start": len(tokens), "end": len(tokens) + args.value_len,
                      "stated_pos": memory[j]["token_pos"]})
        tokens += [*values[j], DOT]
    row = {"doc_id": doc_id, "split": "val" if i % 5 == 0 else "train", "tokens": tokens,
           "recall": [t for s in spans for t in range(s["start"], s["end"])], "recall_spans": spans}
    return row, memory


def build_run(root: Path, args: argparse.Namespace) -> Path:
    """Tokenizer, shards and config of the run under `root`; returns the config path."""
    run = root / "lookup"
    tok = train_tokenizer(["a throwaway corpus for a byte-level tokenizer"] * 4, vocab_size=260)
    tok.save(run / "tokenizer" / "tokenizer.json")
    docs = [lookup_document(i, args) for i in range(args.docs)]
    for shard, k in enumerate(range(0, len(docs), 500)):
        part = docs[k:k + 500]
        write_parquet_atomically(pa.Table.from_pylist([m for _, ms in part for m in ms],
                                                      schema=MEMORY_SCHEMA),
                                 shard_path(run, "memory", shard))
        write_parquet_atomically(pa.Table.from_pylist([r for r, _ in part], schema=TOKENS_SCHEMA),
                                 shard_path(run, "tokens", shard))
    config = {
        "name": "lookup",
        "model": {"depth": args.depth, "n_embd": args.n_embd, "n_head": args.n_head,
                  "sequence_len": args.window, "memory_slots": args.slots, "attn_backend": "sdpa",
                  "short_conv": args.short_conv},
        "train": {"steps": args.steps, "device_batch_size": args.batch, "warmup_steps": 5,
                  "checkpoint_every": args.steps, "matrix_lr": 0.02, "embedding_lr": 0.05,
                  "recall_loss_weight": args.recall_loss_weight, "full_context_cap": 256},
        "evaluate": {"batch_size": 64},
    }
    path = root / "lookup.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [("facts", 4), ("key-len", 1), ("value-len", 1), ("relations", 1),
                          ("values", 32), ("filler-len", 20), ("docs", 1000), ("steps", 600),
                          ("batch", 64), ("window", 16), ("slots", 4), ("depth", 2),
                          ("n-embd", 64), ("n-head", 2), ("short-conv", 0)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--noise", action="store_true", help="random filler tokens")
    parser.add_argument("--recall-loss-weight", type=float, default=1.0)
    parser.add_argument("--variant", default="triplet", choices=["triplet", "full"])
    parser.add_argument("--dir", default="/tmp/bench_lookup", help="scratch folder (replaced)")
    args = parser.parse_args(argv)
    if args.facts * args.key_len > len(KEYS) or args.facts > args.values \
            or args.values * args.value_len > len(VALUES):
        parser.error("too many facts / too long keys or values for the toy's token ranges")
    root = Path(args.dir)
    if root.exists():
        if not (root / "lookup.yaml").exists():
            parser.error(f"--dir {root} exists and is not a bench_lookup folder; not replacing it")
        shutil.rmtree(root)  # a leftover checkpoint would otherwise be resumed, skipping training
    config = build_run(root, args)
    torch.set_num_threads(1)  # tiny matrices; two runs side by side share the 2 cores fairly
    t0 = time.perf_counter()
    train_main(["--config", str(config), "--runs-dir", str(root), "--variant", args.variant])
    seconds = time.perf_counter() - t0
    cfg = load_config(config)
    result = {"args": {k: v for k, v in vars(args).items() if k != "dir"},
              "train_s": round(seconds), **_metrics(evaluate_variant(cfg, root / "lookup", args.variant))}
    if args.variant == "triplet":
        removed = evaluate_variant(cfg, root / "lookup", "triplet", memory="none")
        result["removed"] = _metrics(removed)
    print(json.dumps(result))


def _metrics(m: dict) -> dict:
    return {k: round(m[k], 3) for k in ("recall_acc", "recall_bpb", "bpb")}


if __name__ == "__main__":
    main()
