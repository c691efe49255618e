"""A session: a trained run's checkpoint, its tokenizer, live memory and the engine, plus the
text front-ends the CLI runs (python -m engine generate | chat).

    session = open_session(Path("runs/tiny"), "triplet", memory_from=["a.parquet"])
    generate(session, prompt, 64, make_sampler(0, None, 0), sys.stdout, show_memory=True)
    session.close()

`open_session` fails with one `SessionError` line on bad input: a run without checkpoints, a
variant the table lacks or the run did not train, an extractor that cannot read live text, a
memory file that is not a parquet of triplets. The sidecar runs only for a variant whose memory
is built from memory rows (`Variant.reads_memory_rows`); the others need no extraction.

`chat` keeps one document for the whole conversation: each turn's text is appended (a space
first, as sentences join in the corpus), the model continues it to the end of a sentence or line
(at most `max_new_tokens`), and memory is brought up to date between turns (waiting up to the
budget), so
the conversation runs past the window with the evicted turns in memory. The models of this
project continue text; they were never taught to answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, TextIO

import torch

from configs.schema import CanonicalizeConfig, ExtractConfig
from engine.engine import Engine, Generated, Sampler
from engine.kv_cache import memory_layers
from engine.live_memory import LiveMemory, MemoryFileError, RunVocabulary, read_memories, save_memory
from engine.sidecar import Sidecar
from extraction.registry import BACKENDS, make_backend
from model.checkpoint import latest_checkpoint
from model.evaluate import find_checkpoint, load_model
from model.gpt import GPTConfig
from model.memory import UNKNOWN_IDS, Slot
from model.tokenizer import TextTokenizer, load_run_tokenizer
from model.variants import variant_of


REPLY_ENDS = (".", "!", "?", "\n")  # a chat reply ends with its first sentence or line


class SessionError(ValueError):
    """Bad input for a session, as one line that says the fix."""


@dataclass
class Session:
    run_dir: Path
    step: int
    tok: TextTokenizer
    live: LiveMemory
    engine: Engine
    sidecar: Sidecar | None

    def close(self) -> None:
        if self.sidecar is not None:
            self.sidecar.close()


def trained_variants(run_dir: Path) -> list[str]:
    folder = Path(run_dir) / "checkpoints"
    return sorted(p.name for p in folder.iterdir() if latest_checkpoint(p)) if folder.is_dir() else []


def open_session(run_dir: Path, variant: str, *, step: int | None = None, extractor: str = "spacy",
                 memory_from: Sequence[str] = (), budget: float | None = 0.05, explain: bool = False,
                 sidecar: bool = True) -> Session:
    """Load `variant`'s checkpoint of `run_dir` and build its engine (see the module docstring)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SessionError(f"{run_dir}: no run folder here")
    trained = trained_variants(run_dir)
    if not trained:
        raise SessionError(f"{run_dir}: no checkpoints (run the train stage first)")
    entry = variant_of(variant)  # an unknown name: ValueError naming the known ones
    if variant not in trained:
        raise SessionError(f"{run_dir}: variant {variant!r} is not trained here (trained: {', '.join(trained)})")
    if memory_from and not entry.reads_memory_rows:
        raise SessionError(f"variant {variant!r} has no triplet memory: --memory-from needs one that has")
    if BACKENDS.lookup(extractor).needs_gold:
        raise SessionError(f"extractor {extractor!r} hands back gold triplets, which live text does not "
                           "have: use spacy or vllm")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    meta, model, window = load_model(find_checkpoint(run_dir, variant, step), device)
    tok = load_run_tokenizer(run_dir)
    try:
        loaded = read_memories(memory_from, extractor)
    except MemoryFileError as err:
        raise SessionError(str(err)) from None
    config = meta["config"]
    extracting = sidecar and entry.reads_memory_rows
    backend = None
    if extracting:
        # only the live extractor's block: the run may list backends this machine lacks
        extract_cfg = ExtractConfig.model_validate({**config["extract"], "backends": [extractor]})
        backend = make_backend(extractor, extract_cfg)
    live = LiveMemory(tok, backend, RunVocabulary(run_dir),
                      CanonicalizeConfig.model_validate(config["canonicalize"]), loaded)
    worker = Sidecar(live.state_after) if extracting else None
    engine = Engine(model, window, worker, live.state([], None), budget, explain)
    return Session(run_dir, int(meta["step"]), tok, live, engine, worker)


# ---------------------------------------------------------------- what the CLI prints

def slot_text(tok: TextTokenizer, slot: Slot) -> str:
    """(subject, relation, object) as text, `not` before a negated relation; a slot without
    canonical ids is a stretch of text cut in three parts (model.memory.text_slot: a pooled chunk,
    a stating sentence), shown as that text."""
    if slot.ids == UNKNOWN_IDS:
        return repr(tok.decode([*slot.subject, *slot.relation, *slot.object]))
    s, r, o = (tok.decode(list(part)).strip() for part in (slot.subject, slot.relation, slot.object))
    return f"({s}, {'not ' if slot.negated else ''}{r}, {o})"


