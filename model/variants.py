"""The training variants, one table: what each puts before the window of T tokens.

Every variant trains on the same windows and targets (model/dataloader.py); they differ only in
the context before the window. All but `window` and `full` use at most M extra attention
positions (M = model.memory_slots), so they compete at equal M:

    variant       before the window                                        positions added
    window        nothing (the lower bound)                                0
    triplet       the window's memory: the newest M triplets the memory    <= M memory slots
                  policy keeps, one TripletEncoder vector each
    raw           the M raw tokens just before the window                  <= M tokens
    full          every earlier raw token, at most train.full_context_cap  <= cap tokens (upper bound)
    pooled        the evicted tokens cut into chunks of train.chunk_tokens,  <= M memory slots
                  newest M chunks, each pooled through the TripletEncoder
                  (mean-pooled chunks: Compressive Transformer, Petrov et
                  al. 2025); chunk_tokens defaults to the triplet memory's
                  measured compression, so both cover the same span
    sentences     one slot per stating sentence of the SAME triplets the     <= M memory slots
                  policy keeps, pooled like a chunk: selection without the
                  (s, r, o) structure
    text          the kept triplets written as tokens ("Mara Quell works at  <= M tokens
                  Tessaly Labs ;"), newest first, cut to M tokens; with
                  train.text_uncut every kept fact (equal facts, more positions)
    selected_raw  the raw tokens of the clauses that state the kept          <= M tokens
                  triplets, newest first, cut to M: the best M raw tokens
    kv            the kept triplets as keys (subject, relation) and values   M keys/values in every
                  (object) in the attention of every model.kv_layer_stride-th  k-th layer (no
                  layer, with its own query projection (KBLaM)              input positions)

A `Variant` entry says
- `prefix(doc, window_start, spec)`: token ids placed before the window (no loss on them) and
  `prefix_cap(spec)`, the most it places (the model's rotary length is T + that);
- `memory(doc, window_start, spec)`: memory slots (`model.memory.Slot`, at most M) for the
  TripletEncoder; a variant with a memory builder gets a model with `memory_slots = M`, and
  `memory_injection` says how the slots enter it: `positions` (vectors before the window) or
  `kv` (keys and values of every k-th layer's attention, model/gpt.py);
- `reads_memory_rows`: it is built from an extractor's memory rows, so training loads the rows of
  `train.memory_source`;
- `ablations`: which evaluation-time ablations apply: `no_memory` (memory removed),
  `shuffled` (every builder reads the next document instead: another document's triplets,
  sentences or chunks), `memory_source` (any extraction backend's memory in place of the trained
  one; `evaluate.ablations` names the backend);
- `settings`: which of VARIANT_SETTINGS (the config fields only some variants read) its training
  reads, so its train stage's cache key (`training_settings`) changes with those and no others:
  a sweep over `train.full_context_cap` retrains `full` only;
- `prepare(spec, cfg, run_dir)`: what the builders need from the run's data, filled in once when
  training starts and saved in the checkpoint (the measured chunk size, marker token ids);
- `problem(cfg)`: a setting the variant cannot train with, as (field, message), at config load.

To add a variant: write its builder(s) (here or in a module of your own) and register one
`Variant` (`VARIANTS.add(Variant("name", ...))`); then `train.variants: [..., name]` trains
it and the dataloader, training, evaluation and the report take it from this table.
tests/model/test_variants.py registers a throwaway variant and runs it end to end.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from configs.table import Table
from model.attention import MEMORY_INJECTIONS
from model.memory import MAX_SURFACE_TOKENS, Slot, build_window_memory, kept_rows, text_slot

if TYPE_CHECKING:
    from configs.schema import RunConfig
    from model.dataloader import TrainingDocument
    from model.gpt import GPTConfig

ABLATION_KINDS = ("no_memory", "shuffled", "memory_source")
# Config fields that only some variants read; every other model / train setting is read by all.
MEMORY_MODEL = ("model.memory_slots", "model.triplet_encoder", "model.id_buckets")
VARIANT_SETTINGS = (*MEMORY_MODEL, "model.memory_rope", "model.kv_layer_stride",
                    "train.memory_source", "train.full_context_cap", "train.chunk_tokens",
                    "train.text_uncut")
FACT_SEPARATOR, NEGATION = " ;", " not"  # how the `text` variant writes a fact's end and a negation


@dataclass(frozen=True)
class WindowSpec:
    """What one training sequence holds: the variant, the window T, M and each variant's settings."""
    variant: str
    window_len: int
    memory_slots: int
    full_context_cap: int
    surface_len: int = MAX_SURFACE_TOKENS  # tokens kept per subject / relation / object
    chunk_tokens: int = 0  # `pooled`: tokens per chunk (0: measured when training starts)
    text_uncut: bool = False  # `text`: every kept fact, not cut to M tokens
    fact_separator: tuple[int, ...] = ()  # `text`: the token ids of FACT_SEPARATOR and NEGATION
    negation: tuple[int, ...] = ()

    @property
    def context_len(self) -> int:
        """The longest token sequence this variant feeds the model (its rotary length)."""
        return self.window_len + VARIANTS[self.variant].prefix_cap(self)

    def without_memory(self) -> "WindowSpec":
        """The same windows with memory removed (the `no_memory` ablation)."""
        return replace(self, memory_slots=0)


