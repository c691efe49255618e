"""Where do a model's recall errors go? recall_acc per relation, and each miss classified.

For every recall span of the val windows (as `model.evaluate` counts them), the candidate facts
are, for a variant with memory (`triplet`), the window's memory slots, and for the others every
oracle fact stated before the recalled value (the facts only name where a guess came from). The
gold fact is the candidate whose object is the recalled value. A span is `correct` (greedy
decoding reproduces it), or its first predicted token is the first object token of:
- `same_relation_other_subject`: another slot with the gold slot's relation (the person was missed);
- `same_subject_other_relation`: another fact of the same subject (the relation was missed);
- `other_slot`: some other slot; else `not_a_memory_value` (the model did not copy from memory);
- `first_token_only`: the gold value's first token, then a wrong one (multi-token values).
`fact_not_in_memory`: no candidate holds the value (evicted by the slot limit, never extracted).

    python -m research.probe_recall [--run runs/tiny | --config C] [--memory spacy] [--step 800]
    python -m research.probe_recall --variant full

The run folder is found as warehouse/run_folder.py says (printed on stderr).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from model.dataloader import document_windows, load_training_documents, make_batch
from model.evaluate import find_checkpoint, load_model, val_documents, batch_recall_spans
from model.memory import Slot, build_window_memory
from model.tokenizer import load_run_tokenizer
from model.variants import variant_of
from warehouse.run_folder import run_and_config

KINDS = ("correct", "same_relation_other_subject", "same_subject_other_relation", "other_slot",
         "not_a_memory_value", "first_token_only", "fact_not_in_memory")


def classify(slots: list[Slot], value: tuple[int, ...], correct: bool, first: int) -> tuple[str, Slot | None]:
    """(kind, gold slot) of one recall span whose greedy first token is `first`."""
    gold = [s for s in slots if s.object == value and not s.negated]
    if not gold:
        return "fact_not_in_memory", None
    g = gold[-1]
    if correct:
        return "correct", g
    if value[0] == first:
        return "first_token_only", g
    hits = [s for s in slots if s.object and s.object[0] == first]
    if not hits:
        return "not_a_memory_value", g
    if any(h.relation == g.relation and h.subject != g.subject for h in hits):
        return "same_relation_other_subject", g
    if any(h.subject == g.subject for h in hits):
        return "same_subject_other_relation", g
    return "other_slot", g


@torch.no_grad()
def probe(run_dir: Path, variant: str = "triplet", memory: str = "as_trained",
          step: int | None = None, max_windows: int = 2000, batch_size: int = 64) -> dict[str, Any]:
    """{"kinds": {kind: count}, "by_relation": {relation: {kind: count}}} over the val windows."""
    meta, model, spec = load_model(find_checkpoint(run_dir, variant, step))
    docs = val_documents(run_dir, variant, memory, meta["config"]["train"]["memory_source"])
    builder = variant_of(variant).memory  # the variant's own slots, if it has memory
    facts = docs if builder else load_training_documents(run_dir, "val", "oracle")
    tok = load_run_tokenizer(run_dir)
    windows = document_windows(docs, spec.window_len)[:max_windows]
    kinds: Counter = Counter()
    by_relation: dict[str, Counter] = defaultdict(Counter)
    for i in range(0, len(windows), batch_size):
        batch = make_batch(docs, windows[i:i + batch_size], spec)
        predicted = model(batch.inputs, memory=batch.memory).argmax(-1)
        for b, doc, start, end, _, at in batch_recall_spans(batch, docs, spec.window_len):
            if builder:  # the window's own memory
                slots = builder(doc, int(batch.window_start[b]), spec)
            else:  # every oracle fact stated before the value
                rows = facts[int(batch.doc_index[b])].memory
                slots = build_window_memory(rows, start - 1, len(rows))
            guess, target = predicted[b, at:at + end - start], batch.targets[b, at:at + end - start]
            kind, gold = classify(slots, tuple(doc.tokens[start:end].tolist()),
                                  bool((guess == target).all()), int(guess[0]))
            kinds[kind] += 1
            relation = tok.decode(list(gold.relation)).strip() if gold else "?"
            by_relation[relation][kind] += 1
    return {"variant": variant, "step": int(meta["step"]), "memory": memory, "kinds": dict(kinds),
            "by_relation": {r: dict(c) for r, c in sorted(by_relation.items())}}


def format_table(result: dict[str, Any]) -> str:
    """One row per relation: spans, recall_acc, and the share of each miss kind."""
    lines = ["relation | spans | recall_acc | " + " | ".join(KINDS[1:]), "---|" * (len(KINDS) + 2)]
    rows = {**result["by_relation"], "all": result["kinds"]}
    for relation, counts in rows.items():
        n = sum(counts.values())
        shares = " | ".join(f"{counts.get(k, 0) / n:.3f}" for k in KINDS[1:])
        lines.append(f"{relation} | {n} | {counts.get('correct', 0) / n:.3f} | {shares}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="the run folder (default: see --config)")
    parser.add_argument("--config", help="run config YAML (default: the run folder's config.yaml); "
                        "without --run, the run is <runs-dir>/<its name>")
    parser.add_argument("--variant", default="triplet", help="a trained variant")
    parser.add_argument("--memory", default="as_trained",
                        help="as_trained, shuffled, or an extraction backend's name")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--runs-dir", default="runs",
                        help="where to look for runs without --run (default: runs)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    run_dir, cfg = run_and_config(args.run, args.config, Path(args.runs_dir))
    try:
        result = probe(run_dir, args.variant, args.memory, args.step,
                       cfg.evaluate.max_windows)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"probe_recall: {err}")
    print(json.dumps(result) if args.json else format_table(result))


if __name__ == "__main__":
    main()
