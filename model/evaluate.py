"""Evaluate a trained variant on the val split: BPB, recall-token BPB and recall accuracy.

    python -m model.evaluate --variant triplet [--memory shuffled] [--run runs/tiny | --config C]
                             [--pairs]
    from model.evaluate import evaluate_variant   # the evaluate stage calls this

The val windows are those of training (same T, same targets, same context per variant), in
document order, at most `evaluate.max_windows`, `evaluate.batch_size` at a time. Figures:

- `bpb`: nats summed over window targets / (ln 2 x their UTF-8 bytes) (tokens of 0 bytes skipped);
  `recall_bpb`: the same over recall tokens; `nats_per_token`: the mean loss.
- `recall_acc`: a recall span (its tokens all targets of one window) counts as correct when greedy
  decoding from the context before it reproduces it. Greedy decoding gets every token right exactly
  when each token is the argmax given the true tokens before it, so one teacher-forced pass
  decides it. `recall_acc_by_distance`: [span start - stated_pos, correct] per span.
- `compression`: evicted tokens per memory slot used (triplet); `positions`: attention positions
  used per window (memory slots + earlier raw tokens + window tokens).
- sample sizes and 95% intervals: `windows`, `documents` (those with evaluated windows),
  `recall_documents` (those with recall tokens), `recall_spans`; `recall_acc_ci` is the Wilson
  interval over the spans, `bpb_ci` and `recall_bpb_ci` a bootstrap over documents of their
  bits and bytes (evaluation/intervals.py: documents, not tokens, are independent).

`--memory` replaces the trained memory of a variant that has memory (its ablations in
model/variants.py): `none` removes it, `shuffled` builds each document's context from the next
document (a deterministic derangement: its triplets, sentences or chunks), an extraction
backend's name (`oracle`, `spacy`, ...) uses that extractor's rows. Nothing is written here; the
evaluate stage stores the returned dict.

The CLI finds the run folder as warehouse/run_folder.py says (`--run`, else `runs/<name>` of
`--config`, else the only or newest run under `runs/`) and prints the figures one a line;
`--pairs` prints the whole dict as JSON instead, the (distance, correct) pair of every recall
span included (thousands on the demo).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from configs.schema import RunConfig
from evaluation.intervals import bootstrap_ratio, wilson
from model.checkpoint import latest_checkpoint, load_weights, step_folder
from model.dataloader import (Batch, TrainingDocument, document_windows, load_training_documents,
                              make_batch, window_recall_spans)
from model.gpt import GPT, GPTConfig
from model.precision import autocast_for
from model.tokenizer import load_run_tokenizer
from model.variants import WindowSpec, variant_of
from warehouse.run_folder import run_and_config

# --memory: the trained memory, none, another document's, or any extraction backend's name
MEMORY_KINDS = ("as_trained", "none", "shuffled")


def find_checkpoint(run_dir: Path, variant: str, step: int | None) -> Path:
    folder = Path(run_dir) / "checkpoints" / variant
    path = latest_checkpoint(folder) if step is None else step_folder(folder, step)
    if path is None or not path.is_dir():
        which = "checkpoint" if step is None else f"step {step}"
        raise FileNotFoundError(f"{folder}: no {which} of variant {variant!r} (run the train stage first)")
    return path


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, Any], GPT, WindowSpec]:
    """(meta, model in eval mode, window spec) of the checkpoint folder `path`."""
    meta, weights = load_weights(path, device)
    model = GPT(GPTConfig(**meta["model_config"])).to(device)
    model.load_state_dict(weights)
    model.eval()
    return meta, model, WindowSpec(**meta["window_spec"])


def memory_ablation(memory: str) -> str:
    """The variant ablation kind a --memory choice is (model/variants.py ABLATION_KINDS)."""
    return {"none": "no_memory", "shuffled": "shuffled"}.get(memory, "memory_source")


def val_documents(run_dir: Path, variant: str, memory: str,
                  trained_source: str) -> list[TrainingDocument]:
    """The val documents with the memory rows `memory` asks for (a backend name: its rows)."""
    spec = variant_of(variant)
    if memory != "as_trained" and memory_ablation(memory) not in spec.ablations:
        raise ValueError(f"--memory {memory} does not apply to variant {variant!r} "
                         f"(its ablations: {', '.join(spec.ablations) or 'none'})")
    if not spec.reads_memory_rows or memory == "none":
        source = None
    else:
        source = trained_source if memory in MEMORY_KINDS else memory
    docs = load_training_documents(run_dir, "val", source)
    if not docs:
        raise ValueError(f"{run_dir}: the tokens shards hold no val documents")
    if memory == "shuffled":
        if len(docs) < 2:
            raise ValueError("--memory shuffled needs at least 2 val documents")
        docs = [replace(d, memory_donor=docs[(i + 1) % len(docs)]) for i, d in enumerate(docs)]
    return docs


def batch_recall_spans(batch: Batch, docs: list[TrainingDocument], window_len: int
                        ) -> Iterator[tuple[int, TrainingDocument, int, int, int, int]]:
    """(batch row, document, start, end, stated_pos, at) of every recall span whose tokens are all
    targets of its window; `at` is the sequence position whose target is token `start`."""
    for b, (d, s, p) in enumerate(zip(batch.doc_index.tolist(), batch.window_start.tolist(),
                                      batch.prefix_len.tolist())):
        doc = docs[d]
        for start, end, stated in window_recall_spans(doc.recall_spans, s, window_len, len(doc.tokens)):
            yield b, doc, start, end, stated, p + start - s - 1


# per-document sums a Totals keeps: the bootstrap resamples documents, so it needs them
DOC_NATS, DOC_BYTES, DOC_RECALL_NATS, DOC_RECALL_BYTES, DOC_HITS, DOC_SPANS = range(6)


class Totals:
    """Running sums over the evaluated windows, the ones behind bpb, recall_bpb and recall_acc
    per document (`per_doc`: doc index -> the DOC_* sums)."""

    def __init__(self) -> None:
        self.per_doc: dict[int, list[float]] = {}
        self.tokens = self.recall_tokens = self.windows = self.positions = 0
        self.evicted = self.slots_used = 0
        self.spans: list[tuple[int, bool]] = []

    def add(self, batch: Batch, logits: torch.Tensor, token_bytes: torch.Tensor,
            docs: list[TrainingDocument], window_len: int) -> None:
        targets = batch.targets
        nats = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1,
                               reduction="none").view_as(targets).double()
        nbytes = torch.where(targets >= 0, token_bytes[targets.clamp(min=0)], 0).double()
        counted = nbytes > 0
        recall = counted & batch.recall
        sums = torch.stack([torch.where(counted, nats, 0).sum(1), nbytes.sum(1),
                            torch.where(recall, nats, 0).sum(1),
                            torch.where(recall, nbytes, 0).sum(1)], 1).tolist()
        for d, row in zip(batch.doc_index.tolist(), sums):
            doc = self.per_doc.setdefault(d, [0.0] * 6)
            for i, value in enumerate(row):
                doc[i] += value
        self.tokens += int((targets >= 0).sum())
        self.recall_tokens += int(recall.sum())
        self.windows += targets.shape[0]
        self.positions += int((targets >= 0).sum() + batch.prefix_len.sum())
        if batch.memory is not None:
            used = int(batch.memory.mask.sum())
            self.positions += used
            self.slots_used += used
            self.evicted += int(batch.window_start.sum())
        correct = (logits.argmax(-1) == targets).cpu()
        self._add_spans(batch, correct, docs, window_len)

    def _add_spans(self, batch: Batch, correct: torch.Tensor, docs: list[TrainingDocument],
                   window_len: int) -> None:
        doc_index = batch.doc_index.tolist()
        for b, doc, start, end, stated, at in batch_recall_spans(batch, docs, window_len):
            ok = bool(correct[b, at:at + end - start].all())
            self.spans.append((start - stated, ok))
            sums = self.per_doc[doc_index[b]]
            sums[DOC_HITS] += ok
            sums[DOC_SPANS] += 1

    def column(self, index: int) -> list[float]:
        """One DOC_* sum of every evaluated document, in document order."""
        return [self.per_doc[d][index] for d in sorted(self.per_doc)]

    def result(self) -> dict[str, Any]:
        """The figures, each with its sample size and 95% interval (evaluation/intervals.py):
        recall_acc Wilson over recall spans; bpb and recall_bpb bootstrapped over documents."""
        ln2 = math.log(2)
        nats, nbytes = self.column(DOC_NATS), self.column(DOC_BYTES)
        recall_nats, recall_bytes = self.column(DOC_RECALL_NATS), self.column(DOC_RECALL_BYTES)
        hits, spans = int(sum(self.column(DOC_HITS))), len(self.spans)

        def bits_per_byte(num: list[float], den: list[float]) -> tuple[float | None, list[float] | None]:
            if not sum(den):
                return None, None
            interval = bootstrap_ratio(num, den)
            return sum(num) / (ln2 * sum(den)), [bound / ln2 for bound in interval]

        bpb, bpb_ci = bits_per_byte(nats, nbytes)
        recall_bpb, recall_bpb_ci = bits_per_byte(recall_nats, recall_bytes)
        acc_ci = wilson(hits, spans)
        return {
            "bpb": bpb, "bpb_ci": bpb_ci,
            "recall_bpb": recall_bpb, "recall_bpb_ci": recall_bpb_ci,
            "nats_per_token": sum(nats) / self.tokens if self.tokens else None,
            "recall_acc": hits / spans if spans else None,
            "recall_acc_ci": list(acc_ci) if acc_ci else None,
            "recall_acc_by_distance": [[d, ok] for d, ok in self.spans],
            "compression": self.evicted / self.slots_used if self.slots_used else None,
            "positions": self.positions / self.windows if self.windows else None,
            "windows": self.windows,
            "documents": len(self.per_doc),
            "recall_documents": sum(1 for b in recall_bytes if b > 0),
            "tokens": self.tokens,
            "recall_tokens": self.recall_tokens,
            "recall_spans": spans,
        }


@dataclass
class EvaluationPass:
    """One checkpoint over the val windows the evaluate stage scores: what it reads, and its
    (batch, logits) one batch at a time."""
    cfg: RunConfig
    meta: dict[str, Any]
    path: Path  # the checkpoint folder
    model: GPT
    spec: WindowSpec
    docs: list[TrainingDocument]
    device: torch.device

    @torch.no_grad()
    def batches(self) -> Iterator[tuple[Batch, torch.Tensor]]:
        windows = document_windows(self.docs, self.spec.window_len)[: self.cfg.evaluate.max_windows]
        autocast = autocast_for(self.device, self.meta["config"]["train"].get("precision", "auto"))
        size = self.cfg.evaluate.batch_size
        for i in range(0, len(windows), size):
            batch = make_batch(self.docs, windows[i:i + size], self.spec).to(self.device)
            with autocast:
                logits = self.model(batch.inputs, memory=batch.memory).float()
            yield batch, logits  # the caller's sums run outside autocast


def evaluation_pass(cfg: RunConfig, run_dir: Path, variant: str, memory: str = "as_trained",
                    step: int | None = None, **spec_change: Any) -> EvaluationPass:
    """`variant`'s checkpoint (latest, or `step`) with the val documents `memory` asks for; its
    window spec as trained, with `spec_change`'s WindowSpec fields replaced."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = find_checkpoint(run_dir, variant, step)
    meta, model, spec = load_model(path, device)
    if memory == "none":
        spec = spec.without_memory()  # no memory at all: the model runs as a plain GPT
    docs = val_documents(run_dir, variant, memory, meta["config"]["train"]["memory_source"])
    return EvaluationPass(cfg, meta, path, model, replace(spec, **spec_change), docs, device)


