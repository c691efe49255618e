"""Windows of the training shards, with each variant's context: memory slots or earlier tokens.

Reads the parallel `tokens` and `memory` shards of a run (DESIGN §4). Every document is cut into
windows of T tokens starting at s = 0, T, 2T, ...; a window's inputs are tokens [s, s+T) and its
targets tokens [s+1, s+T+1), so every document token after `<|bos|>` is a target exactly once.
The variants (model/variants.py) differ only in what comes before the window: a token prefix
(targets there are -1, no loss) and/or memory slots (`Batch.memory`). A document with a
`memory_donor` (the shuffled-memory ablation) has that context built from the donor instead.

Sequences are right-padded to the longest in the batch (inputs 0, targets -1), which causal
attention never looks at. A batch also carries the recall-token mask of its targets and the window
starts. Each rank holds the documents `i % world_size == rank` of the split (disjoint), and
`WindowLoader` streams its windows forever in an order shuffled by (seed, epoch, rank); its
`state_dict()` goes into the checkpoint so a resumed run sees exactly the batches it would have.

    docs = load_training_documents(Path("runs/tiny"), "train", memory_source="oracle")
    loader = WindowLoader(docs, WindowSpec("triplet", 64, 16, 1024), batch_size=16, seed=1337)
    batch = next(loader)

    python -m model.dataloader --config configs/tiny.yaml --variant triplet   # loader tokens/s
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from model.memory import Memory, MemoryRow, collate_memory, memory_rows
from model.variants import WindowSpec, variant_of
from warehouse.contracts import extractor_backend
from warehouse.shard_io import list_shards, read_shard, shard_index, shard_path

TOKEN_COLUMNS = ["doc_id", "split", "tokens", "recall", "recall_spans"]


@dataclass
class TrainingDocument:
    """One document of a split: its tokens, recall annotations and memory rows."""
    doc_id: str
    tokens: np.ndarray  # int64 [n], <|bos|> first
    recall: np.ndarray  # bool [n], True at recall tokens
    recall_spans: list[tuple[int, int, int]]  # (start, end, stated_pos) token ranges
    memory: list[MemoryRow]  # sorted by token_pos (model.memory.memory_rows)
    # the document the variant's context is built from instead of this one (shuffled memory)
    memory_donor: "TrainingDocument | None" = None


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, L] token ids (0 at padding)
    targets: torch.Tensor  # [B, L] next tokens on the window, -1 elsewhere
    recall: torch.Tensor  # [B, L] True where the target is a recall token
    memory: Memory | None  # memory slots of variants that have them, else None
    window_start: torch.Tensor  # [B] document index of each window's first token
    prefix_len: torch.Tensor  # [B] tokens before the window
    doc_index: torch.Tensor  # [B] index into the loader's documents

    def to(self, device: torch.device | str) -> "Batch":
        moved = {k: v.to(device, non_blocking=True) for k, v in self.__dict__.items()
                 if isinstance(v, torch.Tensor)}
        return Batch(memory=None if self.memory is None else self.memory.to(device), **moved)

    @property
    def window_tokens(self) -> int:
        """Target positions of the windows (the same count for every variant)."""
        return int((self.targets >= 0).sum())


def source_matches(sources: pa.Array, memory_source: str) -> pa.Array:
    """Rows whose extractor is backend `memory_source` ('vllm' matches 'vllm:<model>')."""
    names = pc.unique(sources).to_pylist()
    ours = [n for n in names if n is not None and extractor_backend(n) == memory_source]
    return pc.is_in(sources, value_set=pa.array(ours, pa.string()))


def load_training_documents(run_dir: Path, split: str, memory_source: str | None,
                            rank: int = 0, world_size: int = 1) -> list[TrainingDocument]:
    """This rank's documents of `split` (every `world_size`-th, starting at `rank`), in shard order.

    `memory_source` picks the extractor whose memory rows are attached (None: no memory rows).
    """
    token_shards = list_shards(run_dir, "tokens")
    if not token_shards:
        raise FileNotFoundError(f"{Path(run_dir) / 'tokens'}: no tokens shards (run the shards stage first)")
    docs: list[TrainingDocument] = []
    seen = 0  # documents of the split so far, over all ranks
    for path in token_shards:
        table = read_shard(path, TOKEN_COLUMNS)
        table = table.filter(pc.equal(table.column("split"), split))
        mine = [i for i in range(table.num_rows) if (seen + i) % world_size == rank]
        seen += table.num_rows
        if not mine:
            continue
        table = table.take(mine)
        memory = _read_memory(run_dir, shard_index(path), table.column("doc_id"), memory_source)
        for doc in table.to_pylist():
            tokens = np.asarray(doc["tokens"], dtype=np.int64)
            recall = np.zeros(len(tokens), dtype=bool)
            recall[np.asarray(doc["recall"], dtype=np.int64)] = True
            spans = [(s["start"], s["end"], s["stated_pos"]) for s in doc["recall_spans"]]
            docs.append(TrainingDocument(doc["doc_id"], tokens, recall, spans,
                                         memory_rows(memory.get(doc["doc_id"], ()))))
    if memory_source is not None and docs and not any(d.memory for d in docs):
        raise ValueError(f"{Path(run_dir) / 'memory'}: no memory rows from extractor "
                         f"{memory_source!r} for the {split} documents: add it to extract.backends "
                         "and rerun extract and shards, or pick another memory source")
    return docs


def _read_memory(run_dir: Path, index: int, doc_ids: pa.ChunkedArray,
                 memory_source: str | None) -> dict[str, list[dict[str, Any]]]:
    if memory_source is None:
        return {}
    path = shard_path(run_dir, "memory", index)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: memory shard missing beside its tokens shard "
                                "(rerun the shards stage)")
    table = read_shard(path)
    table = table.filter(pc.and_(source_matches(table.column("source"), memory_source),
                                 pc.is_in(table.column("doc_id"), value_set=doc_ids.combine_chunks())))
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_pylist():
        by_doc.setdefault(row["doc_id"], []).append(row)
    return by_doc


def window_starts(n_tokens: int, window_len: int) -> range:
    """The start of every window of a document of `n_tokens` tokens (`<|bos|>` included)."""
    return range(0, n_tokens - 1, window_len)


def window_recall_spans(spans: Sequence[tuple[int, int, int]], window_start: int, window_len: int,
                        n_tokens: int) -> list[tuple[int, int, int]]:
    """The (start, end, stated_pos) recall spans whose tokens are all targets of the window at
    `window_start` (tokens [s+1, min(s+T, n-1)]): the spans that window's recall metrics score."""
    last_target = min(window_start + window_len, n_tokens - 1)
    return [(start, end, stated) for start, end, stated in spans
            if window_start + 1 <= start and end - 1 <= last_target]


