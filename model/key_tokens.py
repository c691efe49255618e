"""Key tokens (LongPPL, Fang et al., ICLR 2025): the tokens whose loss drops most when the long
context is given, and each variant's loss on exactly those tokens.

    keys = find_key_tokens(cfg, run_dir)                  # from the run's `full` checkpoint
    figures = score_key_tokens(cfg, run_dir, "triplet", keys)
    python -m model.key_tokens --run runs/tiny [--variant triplet ...]

Recall spans say where a fact is needed only on the synthetic corpus (on real text they come
from a heuristic). LongPPL asks the model instead: an evaluator scores every target token twice,
with the long context and with a short one, and a token is a *key token* when the long context
adds at least `min_gain` nats to its log-probability (the paper's LSD > 2) and leaves its loss
below `max_loss` nats (LCL > -2). Here the evaluator is the run's `full` variant (every earlier
raw token up to its cap, then the window) against itself with the cap at 0 (the window alone),
on the val windows the evaluate stage scores. A variant's `longppl` is exp(mean loss) over the
key tokens, each scored with that variant's own context; lower is better, and its 95% interval
is a bootstrap over documents (evaluation/intervals.py), like bpb's.

`full` chooses the key tokens by its own low loss, so its own longppl is favoured by the
selection: read it as the evaluator's, and compare the other variants with each other and with
`window`. On the synthetic corpus `recall_share` (the share of key tokens that are recall tokens)
checks the choice against the known facts.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from configs.schema import RunConfig
from evaluation.intervals import bootstrap_ratio
from model.evaluate import evaluation_pass
from model.variants import UPPER_BOUND
from warehouse.run_folder import run_and_config

EVALUATOR = UPPER_BOUND  # the variant whose long and short context losses choose the key tokens


@dataclass(frozen=True)
class TokenLosses:
    """Per-target-token losses of one pass over the val windows, in window order."""
    doc_ids: np.ndarray  # str [N]
    positions: np.ndarray  # int64 [N]: the token's index in its document
    targets: np.ndarray  # int64 [N]: the token (doc.tokens[position])
    nats: np.ndarray  # float64 [N]
    recall: np.ndarray  # bool [N]: a recall token


def target_positions(window_start: torch.Tensor, prefix_len: torch.Tensor, length: int) -> torch.Tensor:
    """[B, length]: the document index of the token each sequence position predicts (window
    inputs are tokens s.. after p prefix positions, so position j predicts token s + j - p + 1)."""
    j = torch.arange(length, device=window_start.device)
    return window_start[:, None] - prefix_len[:, None] + j[None, :] + 1


def token_losses(cfg: RunConfig, run_dir: Path, variant: str,
                 spec_change: dict[str, Any] | None = None) -> TokenLosses:
    """Every val window target's loss under `variant`'s checkpoint, its context built as trained
    (or with the WindowSpec fields in `spec_change` replaced), over the windows the evaluate
    stage scores (`evaluate.max_windows`)."""
    run = evaluation_pass(cfg, run_dir, variant, **(spec_change or {}))
    parts: list[tuple[np.ndarray, ...]] = []
    for batch, logits in run.batches():
        nats = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=-1,
                               reduction="none").view_as(batch.targets)
        at = batch.targets >= 0
        rows = torch.nonzero(at)[:, 0]
        positions = target_positions(batch.window_start, batch.prefix_len, at.shape[1])[at]
        doc_index = batch.doc_index[rows].cpu().numpy()
        parts.append((np.asarray([run.docs[d].doc_id for d in doc_index], dtype=object),
                      positions.cpu().numpy(), batch.targets[at].cpu().numpy(),
                      nats[at].double().cpu().numpy(), batch.recall[at].cpu().numpy()))
    return TokenLosses(*(np.concatenate(column) for column in zip(*parts)))


def select_key_tokens(long: TokenLosses, short: TokenLosses, min_gain: float,
                      max_loss: float) -> np.ndarray:
    """bool [N]: key tokens, from two passes over the same targets (long and short context)."""
    if not (np.array_equal(long.doc_ids, short.doc_ids)
            and np.array_equal(long.positions, short.positions)):
        raise ValueError("the long- and short-context passes scored different tokens")
    return (short.nats - long.nats >= min_gain) & (long.nats <= max_loss)


def find_key_tokens(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The key tokens of the run's val windows, chosen by its `full` checkpoint with
    `evaluate.key_tokens`' thresholds: {"documents": {doc_id: [token index, ...]}, "count",
    "scored" (target tokens looked at), "recall_share", "min_gain", "max_loss"}."""
    rule = cfg.evaluate.key_tokens
    long = token_losses(cfg, run_dir, EVALUATOR)
    short = token_losses(cfg, run_dir, EVALUATOR, {"full_context_cap": 0})
    key = select_key_tokens(long, short, rule.min_gain, rule.max_loss)
    documents: dict[str, list[int]] = {}
    for doc_id, position in zip(long.doc_ids[key], long.positions[key]):
        documents.setdefault(str(doc_id), []).append(int(position))
    count = int(key.sum())
    return {"documents": documents, "count": count, "scored": int(key.size),
            "recall_share": float(long.recall[key].mean()) if count else None,
            "min_gain": rule.min_gain, "max_loss": rule.max_loss}


