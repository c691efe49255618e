"""The engine: one document read and written left to right in the windows the model was trained on,
with a KV cache per window and a live memory.

    engine = Engine(model, spec, sidecar=sidecar, budget=0.05)
    engine.start([tok.bos_id, *tok.encode(prompt)])          # a new document; logits of its last token
    for step in engine.generate(64, make_sampler(0.8, 50, seed=0)):
        print(tok.decode([step.token]), end="")

Windows are those of training and evaluation (model/dataloader.py): the window holding document
token i starts at s = (i // T) * T; its context is the variant's prefix (`Variant.prefix`, tokens
placed before the window) and memory (`Variant.memory`, slots the model reads as its
`memory_injection` says), read from the variant table and never from its name, built from the
live document (`live_document`: every token so far, and the memory rows with their clause spans),
so a builder that reads evicted tokens (pooled chunks, stating sentences, clauses) or rows
(triplets, facts written as text) sees what it saw in training; the window spec from the
checkpoint carries what the builders took from the run (chunk size, marker tokens). When the
next token falls past the window, the window slides by a whole T: the evicted tokens go to the
extraction sidecar (engine/sidecar.py), the engine waits at most `budget` seconds for their
memory, and the cache is rebuilt for the new window (memory once, then prefix and tokens).
Memory that arrives later joins at the next update (before every generated token, and between
chat turns): when it changes the window's context (its slots, or a prefix built from the rows),
every cached key/value is stale (engine/kv_cache.py), so the window is recomputed;
`EngineStats` counts and times those rebuilds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from engine.kv_cache import WindowCache
from model.dataloader import TrainingDocument
from model.gpt import GPT
from model.memory import MemoryRow, Slot, collate_memory
from model.variants import Variant, WindowSpec, variant_of

if TYPE_CHECKING:
    from engine.live_memory import MemoryState
    from engine.sidecar import Sidecar

Sampler = Callable[[Tensor], int]


@dataclass
class EngineStats:
    """Counts and seconds of one engine's work (BENCHMARKS.md "Live memory")."""
    tokens: int = 0                  # tokens fed (prompt, generated, teacher-forced)
    forward_seconds: float = 0.0     # cached forward of those tokens
    slides: int = 0                  # windows entered after the first
    extraction_waits: int = 0        # slides that waited for the sidecar
    extraction_late: int = 0         # ... whose memory was not ready within the budget
    wait_seconds: float = 0.0
    memory_rebuilds: int = 0         # mid-window rebuilds because the slots changed
    memory_rebuild_seconds: float = 0.0
    window_rebuild_seconds: float = 0.0  # rebuilds at slides (prefix + memory)


@dataclass
class Generated:
    """One generated token, the slots it could attend to, and (with explain) how much it did."""
    token: int
    slots: list[Slot]
    memory_weights: Tensor | None  # [len(slots)], mean over heads and the layers that read memory


@dataclass
class WindowContext:
    """What a variant puts before one window: token ids (no loss on them) and memory slots."""
    prefix: list[int] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)


def window_context(variant: Variant, doc: TrainingDocument, window_start: int,
                   spec: WindowSpec) -> WindowContext:
    """The context `variant`'s builders give the window of `doc` starting at `window_start`
    (model/dataloader.py `make_batch` puts the same before the window)."""
    prefix = variant.prefix(doc, window_start, spec).tolist() if variant.prefix is not None else []
    has_slots = variant.memory is not None and spec.memory_slots > 0
    return WindowContext(prefix, variant.memory(doc, window_start, spec) if has_slots else [])