PrefixBuilder = Callable[["TrainingDocument", int, WindowSpec], np.ndarray]
MemoryBuilder = Callable[["TrainingDocument", int, WindowSpec], list[Slot]]
Prepare = Callable[[WindowSpec, "RunConfig", Path], WindowSpec]


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str  # what the model sees, for tables
    prefix: PrefixBuilder | None = None
    prefix_cap: Callable[[WindowSpec], int] = lambda spec: 0
    memory: MemoryBuilder | None = None
    memory_injection: str = "positions"
    reads_memory_rows: bool = False
    ablations: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()  # of VARIANT_SETTINGS
    prepare: Prepare | None = None
    problem: Callable[["RunConfig"], tuple[str, str] | None] = lambda cfg: None

    def __post_init__(self) -> None:
        unknown = set(self.ablations) - set(ABLATION_KINDS)
        if unknown:
            raise ValueError(f"variant {self.name!r}: unknown ablation kinds {sorted(unknown)}; "
                             f"choose from {ABLATION_KINDS}")
        unknown = set(self.settings) - set(VARIANT_SETTINGS)
        if unknown:
            raise ValueError(f"variant {self.name!r}: {sorted(unknown)} are not among the "
                             f"variant settings {VARIANT_SETTINGS}")
        if self.memory_injection not in MEMORY_INJECTIONS:
            raise ValueError(f"variant {self.name!r}: memory_injection must be one of "
                             f"{MEMORY_INJECTIONS}")
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
    """`triplet` and `kv`: the memory policy's slots for the window (model/memory.py)."""
    return build_window_memory(doc.memory, window_start, spec.memory_slots)


def evicted_chunks(doc: "TrainingDocument", window_start: int, spec: WindowSpec) -> list[Slot]:
    """`pooled`: the evicted tokens cut into chunks of `chunk_tokens` back from the window start,
    the newest M chunks, oldest first; a chunk's age is the tokens from its end to the window."""
    if spec.chunk_tokens < 1:
        raise ValueError("variant 'pooled' needs chunk_tokens: set train.chunk_tokens, or train "
                         "it through model.train, which measures it")
    evicted = min(window_start, len(doc.tokens))  # another document's (shuffled) may be shorter
    ends = range(evicted, 0, -spec.chunk_tokens)[:spec.memory_slots]
    return [text_slot(doc.tokens[max(0, end - spec.chunk_tokens):end], window_start - end)
            for end in reversed(ends)]


def stating_sentences(doc: "TrainingDocument", window_start: int, spec: WindowSpec) -> list[Slot]:
    """`sentences`: one slot per stating clause of the triplets the policy keeps (a clause that
    states two kept triplets is one slot), pooled like a chunk, oldest first."""
    rows = kept_rows(doc.memory, window_start, spec.memory_slots)
    clauses = dict.fromkeys((row.clause_pos, row.token_pos) for row in rows)
    return [text_slot(doc.tokens[start:end], window_start - end) for start, end in clauses]