def longppl(losses: TokenLosses, keys: dict[str, Any]) -> dict[str, Any]:
    """exp(mean nats) over the key tokens among `losses`, with its document-bootstrap interval
    and sample sizes: {"longppl", "longppl_ci", "key_tokens", "key_documents"}."""
    wanted = {(doc_id, p) for doc_id, positions in keys["documents"].items() for p in positions}
    nats: dict[str, float] = {}
    counts: dict[str, int] = {}
    for doc_id, position, value in zip(losses.doc_ids, losses.positions, losses.nats):
        if (doc_id, int(position)) in wanted:
            nats[doc_id] = nats.get(doc_id, 0.0) + float(value)
            counts[doc_id] = counts.get(doc_id, 0) + 1
    found = sum(counts.values())
    if found != keys["count"]:
        raise ValueError(f"{keys['count']} key tokens chosen but {found} of them scored: the "
                         "variant's evaluation windows differ from the evaluator's")
    if not found:
        return {"longppl": None, "longppl_ci": None, "key_tokens": 0, "key_documents": 0}
    order = sorted(counts)
    interval = bootstrap_ratio([nats[d] for d in order], [counts[d] for d in order])
    return {"longppl": math.exp(sum(nats.values()) / found),
            "longppl_ci": [math.exp(bound) for bound in interval] if interval else None,
            "key_tokens": found, "key_documents": len(order)}


def score_key_tokens(cfg: RunConfig, run_dir: Path, variant: str, keys: dict[str, Any]) -> dict[str, Any]:
    """`variant`'s longppl on the key tokens `keys` (find_key_tokens), its trained context."""
    return longppl(token_losses(cfg, run_dir, variant), keys)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Key tokens (LongPPL) of a run, and each "
                                     "variant's loss on them.")
    parser.add_argument("--run", type=Path, help="the run folder (default: see --config)")
    parser.add_argument("--config", help="run config YAML (default: the run folder's)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--variant", action="append",
                        help="a trained variant to score (repeatable; default: every trained one)")
    args = parser.parse_args(argv)
    run_dir, cfg = run_and_config(args.run, args.config, Path(args.runs_dir))
    try:
        keys = find_key_tokens(cfg, run_dir)
        print(f"key tokens: {keys['count']} of {keys['scored']} targets "
              f"(gain >= {keys['min_gain']} nats, loss <= {keys['max_loss']} nats with {EVALUATOR}'s "
              f"context), recall share {keys['recall_share']}")
        for variant in args.variant or list(cfg.train.variants):
            r = score_key_tokens(cfg, run_dir, variant, keys)
            ci = "" if r["longppl_ci"] is None else f" [{r['longppl_ci'][0]:.3f}, {r['longppl_ci'][1]:.3f}]"
            shown = "-" if r["longppl"] is None else f"{r['longppl']:.3f}"
            print(f"  {variant:<13} longppl {shown}{ci}  n={r['key_documents']} documents, "
                  f"{r['key_tokens']} key tokens")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