def evaluate_variant(cfg: RunConfig, run_dir: Path, variant: str, memory: str = "as_trained",
                     step: int | None = None) -> dict[str, Any]:
    """Metrics of `variant`'s checkpoint (latest, or `step`) on the val split; see the module doc."""
    run_dir = Path(run_dir)
    run = evaluation_pass(cfg, run_dir, variant, memory, step)
    token_bytes = torch.tensor(load_run_tokenizer(run_dir).token_bytes(), device=run.device)
    totals = Totals()
    for batch, logits in run.batches():
        totals.add(batch, logits, token_bytes, run.docs, run.spec.window_len)
    return {"variant": variant, "memory": memory, "step": int(run.meta["step"]),
            "checkpoint": run.path.relative_to(run_dir).as_posix(), **totals.result()}


def summary_lines(result: dict[str, Any]) -> list[str]:
    """`evaluate_variant`'s figures one a line, the per-span pairs counted, not listed."""
    lines = [f"{result['variant']}, memory {result['memory']}: {result['checkpoint']}"]
    for key, value in result.items():
        if key in ("variant", "memory", "checkpoint", "recall_acc_by_distance"):
            continue
        shown = "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<15} {shown}")
    lines.append(f"  recall_acc_by_distance: {len(result['recall_acc_by_distance'])} (distance, correct) "
                 "pairs, one per recall span (--pairs prints them)")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a trained variant on the val split.")
    parser.add_argument("--variant", required=True, help="a trained variant (model/variants.py)")
    parser.add_argument("--memory", default="as_trained",
                        help="as_trained, none, shuffled, or an extraction backend's name")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--run", type=Path, help="the run folder (default: see --config)")
    parser.add_argument("--config", help="run config YAML (default: the run folder's config.yaml); "
                        "without --run, the run is <runs-dir>/<its name>")
    parser.add_argument("--runs-dir", default="runs",
                        help="where to look for runs without --run (default: runs)")
    parser.add_argument("--pairs", action="store_true",
                        help="print every figure as JSON, each recall span's (distance, correct) too")
    args = parser.parse_args(argv)
    run_dir, cfg = run_and_config(args.run, args.config, Path(args.runs_dir))
    try:
        result = evaluate_variant(cfg, run_dir, args.variant, args.memory, args.step)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1)
    print(json.dumps(result, indent=2) if args.pairs else "\n".join(summary_lines(result)))


if __name__ == "__main__":
    main()
