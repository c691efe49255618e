"""Live evaluation: the val documents replayed through the engine, with memory extracted live from
the text that leaves each window, next to offline evaluation of the same windows.

    python -m engine evaluate-live --run runs/tiny [--variant triplet] [--extractor spacy]
    result = evaluate_live(Path("runs/tiny"), "triplet")

Offline is `model.evaluate.evaluate_variant` with the extractor's pre-extracted memory rows (for a
variant built from memory rows; the others as trained). Live, each document is read by the
engine, teacher-forced, one window at a time: when a window starts, the sidecar extracts the
evicted text and the memory policy builds the slots, then the window's tokens go through the KV
cache. The windows, targets and metrics are offline's (`model.evaluate.Totals` over the same
windows of the same documents, `evaluate.max_windows` of them), so the two differ only where the
live memory differs from the offline one: `memory_equal_windows` counts the windows whose live
context (the variant's slots and prefix, engine.engine `window_context`) is the offline one.
Every variant of the table runs; one that reads no memory rows needs no extraction and equals
offline in every window. By default the
engine waits for each extraction (`budget` None); with a budget, `extraction_late` counts the
windows that started before their memory was ready.

Figures carry their n: recall spans for recall_acc (with a 95% Wilson interval), target tokens
for bpb. On a GPU, offline evaluation runs under bf16 autocast and the engine in fp32, so the two
can differ in the last digits there even with equal memory (measured on CPU only so far).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from configs.schema import load_config
from engine.engine import window_context
from engine.session import open_session
from model.dataloader import document_windows, make_batch
from model.evaluate import Totals, evaluate_variant, val_documents
from model.variants import variant_of
from warehouse.run_folder import RUN_CONFIG


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    return {"recall_acc": result["recall_acc"], "recall_spans": result["recall_spans"],
            "recall_acc_interval": result["recall_acc_ci"],  # Wilson's (model.evaluate)
            "bpb": result["bpb"], "tokens": result["tokens"], "recall_bpb": result["recall_bpb"],
            "positions": result["positions"], "windows": result["windows"]}


@torch.no_grad()
def evaluate_live(run_dir: Path, variant: str = "triplet", *, extractor: str = "spacy",
                  step: int | None = None, budget: float | None = None,
                  max_windows: int | None = None) -> dict[str, Any]:
    """Offline and live figures of `variant` on the same val windows (module docstring)."""
    run_dir = Path(run_dir)
    session = open_session(run_dir, variant, step=step, extractor=extractor, budget=budget)
    try:
        cfg = load_config(run_dir / RUN_CONFIG)
        if max_windows is not None:
            cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"max_windows": max_windows})})
        memory = extractor if variant_of(variant).reads_memory_rows else "as_trained"
        offline_started = time.perf_counter()
        offline = evaluate_variant(cfg, run_dir, variant, memory, session.step)
        offline_seconds = time.perf_counter() - offline_started
        live_started = time.perf_counter()
        live, equal = _replay(session, cfg.train.memory_source, memory, cfg.evaluate.max_windows)
        stats = session.engine.stats
        return {"variant": variant, "memory": memory, "step": session.step,
                "offline": _figures(offline), "live": _figures(live),
                "memory_equal_windows": equal, "slides": stats.slides,
                "extraction_late": stats.extraction_late,
                "seconds": {"offline": offline_seconds, "live": time.perf_counter() - live_started,
                            "extraction": session.sidecar.seconds if session.sidecar else 0.0}}
    finally:
        session.close()


def _replay(session, trained_source: str, memory: str, max_windows: int | None) -> tuple[dict, int]:
    """Totals of the engine's teacher-forced logits over the offline windows, and in how many
    windows the live context equals the offline one."""
    engine = session.engine
    spec = engine.spec
    docs = val_documents(session.run_dir, spec.variant, memory, trained_source)
    windows = document_windows(docs, spec.window_len)[:max_windows]
    token_bytes = torch.tensor(session.tok.token_bytes(), device=engine.device)
    totals, equal = Totals(), 0
    for d, s in windows.tolist():
        doc = docs[d]
        end = min(s + spec.window_len, len(doc.tokens) - 1)
        if s == 0:
            logits = engine.start(doc.tokens[:end].tolist())
        else:
            logits = engine.feed(doc.tokens[s:end].tolist())
        # the window as the engine read it: the offline targets after the live context (its
        # prefix and slots, which may differ from the offline ones in length and count)
        live = replace(doc, memory=engine.rows)
        batch = make_batch([live], np.array([[0, s]]), spec).to(engine.device)
        padded = torch.zeros(1, batch.inputs.shape[1], logits.shape[-1], device=engine.device)
        padded[0, len(engine.prefix):] = logits
        equal += engine.window.context == window_context(engine.variant, doc, s, spec)
        totals.add(batch, padded, token_bytes, [live], spec.window_len)
    return totals.result(), equal


def result_lines(result: dict[str, Any]) -> list[str]:
    """The comparison as a small table, every figure with its n."""
    def row(name: str, f: dict[str, Any]) -> str:
        interval = f["recall_acc_interval"]
        acc = "–" if f["recall_acc"] is None else f"{f['recall_acc']:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
        return (f"| {name} | {acc} | {f['recall_spans']} | {f['bpb']:.4f} | {f['tokens']} | "
                f"{f['positions']:.1f} |")
    return [f"evaluate-live: variant {result['variant']}, memory {result['memory']}, step {result['step']}, "
            f"{result['offline']['windows']} val windows",
            "| | recall_acc [95% CI] | n spans | bpb | n tokens | positions |",
            "|---|---|---|---|---|---|",
            row("offline (pre-extracted memory)", result["offline"]),
            row("live (engine + sidecar)", result["live"]),
            f"live memory = offline memory in {result['memory_equal_windows']} of "
            f"{result['live']['windows']} windows; {result['extraction_late']} of {result['slides']} "
            f"slides started before their memory was ready",
            f"seconds: offline {result['seconds']['offline']:.1f}, live {result['seconds']['live']:.1f} "
            f"(extraction {result['seconds']['extraction']:.1f})"]
