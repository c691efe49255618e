"""Which step from a one-slot toy to the synthetic corpus stops the memory lookup being learnt?

The toy of research/toy_lookup.py, one knob per difference between the toy of
tests/model/test_learning.py and configs/tiny.yaml (facts, key_len, value_len, relations,
filler_len, noise), trained and evaluated through the real `model.train` / `model.evaluate` code
on real shards (BENCHMARKS.md "Why the lookup does not start"):

    python -m research.bench_lookup --facts 6 --slots 8 --short-conv 4 --keys 10   # one run, one line
    python -m research.bench_lookup --facts 4 --filler-len 100 --noise --recall-loss-weight 10
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
import yaml

from configs.schema import load_config
from model.evaluate import evaluate_variant
from model.train import main as train_main
from model.variants import variant_of
from research.toy_lookup import ToyTask, write_toy_shards, write_toy_tokenizer

TASK_KNOBS = ("facts", "keys", "key_len", "value_len", "relations", "values", "filler_len", "noise")


def build_run(root: Path, task: ToyTask, args: argparse.Namespace) -> Path:
    """Tokenizer, shards and config of the run under `root`; returns the config path."""
    run = root / "lookup"
    write_toy_tokenizer(run)
    write_toy_shards(run, task, args.docs, docs_per_shard=500)
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
    for name, default in [("facts", 4), ("keys", 30), ("key-len", 1), ("value-len", 1), ("relations", 1),
                          ("values", 32), ("filler-len", 20), ("docs", 1000), ("steps", 600),
                          ("batch", 64), ("window", 16), ("slots", 4), ("depth", 2),
                          ("n-embd", 64), ("n-head", 2), ("short-conv", 0)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--noise", action="store_true", help="random filler tokens")
    parser.add_argument("--recall-loss-weight", type=float, default=1.0)
    parser.add_argument("--variant", default="triplet", help="a variant of model/variants.py")
    parser.add_argument("--dir", default="/tmp/bench_lookup", help="scratch folder (replaced)")
    args = parser.parse_args(argv)
    try:
        task = ToyTask(**{k: getattr(args, k) for k in TASK_KNOBS})
    except ValueError as err:
        parser.error(str(err))
    root = Path(args.dir)
    if root.exists():
        if not (root / "lookup.yaml").exists():
            parser.error(f"--dir {root} exists and is not a bench_lookup folder; not replacing it")
        shutil.rmtree(root)  # a leftover checkpoint would otherwise be resumed, skipping training
    config = build_run(root, task, args)
    torch.set_num_threads(1)  # tiny matrices; two runs side by side share the 2 cores fairly
    t0 = time.perf_counter()
    train_main(["--config", str(config), "--runs-dir", str(root), "--variant", args.variant])
    seconds = time.perf_counter() - t0
    cfg = load_config(config)
    result = {"args": {k: v for k, v in vars(args).items() if k != "dir"},
              "train_s": round(seconds), **_metrics(evaluate_variant(cfg, root / "lookup", args.variant))}
    if "no_memory" in variant_of(args.variant).ablations:
        removed = evaluate_variant(cfg, root / "lookup", args.variant, memory="none")
        result["removed"] = _metrics(removed)
    print(json.dumps(result))


def _metrics(m: dict) -> dict:
    return {k: round(m[k], 3) for k in ("recall_acc", "recall_bpb", "bpb")}


if __name__ == "__main__":
    main()