def memory_lines(session: Session) -> list[str]:
    """The current window's context: its memory slots, and the tokens its variant put before it."""
    engine = session.engine
    start = engine.window.start if engine.window else 0
    lines = []
    if engine.uses_memory:
        slots = engine.slots
        lines.append(f"memory: {len(slots)} of {engine.spec.memory_slots} slots, window from token {start}")
        lines += [f"  {i:2d}. {slot_text(session.tok, s)}  age {s.age}" for i, s in enumerate(slots, 1)]
    if engine.variant.prefix is not None:
        lines.append(f"prefix: {len(engine.prefix)} tokens before the window from token {start}: "
                     f"{session.tok.decode(engine.prefix)!r}")
    return lines or [f"memory: variant {engine.spec.variant!r} has none"]


def explain_header(cfg: GPTConfig, top: int) -> str:
    """What the explain lines average over: the heads, and the layers that read memory slots."""
    layers = memory_layers(cfg)
    which = ("layers" if len(layers) in (0, cfg.n_layer) else
             f"layers {', '.join(map(str, layers))} of {cfg.n_layer}, the ones that read memory")
    return f"explain: attention on memory per generated token (mean over heads and {which}), top {top} slots"


def explain_line(tok: TextTokenizer, step: Generated, top: int) -> str:
    """A generated token, its attention mass on memory and the `top` slots it attended to most."""
    head = f"{tok.decode([step.token])!r:>16}"
    if step.memory_weights is None or not step.slots:
        return f"{head}  memory 0.000"
    weights = step.memory_weights.tolist()
    order = sorted(range(len(weights)), key=lambda i: -weights[i])[:top]
    best = " | ".join(f"{weights[i]:.3f} {slot_text(tok, step.slots[i])}" for i in order)
    return f"{head}  memory {sum(weights):.3f}  {best}"


def _stream(session: Session, max_new_tokens: int, sample: Sampler, out: TextIO,
            stop: tuple[str, ...] = ()) -> list[Generated]:
    """Generate, writing text as soon as it decodes to whole characters; stops after a token
    that holds one of `stop`."""
    steps: list[Generated] = []
    written = ""
    for step in session.engine.generate(max_new_tokens, sample):
        steps.append(step)
        text = session.tok.decode([s.token for s in steps])
        if not text.endswith("\ufffd"):  # a character split over tokens: wait for the rest
            out.write(text[len(written):])
            out.flush()
            written = text
        if any(end in session.tok.decode([step.token]) for end in stop):
            break
    return steps


def _report(session: Session, steps: list[Generated], out: TextIO, show_memory: bool,
            explain: bool, explain_top: int) -> None:
    if explain:
        out.write(explain_header(session.engine.model.config, explain_top) + "\n")
        out.writelines(explain_line(session.tok, s, explain_top) + "\n" for s in steps)
    if show_memory:
        out.writelines(line + "\n" for line in memory_lines(session))


def generate(session: Session, prompt: str, max_new_tokens: int, sample: Sampler, out: TextIO,
             show_memory: bool = False, explain_top: int = 3) -> list[Generated]:
    """Continue `prompt`, streaming the new text to `out`; then the explanation and memory."""
    if not prompt.strip():
        raise SessionError("the prompt is empty")
    session.engine.start([session.tok.bos_id, *session.tok.encode(prompt)])
    session.engine.update_memory(session.engine.budget)  # the prompt is a turn, as in chat
    steps = _stream(session, max_new_tokens, sample, out)
    out.write("\n")
    _report(session, steps, out, show_memory, session.engine.explain, explain_top)
    return steps


def chat(session: Session, turns: Iterable[str], max_new_tokens: int, sample: Sampler, out: TextIO,
         show_memory: bool = False, explain_top: int = 3) -> int:
    """One document for the conversation (module docstring); returns the turns taken."""
    engine, tok = session.engine, session.tok
    engine.start([tok.bos_id])
    taken = 0
    for line in turns:
        text = line.strip()
        if not text:
            continue
        document = tok.decode(engine.tokens[1:])
        engine.feed(tok.encode(text if not document or document[-1].isspace() else " " + text))
        engine.update_memory(engine.budget)
        out.write("> ")
        steps = _stream(session, max_new_tokens, sample, out, stop=REPLY_ENDS)
        if not steps or "\n" not in tok.decode([steps[-1].token]):
            out.write("\n")
        _report(session, steps, out, show_memory, engine.explain, explain_top)
        taken += 1
    return taken


def save_session_memory(session: Session, path: Path) -> int:
    """Write the memory of all the session's text, the window's included (what a later session
    would want to start from), to `path`; returns how many triplets."""
    if session.sidecar is None:
        raise SessionError(f"variant {session.engine.spec.variant!r} has no triplet memory to save")
    session.sidecar.submit(session.engine.tokens)
    return save_memory(session.sidecar.result(None), path)