def live_document(tokens: Sequence[int], rows: Sequence[MemoryRow]) -> TrainingDocument:
    """A document being read, as the variant builders read one: its tokens so far and the
    memory rows of what it stated (model.memory.memory_rows order, clause spans included)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    return TrainingDocument("live", tokens, np.zeros(len(tokens), dtype=bool), [], list(rows))


@dataclass
class _Window:
    start: int
    context: WindowContext = field(default_factory=WindowContext)


class Engine:
    """Generation and teacher-forced reading with a KV cache per window and a live memory."""

    def __init__(self, model: GPT, spec: WindowSpec, sidecar: "Sidecar | None" = None,
                 memory: "MemoryState | None" = None, budget: float | None = 0.05,
                 explain: bool = False):
        self.model, self.spec = model, spec
        self.variant = variant_of(spec.variant)
        self.uses_memory = self.variant.memory is not None and spec.memory_slots > 0
        self.sidecar, self.budget, self.explain = sidecar, budget, explain
        self.initial_memory = memory
        self.device = model.inv_freq.device
        self.stats = EngineStats()
        self.tokens: list[int] = []
        self.memory = memory
        self.window: _Window | None = None
        self.cache: WindowCache | None = None
        self.last_logits: Tensor | None = None  # [vocab] logits for the next token
        self.last_weights: Tensor | None = None  # [slots] their attention on memory (explain)

    # ------------------------------------------------------------ reading

    def start(self, tokens: Sequence[int], memory: "MemoryState | None" = None) -> Tensor:
        """Begin a new document (`<|bos|>` first) with `memory` (default: the engine's initial
        memory); returns the logits after each token [len(tokens), vocab]."""
        if not tokens:
            raise ValueError("a document starts with at least <|bos|>")
        if self.sidecar is not None:
            self.sidecar.reset()
        self.tokens, self.window, self.cache = [], None, None
        self.memory = memory if memory is not None else self.initial_memory
        return self.feed(tokens)

    def feed(self, tokens: Sequence[int]) -> Tensor:
        """Append tokens to the document; logits after each one [len(tokens), vocab]."""
        out = []
        i = 0
        while i < len(tokens):
            pos = len(self.tokens)
            start = pos // self.spec.window_len * self.spec.window_len
            if self.window is None or self.window.start != start:
                self._enter_window(start)
            take = min(len(tokens) - i, start + self.spec.window_len - pos)
            chunk = [int(t) for t in tokens[i:i + take]]
            self.tokens.extend(chunk)
            out.append(self._forward(chunk))
            i += take
        return torch.cat(out) if out else torch.zeros(0, self.model.config.vocab_size)

    def _forward(self, chunk: list[int], new: bool = True) -> Tensor:
        """The cached forward of `chunk`; `new` tokens count in the stats (a rebuild's do not)."""
        started = time.perf_counter()
        idx = torch.tensor([chunk], dtype=torch.long, device=self.device)
        logits, weights = self.cache.forward(idx, self.explain)
        if new:
            self.stats.tokens += len(chunk)
            self.stats.forward_seconds += time.perf_counter() - started
        self.last_logits = logits[0, -1]
        self.last_weights = None if weights is None else weights[0, -1]
        return logits[0]

    def _enter_window(self, start: int) -> None:
        if self.window is not None:
            self.stats.slides += 1
        self.window = _Window(start)
        if self.sidecar is not None and start > 0:
            self.sidecar.submit(self.tokens[:start])  # the tokens that just left the window
            started = time.perf_counter()
            state = self.sidecar.result(self.budget)
            self.stats.extraction_waits += 1
            self.stats.extraction_late += state is None
            self.stats.wait_seconds += time.perf_counter() - started
            if state is not None:
                self.memory = state
        started = time.perf_counter()
        self._rebuild()
        self.stats.window_rebuild_seconds += time.perf_counter() - started

    def _context(self) -> WindowContext:
        """The current window's context, built from the document so far and the memory rows."""
        return window_context(self.variant, live_document(self.tokens, self.rows), self.window.start,
                              self.spec)

    def _rebuild(self) -> None:
        """A fresh cache for the current window: memory slots, then prefix and its tokens so far."""
        window = self.window
        window.context = self._context()
        slots = window.context.slots
        memory = collate_memory([slots], len(slots), self.spec.surface_len) if slots else None
        self.cache = WindowCache(self.model, memory, self.spec.context_len)
        sequence = window.context.prefix + self.tokens[window.start:]
        if sequence:
            self._forward(sequence, new=False)

    # ------------------------------------------------------------ memory

    def update_memory(self, wait: float | None = 0.0) -> bool:
        """Take the sidecar's newest finished memory (waiting at most `wait` s); rebuild the
        window when its slots change. True when they changed."""
        if self.sidecar is None or self.window is None:
            return False
        state = self.sidecar.result(wait)
        return state is not None and self.set_memory(state)

    def set_memory(self, memory: "MemoryState") -> bool:
        """Replace the memory rows; the window is recomputed when its context (slots or prefix)
        changes."""
        self.memory = memory
        if self.window is None or self._context() == self.window.context:
            return False
        started = time.perf_counter()
        self._rebuild()
        self.stats.memory_rebuilds += 1
        self.stats.memory_rebuild_seconds += time.perf_counter() - started
        return True

    @property
    def slots(self) -> list[Slot]:
        """The current window's memory slots, oldest first."""
        return [] if self.window is None else self.window.context.slots

    @property
    def prefix(self) -> list[int]:
        """The token ids the variant put before the current window."""
        return [] if self.window is None else self.window.context.prefix

    @property
    def rows(self) -> list[MemoryRow]:
        return [] if self.memory is None else self.memory.rows

    # ------------------------------------------------------------ writing

    def generate(self, max_new_tokens: int, sample: Sampler) -> Iterator[Generated]:
        """Sample up to `max_new_tokens` tokens; each is in the document by the time it is handed
        out (a caller that stops early keeps all it saw). Late memory joins before each one."""
        if self.last_logits is None:
            raise ValueError("start a document first (Engine.start)")
        for _ in range(max_new_tokens):
            self.update_memory()
            token = sample(self.last_logits)
            step = Generated(token, self.slots, self.last_weights)
            self.feed([token])
            yield step


def make_sampler(temperature: float, top_k: int | None, seed: int) -> Sampler:
    """Greedy at temperature 0, else softmax(logits / temperature) over the top_k (None: all)."""
    generator = torch.Generator().manual_seed(seed)

    def sample(logits: Tensor) -> int:
        if temperature <= 0:
            return int(logits.argmax())
        logits = logits.float().cpu() / temperature
        if top_k is not None and top_k < logits.numel():
            cutoff = torch.topk(logits, top_k).values[-1]
            logits = logits.masked_fill(logits < cutoff, float("-inf"))
        return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
    return sample
