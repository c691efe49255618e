"""Engine speed for BENCHMARKS.md "Live memory": generation with and without the extraction
sidecar, the cost of a memory update, and the uncached forward for scale.

    python -m research.bench_engine --run runs/tiny [--variant triplet] [--tokens 512] [--repeats 3]
                                    [--budget 0.05]

One process, one torch thread, the configurations interleaved in every repeat (the machine may be
shared: the ratios are what hold). Each generates `--tokens` tokens (seed 0) after the first
window of a val document, so the window slides every T tokens:
- `no sidecar`: the document's offline memory rows, fixed; no extraction;
- `sidecar`: live spaCy extraction of the evicted text at every slide, waiting at most `--budget`
  seconds; what comes later joins at the next token (then the window is recomputed);
- `uncached`: the offline memory, but a fresh forward over the whole window context per token.
Memory update: decode steps fill a window (T tokens), then its memory changes back and forth;
each change rebuilds the cache (the slots' keys/values, then the window's T tokens again), timed
against one cached decode step.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from configs.schema import load_config
from engine.engine import Engine, make_sampler
from engine.kv_cache import WindowCache
from engine.live_memory import MemoryState
from engine.session import open_session
from model.dataloader import make_batch
from model.evaluate import val_documents
from model.memory import collate_memory
from warehouse.run_folder import RUN_CONFIG


def generate(engine: Engine, prompt: list[int], tokens: int, memory: MemoryState | None,
             temperature: float) -> float:
    """Seconds to generate `tokens` after `prompt` (its prefill excluded), seed 0."""
    engine.start(prompt, memory)
    started = time.perf_counter()
    for _ in engine.generate(tokens, make_sampler(temperature, None, 0)):
        pass
    return time.perf_counter() - started


@torch.no_grad()
def generate_uncached(engine: Engine, prompt: list[int], tokens: int, doc, temperature: float) -> float:
    """The same generation with a fresh forward over the window's context per token."""
    sample = make_sampler(temperature, None, 0)
    spec, model = engine.spec, engine.model
    text = list(prompt)
    started = time.perf_counter()
    for _ in range(tokens):
        now = type(doc)(doc.doc_id, np.asarray(text + [0]), doc.recall, [], doc.memory)
        start = (len(text) - 1) // spec.window_len * spec.window_len
        batch = make_batch([now], np.array([[0, start]]), spec).to(engine.device)
        logits = model(batch.inputs, memory=batch.memory)[0, -1]
        text.append(sample(logits))
    return time.perf_counter() - started


def memory_update_seconds(engine: Engine, doc, changes: int) -> tuple[float, float, float]:
    """(rebuild, memory keys/values alone, one decode step) seconds, medians: decode steps fill
    the first window that has memory, then it loses / regains its newest slot at every change."""
    T = engine.spec.window_len
    start = next(s for s in range(T, len(doc.tokens) - T, T) if doc.memory[0].token_pos <= s)
    newest = [r for r in doc.memory if r.token_pos <= start][-1]
    full, fewer = MemoryState(doc.memory), MemoryState([r for r in doc.memory if r is not newest])
    engine.start(doc.tokens[:start + 1].tolist(), full)  # the first window with memory, 1 token
    steps = []
    for token in doc.tokens[start + 1:start + T].tolist():
        started = time.perf_counter()
        engine.feed([token])
        steps.append(time.perf_counter() - started)
    rebuilds, encodes = [], []
    for i in range(changes):
        started = time.perf_counter()
        assert engine.set_memory(fewer if i % 2 == 0 else full), "the slots did not change"
        rebuilds.append(time.perf_counter() - started)
        memory = collate_memory([engine.slots], len(engine.slots), engine.spec.surface_len)
        started = time.perf_counter()
        WindowCache(engine.model, memory.to(engine.device), engine.spec.context_len)
        encodes.append(time.perf_counter() - started)
    return statistics.median(rebuilds), statistics.median(encodes), statistics.median(steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--variant", default="triplet")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.05)
    parser.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    parser.add_argument("--changes", type=int, default=40)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    session = open_session(args.run, args.variant, budget=args.budget)
    live = session.engine
    fixed = Engine(live.model, live.spec)
    trained_source = load_config(args.run / RUN_CONFIG).train.memory_source
    doc = next(d for d in val_documents(args.run, args.variant, "as_trained", trained_source)
               if len(d.tokens) > 3 * live.spec.window_len)
    prompt = doc.tokens[:live.spec.window_len].tolist()
    times: dict[str, list[float]] = {"no sidecar": [], "sidecar": [], "uncached": []}
    late = slides = rebuilds = 0
    waited = 0.0
    try:
        for _ in range(args.repeats):
            times["no sidecar"].append(generate(fixed, prompt, args.tokens, MemoryState(doc.memory),
                                               args.temperature))
            before = (live.stats.extraction_late, live.stats.slides, live.stats.memory_rebuilds,
                      live.stats.wait_seconds)
            times["sidecar"].append(generate(live, prompt, args.tokens, None, args.temperature))
            late += live.stats.extraction_late - before[0]
            slides += live.stats.slides - before[1]
            rebuilds += live.stats.memory_rebuilds - before[2]
            waited += live.stats.wait_seconds - before[3]
            times["uncached"].append(generate_uncached(fixed, prompt, args.tokens, doc, args.temperature))
        rebuild, encode, step = memory_update_seconds(fixed, doc, args.changes)
    finally:
        session.close()
    base = statistics.median(times["no sidecar"])
    print(f"{args.tokens} tokens generated (temperature {args.temperature}) after a {len(prompt)}-token prompt, "
          f"{args.repeats} repeats (median; all runs in s: {times})")
    print("| configuration | tokens/s | relative |\n|---|---|---|")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {name} | {args.tokens / median:,.0f} | {base / median:.2f} |")
    print(f"sidecar: {slides} slides, {late} started before their memory was ready (budget "
          f"{args.budget} s, {waited:.2f} s waited in all), {rebuilds} mid-window rebuilds when "
          f"late memory arrived; extraction "
          f"{session.sidecar.seconds:.2f} s over {session.sidecar.jobs} requests")
    print(f"memory update (window of {live.spec.window_len} tokens, {len(fixed.slots)} slots): rebuild "
          f"{rebuild * 1e3:.2f} ms, of which memory keys/values {encode * 1e3:.2f} ms; one cached "
          f"decode step {step * 1e3:.2f} ms; a rebuild = {rebuild / step:.1f} decode steps")


if __name__ == "__main__":
    main()