def document_windows(docs: Sequence[TrainingDocument], window_len: int) -> np.ndarray:
    """(doc_index, window_start) of every window, in document order: int64 [N, 2]."""
    pairs = [(d, s) for d, doc in enumerate(docs) for s in window_starts(len(doc.tokens), window_len)]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def evicted_context(doc_tokens: np.ndarray, window_len: int) -> dict[str, float | int]:
    """What lies before the windows of documents of `doc_tokens` tokens each: the context a
    memory can hold. A window starting at s has s tokens evicted (the first window none).

    {"documents", "share_documents_with_evicted", "windows", "windows_with_evicted",
     "share_with_evicted",
     "evicted_tokens_mean", "evicted_tokens_median"} (mean and median over every window)."""
    n = np.asarray(doc_tokens, dtype=np.int64)
    windows = -(-np.maximum(n - 1, 0) // window_len)  # len(window_starts(n, T)) per document
    total = int(windows.sum())
    evicted = window_len * np.concatenate([np.arange(w) for w in windows] or [np.zeros(0, int)])
    return {"documents": int(len(n)),
            "share_documents_with_evicted": round(float((windows > 1).mean()), 4) if len(n) else 0.0,
            "windows": total,
            "windows_with_evicted": int(np.maximum(windows - 1, 0).sum()),
            "share_with_evicted": round(float((evicted > 0).mean()), 4) if total else 0.0,
            "evicted_tokens_mean": round(float(evicted.mean()), 1) if total else 0.0,
            "evicted_tokens_median": float(np.median(evicted)) if total else 0.0}


def make_batch(docs: Sequence[TrainingDocument], windows: np.ndarray, spec: WindowSpec) -> Batch:
    """The batch of the given (doc_index, window_start) pairs, with `spec.variant`'s context."""
    variant = variant_of(spec.variant)
    uses_memory = variant.memory is not None and spec.memory_slots > 0
    rows, slot_lists, prefixes = [], [], []
    for d, s in windows.tolist():
        doc = docs[d]
        context = doc.memory_donor or doc
        prefix = variant.prefix(context, s, spec) if variant.prefix else doc.tokens[:0]
        p = len(prefix)
        end = min(s + spec.window_len, len(doc.tokens) - 1)
        inputs = np.concatenate([prefix, doc.tokens[s:end]])
        targets = np.concatenate([np.full(p, -1, dtype=np.int64), doc.tokens[s + 1:end + 1]])
        recall = np.concatenate([np.zeros(p, dtype=bool), doc.recall[s + 1:end + 1]])
        rows.append((inputs, targets, recall))
        prefixes.append(p)
        if uses_memory:
            slot_lists.append(variant.memory(context, s, spec))
    length = max(len(r[0]) for r in rows)
    inputs = np.zeros((len(rows), length), dtype=np.int64)
    targets = np.full((len(rows), length), -1, dtype=np.int64)
    recall = np.zeros((len(rows), length), dtype=bool)
    for b, (x, y, r) in enumerate(rows):
        inputs[b, :len(x)], targets[b, :len(y)], recall[b, :len(r)] = x, y, r
    return Batch(inputs=torch.from_numpy(inputs), targets=torch.from_numpy(targets),
                 recall=torch.from_numpy(recall),
                 memory=collate_memory(slot_lists, spec.memory_slots, spec.surface_len) if uses_memory else None,
                 window_start=torch.from_numpy(windows[:, 1].copy()),
                 prefix_len=torch.tensor(prefixes, dtype=torch.long),
                 doc_index=torch.from_numpy(windows[:, 0].copy()))


class WindowLoader:
    """An endless stream of shuffled batches over one rank's documents, resumable exactly."""

    def __init__(self, docs: Sequence[TrainingDocument], spec: WindowSpec, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.docs, self.spec, self.batch_size = docs, spec, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.windows = document_windows(docs, spec.window_len)
        if len(self.windows) == 0:
            raise ValueError(f"rank {rank} of {world_size} has no windows: too few documents in the "
                             "split for this many processes (lower nproc_per_node or add documents)")
        self.epoch, self.position = 0, 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch, self.rank]).permutation(len(self.windows))

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        picked = []
        for _ in range(self.batch_size):
            if self.position == len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._epoch_order()
            picked.append(self._order[self.position])
            self.position += 1
        return make_batch(self.docs, self.windows[picked], self.spec)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "rank": self.rank, "world_size": self.world_size, "windows": len(self.windows)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        mine = self.state_dict()
        for key in ("seed", "rank", "world_size", "windows"):
            if state[key] != mine[key]:
                raise ValueError(f"loader state was saved with {key}={state[key]} but this run has "
                                 f"{key}={mine[key]}; resume with the same settings and shards")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._epoch_order()


