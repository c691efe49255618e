"""The training variants, one table: what each puts before the window of T tokens.

Every variant trains on the same windows and targets (model/dataloader.py); they differ only in
the context before the window:

    variant  before the window                                     positions added
    window   nothing (the lower bound)                             0
    triplet  the window's memory: the newest M triplets the        <= M memory slots
             memory policy keeps, one TripletEncoder vector each
    raw      the M raw tokens just before the window               <= M tokens
    full     every earlier raw token, at most train.full_context_cap  <= cap tokens (upper bound)

A `Variant` entry says
- `prefix(doc, window_start, spec)`: token ids placed before the window (no loss on them) and
  `prefix_cap(spec)`, the most it places (the model's rotary length is T + that);
- `memory(doc, window_start, spec)`: memory slots (`model.memory.Slot`, at most M) for the
  TripletEncoder; a variant with a memory builder gets a model with `memory_slots = M`;
- `reads_memory_rows`: it is built from an extractor's memory rows, so training loads the rows of
  `train.memory_source`;
- `ablations`: which evaluation-time ablations apply: `no_memory` (memory removed),
  `shuffled` (each document gets the next one's memory), `memory_source` (any extraction
  backend's memory in place of the trained one; `evaluate.ablations` names the backend).

To add a variant: write its builder(s) (here or in a module of your own) and register one
`Variant` (`VARIANTS.add(Variant("name", ...))`); then `train.variants: [..., name]` trains
it and the dataloader, training, evaluation and the report take it from this table.
tests/model/test_variants.py registers a throwaway variant and runs it end to end.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from configs.table import Table
from model.memory import MAX_SURFACE_TOKENS, Slot, build_window_memory

if TYPE_CHECKING:
    from configs.schema import RunConfig
    from model.dataloader import TrainingDocument
    from model.gpt import GPTConfig

ABLATION_KINDS = ("no_memory", "shuffled", "memory_source")


@dataclass(frozen=True)
class WindowSpec:
    """What one training sequence holds: the variant, the window T, M and the `full` cap."""
    variant: str
    window_len: int
    memory_slots: int
    full_context_cap: int
    surface_len: int = MAX_SURFACE_TOKENS  # tokens kept per subject / relation / object

    @property
    def context_len(self) -> int:
        """The longest token sequence this variant feeds the model (its rotary length)."""
        return self.window_len + VARIANTS[self.variant].prefix_cap(self)

    def without_memory(self) -> "WindowSpec":
        """The same windows with memory removed (the `no_memory` ablation)."""
        return replace(self, memory_slots=0)


PrefixBuilder = Callable[["TrainingDocument", int, WindowSpec], np.ndarray]
MemoryBuilder = Callable[["TrainingDocument", int, WindowSpec], list[Slot]]


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str  # what the model sees, for tables
    prefix: PrefixBuilder | None = None
    prefix_cap: Callable[[WindowSpec], int] = lambda spec: 0
    memory: MemoryBuilder | None = None
    reads_memory_rows: bool = False
    ablations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.ablations) - set(ABLATION_KINDS)
        if unknown:
            raise ValueError(f"variant {self.name!r}: unknown ablation kinds {sorted(unknown)}; "
                             f"choose from {ABLATION_KINDS}")
        if self.prefix is not None and self.prefix_cap(_PROBE) <= 0:
            raise ValueError(f"variant {self.name!r}: a prefix builder needs a prefix_cap > 0")

    def applies(self, ablation: str, backends: set[str]) -> bool:
        """Whether an `evaluate.ablations` entry applies (a backend name is `memory_source`)."""
        if ablation in backends:
            return "memory_source" in self.ablations
        return ablation in self.ablations


_PROBE = WindowSpec("", 8, 4, 16)  # any spec with memory and a cap, to check an entry
VARIANTS: Table[Variant] = Table("training variant")
variant_of = VARIANTS.lookup


# ---------------------------------------------------------------- builders

def last_raw_tokens(doc: "TrainingDocument", window_start: int, spec: WindowSpec) -> np.ndarray:
    """`raw`: the M tokens just before the window."""
    return doc.tokens[max(0, window_start - spec.memory_slots):window_start]


def earlier_raw_tokens(doc: "TrainingDocument", window_start: int, spec: WindowSpec) -> np.ndarray:
    """`full`: every earlier token of the document, at most `full_context_cap`."""
    return doc.tokens[max(0, window_start - spec.full_context_cap):window_start]


def triplet_memory(doc: "TrainingDocument", window_start: int, spec: WindowSpec) -> list[Slot]:
    """`triplet`: the memory policy's slots for the window (model/memory.py)."""
    return build_window_memory(doc.memory, window_start, spec.memory_slots)


VARIANTS.add(Variant("window", "the window only (lower bound)"))
VARIANTS.add(Variant("triplet", "M triplet memory slots + the window", memory=triplet_memory,
                         reads_memory_rows=True, ablations=ABLATION_KINDS))
VARIANTS.add(Variant("raw", "M raw tokens just before the window + the window (equal "
                         "attention positions)", prefix=last_raw_tokens,
                         prefix_cap=lambda spec: spec.memory_slots))
VARIANTS.add(Variant("full", "all earlier raw tokens (capped) + the window (upper bound)",
                         prefix=earlier_raw_tokens, prefix_cap=lambda spec: spec.full_context_cap))
BUILT_IN = tuple(VARIANTS)


# ---------------------------------------------------------------- a run's variants

def window_spec(cfg: "RunConfig", variant: str, surface_len: int = MAX_SURFACE_TOKENS) -> WindowSpec:
    variant_of(variant)
    return WindowSpec(variant, cfg.model.sequence_len, cfg.model.memory_slots,
                      cfg.train.full_context_cap, surface_len)


def gpt_config(cfg: "RunConfig", variant: str, vocab_size: int) -> "GPTConfig":
    """The model of a variant: memory slots only if it has a memory builder, rotary length for
    its longest context."""
    from model.gpt import GPTConfig
    base = GPTConfig.from_model_config(cfg.model, vocab_size)
    spec = window_spec(cfg, variant, base.max_surface_len)
    slots = cfg.model.memory_slots if variant_of(variant).memory is not None else 0
    return replace(base, memory_slots=slots, sequence_len=spec.context_len)