def newest_tokens(tokens: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    """The last `count` of `tokens` (newest first when a prefix is cut to `count`)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    return tokens[max(0, len(tokens) - count):]


def facts_as_text(doc: "TrainingDocument", window_start: int, spec: WindowSpec) -> np.ndarray:
    """`text`: the kept triplets written out, oldest to newest, each "subject [not] relation
    object ;" (every part cut to `surface_len` tokens, as the TripletEncoder cuts it), then cut to
    the last M tokens (the newest facts first), or whole with `text_uncut`."""
    tokens: list[int] = []
    for row in kept_rows(doc.memory, window_start, spec.memory_slots):
        negation = spec.negation if row.negated else ()
        tokens += [*row.subject[:spec.surface_len], *negation, *row.relation[:spec.surface_len],
                   *row.object[:spec.surface_len], *spec.fact_separator]
    return np.asarray(tokens, dtype=np.int64) if spec.text_uncut else newest_tokens(tokens, spec.memory_slots)


def text_cap(spec: WindowSpec) -> int:
    """The most tokens `facts_as_text` writes: M, or M whole facts with `text_uncut`."""
    if not spec.text_uncut:
        return spec.memory_slots
    return spec.memory_slots * (3 * spec.surface_len + len(spec.negation) + len(spec.fact_separator))


def stating_clauses(doc: "TrainingDocument", window_start: int, spec: WindowSpec) -> np.ndarray:
    """`selected_raw`: the raw tokens of the clauses that state the kept triplets, in document
    order, cut to the last M (the newest clauses first)."""
    rows = kept_rows(doc.memory, window_start, spec.memory_slots)
    if not rows:
        return doc.tokens[:0]
    index = np.unique(np.concatenate([np.arange(r.clause_pos, r.token_pos) for r in rows]))
    return doc.tokens[newest_tokens(index, spec.memory_slots)]


# ---------------------------------------------------------------- what builders take from the run

def triplet_compression(docs: Sequence["TrainingDocument"], window_len: int, slots: int) -> float:
    """Evicted tokens per memory slot of the `triplet` memory over every window of `docs` (the
    figure model/evaluate.py reports as `compression`); 0 without any slot."""
    evicted = used = 0
    for doc in docs:
        for start in range(0, len(doc.tokens) - 1, window_len):
            evicted += start
            used += len(kept_rows(doc.memory, start, slots))
    return evicted / used if used else 0.0


def measure_chunk_tokens(spec: WindowSpec, cfg: "RunConfig", run_dir: Path) -> WindowSpec:
    """`pooled` without train.chunk_tokens: the triplet memory's compression on the train split
    (rows of train.memory_source, the same M), rounded, so a chunk covers what a triplet slot
    does; at most 3 x surface_len (what the TripletEncoder's three parts hold)."""
    if spec.chunk_tokens:
        return spec
    from model.dataloader import load_training_documents
    docs = load_training_documents(run_dir, "train", cfg.train.memory_source)
    measured = triplet_compression(docs, spec.window_len, spec.memory_slots)
    return replace(spec, chunk_tokens=min(max(1, round(measured)), 3 * spec.surface_len))


def marker_tokens(spec: WindowSpec, cfg: "RunConfig", run_dir: Path) -> WindowSpec:
    """`text`: the run tokenizer's ids of FACT_SEPARATOR and NEGATION."""
    from model.tokenizer import load_run_tokenizer
    tok = load_run_tokenizer(run_dir)
    return replace(spec, fact_separator=tuple(tok.encode(FACT_SEPARATOR)),
                   negation=tuple(tok.encode(NEGATION)))


def pools_token_spans(cfg: "RunConfig") -> tuple[str, str] | None:
    """A text stretch has no canonical ids: the `vocab` encoder would see every slot alike."""
    if cfg.model.triplet_encoder != "tokens":
        return ("model.triplet_encoder", "the pooled and sentences variants pool token spans: "
                "set triplet_encoder: tokens")
    return None


TRIPLET_READS = (*MEMORY_MODEL, "train.memory_source")
VARIANTS.add(Variant("window", "the window only (lower bound)"))
VARIANTS.add(Variant("triplet", "M triplet memory slots + the window", memory=triplet_memory,
                     reads_memory_rows=True, ablations=ABLATION_KINDS,
                     settings=(*TRIPLET_READS, "model.memory_rope")))
VARIANTS.add(Variant("raw", "M raw tokens just before the window + the window (equal "
                     "attention positions)", prefix=last_raw_tokens,
                     prefix_cap=lambda spec: spec.memory_slots, settings=("model.memory_slots",)))
VARIANTS.add(Variant("full", "all earlier raw tokens (capped) + the window (upper bound)",
                     prefix=earlier_raw_tokens, prefix_cap=lambda spec: spec.full_context_cap,
                     settings=("train.full_context_cap",)))
BUILT_IN = tuple(VARIANTS)
# The study's two reference points (evaluation/sweep.py): the variant the proposal is about, which
# every other is compared with, and the raw-context upper bound whose own setting (its cap) W* reads.
PROPOSED, UPPER_BOUND = "triplet", "full"
VARIANTS.add(Variant("pooled", "M mean-pooled chunks of the evicted tokens + the window",
                     memory=evicted_chunks, ablations=("no_memory", "shuffled"),
                     settings=(*TRIPLET_READS, "model.memory_rope", "train.chunk_tokens"),
                     prepare=measure_chunk_tokens, problem=pools_token_spans))
VARIANTS.add(Variant("sentences", "the kept triplets' stating sentences, pooled, as M slots + "
                     "the window", memory=stating_sentences, reads_memory_rows=True,
                     ablations=ABLATION_KINDS, settings=(*TRIPLET_READS, "model.memory_rope"),
                     problem=pools_token_spans))
VARIANTS.add(Variant("text", "the kept triplets written as M tokens + the window",
                     prefix=facts_as_text, prefix_cap=text_cap, reads_memory_rows=True,
                     ablations=ABLATION_KINDS,
                     settings=("model.memory_slots", "train.memory_source", "train.text_uncut"),
                     prepare=marker_tokens))
VARIANTS.add(Variant("selected_raw", "the M raw tokens of the kept triplets' clauses + the "
                     "window", prefix=stating_clauses, prefix_cap=lambda spec: spec.memory_slots,
                     reads_memory_rows=True, ablations=ABLATION_KINDS,
                     settings=("model.memory_slots", "train.memory_source")))
VARIANTS.add(Variant("kv", "the kept triplets as keys/values in every k-th layer (KBLaM) + the "
                     "window", memory=triplet_memory, memory_injection="kv",
                     reads_memory_rows=True, ablations=ABLATION_KINDS,
                     settings=(*TRIPLET_READS, "model.kv_layer_stride")))


# ---------------------------------------------------------------- a run's variants

def window_spec(cfg: "RunConfig", variant: str, surface_len: int = MAX_SURFACE_TOKENS) -> WindowSpec:
    variant_of(variant)
    return WindowSpec(variant, cfg.model.sequence_len, cfg.model.memory_slots,
                      cfg.train.full_context_cap, surface_len,
                      chunk_tokens=cfg.train.chunk_tokens or 0, text_uncut=cfg.train.text_uncut)


def prepared_spec(cfg: "RunConfig", variant: str, run_dir: Path) -> WindowSpec:
    """The window spec training uses: the config's, with what the variant takes from the run."""
    spec = window_spec(cfg, variant)
    prepare = variant_of(variant).prepare
    return prepare(spec, cfg, Path(run_dir)) if prepare else spec


def gpt_config(cfg: "RunConfig", variant: str, vocab_size: int,
               spec: WindowSpec | None = None) -> "GPTConfig":
    """The model of a variant: memory slots only if it has a memory builder, injected as the
    variant says, rotary length for its longest context (of `spec`, default the config's)."""
    from model.gpt import GPTConfig
    base = GPTConfig.from_model_config(cfg.model, vocab_size)
    spec = spec or window_spec(cfg, variant, base.max_surface_len)
    entry = variant_of(variant)
    slots = cfg.model.memory_slots if entry.memory is not None else 0
    return replace(base, memory_slots=slots, sequence_len=spec.context_len,
                   memory_injection=entry.memory_injection)


def training_settings(cfg: "RunConfig", variant: str) -> dict[str, Any]:
    """The model and train settings `variant`'s training reads (its train stage's cache key):
    all of both sections except `train.variants` and the VARIANT_SETTINGS it does not list."""
    reads = set(variant_of(variant).settings)
    sections = {"model": cfg.model.model_dump(mode="json"),
                "train": cfg.train.model_dump(mode="json")}
    del sections["train"]["variants"]
    for path in VARIANT_SETTINGS:
        if path not in reads:
            section, name = path.split(".")
            del sections[section][name]
    return sections