def measure_tokens_per_second(loader: WindowLoader, batches: int) -> float:
    """Window tokens per second the loader produces on its own (for BENCHMARKS.md)."""
    start, tokens = time.perf_counter(), 0
    for _ in range(batches):
        tokens += next(loader).window_tokens
    return tokens / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    from configs.schema import load_config_or_exit
    from model.variants import prepared_spec
    parser = argparse.ArgumentParser(description="Measure the dataloader's window tokens/s.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--variant", default="triplet")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args(argv)
    cfg = load_config_or_exit(args.config)
    try:
        spec = prepared_spec(cfg, args.variant, Path(args.runs_dir) / cfg.name)
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    docs = load_training_documents(Path(args.runs_dir) / cfg.name, "train",
                                   cfg.train.memory_source if variant_of(args.variant).reads_memory_rows
                                   else None)
    loaded = time.perf_counter() - start
    loader = WindowLoader(docs, spec, cfg.train.device_batch_size, cfg.train.seed)
    rate = measure_tokens_per_second(loader, args.batches)
    print(f"{args.variant}: {len(docs)} train documents loaded in {loaded:.2f} s, "
          f"{len(loader.windows)} windows; {rate:,.0f} window tokens/s "
          f"(batch {cfg.train.device_batch_size} x T {cfg.model.sequence_len})")


if __name__ == "__main__":
    main()
