"""The extraction sidecar: the newest request wins, waits end at the budget, late results arrive
at the next call, a reset drops the old document's results, errors reach the caller; and the
engine with real spaCy extraction beside it, whose late memory joins at the next update."""
import threading
import time

import numpy as np
import pytest
import torch

from engine.engine import Engine
from engine.live_memory import LiveMemory, RunVocabulary
from engine.sidecar import Sidecar
from extraction.registry import make_backend
from model.dataloader import load_training_documents, make_batch
from model.evaluate import find_checkpoint, load_model
from model.memory import build_window_memory
from model.tokenizer import load_run_tokenizer


class Gate:
    """Work that waits for the test to open the gate, then runs the real work."""

    def __init__(self, work):
        self.work, self.opened, self.started = work, threading.Event(), []

    def __call__(self, tokens):
        self.started.append(list(tokens))
        assert self.opened.wait(10)
        return self.work(tokens)


def test_the_newest_request_wins_and_late_results_arrive_at_the_next_call():
    gate = Gate(lambda tokens: sum(tokens))
    with Sidecar(gate) as sidecar:
        sidecar.submit([1])
        while not gate.started:  # the worker is inside the first request
            time.sleep(0.001)
        sidecar.submit([2])
        sidecar.submit([3])  # replaces [2], which never runs
        started = time.perf_counter()
        assert sidecar.result(0.05) is None  # the budget ends the wait
        assert 0.04 < time.perf_counter() - started < 2
        gate.opened.set()
        assert sidecar.result(None) == 3  # waits for the newest request
        assert gate.started == [[1], [3]]
        assert sidecar.result(0) is None  # handed out once
        assert sidecar.jobs == 2


def test_a_reset_drops_results_of_the_old_document_and_errors_reach_the_caller():
    gate = Gate(lambda tokens: 1 / tokens[0])
    with Sidecar(gate) as sidecar:
        sidecar.submit([4])
        sidecar.reset()
        gate.opened.set()
        time.sleep(0.05)
        assert sidecar.result(0.05) is None
        sidecar.submit([0])
        with pytest.raises(ZeroDivisionError):
            sidecar.result(None)
        sidecar.submit([2])
        assert sidecar.result(None) == 0.5


def test_late_memory_joins_the_engine_at_the_next_update(story_run):
    cfg, run_dir = story_run
    tok = load_run_tokenizer(run_dir)
    live = LiveMemory(tok, make_backend("spacy", cfg.extract), RunVocabulary(run_dir), cfg.canonicalize)
    gate = Gate(live.state_after)
    _, model, spec = load_model(find_checkpoint(run_dir, "triplet", None))
    doc = load_training_documents(run_dir, "val", "spacy")[0]
    start = 3 * spec.window_len
    with Sidecar(gate) as sidecar:
        engine = Engine(model, spec, sidecar, budget=0.0)
        engine.start(doc.tokens[:start + 4].tolist())  # three slides, none waited for
        assert engine.stats.extraction_late == engine.stats.slides == 3 and engine.slots == []
        assert gate.started[0] == doc.tokens[:spec.window_len].tolist()  # the evicted tokens
        gate.opened.set()
        assert engine.update_memory(wait=None)  # the newest extraction: the evicted text so far
        assert engine.slots == build_window_memory(doc.memory, start, spec.memory_slots) != []
        assert engine.stats.memory_rebuilds == 1 and engine.stats.memory_rebuild_seconds > 0
        batch = make_batch([doc], np.array([[0, start]]), spec)
        fresh = model(batch.inputs, memory=batch.memory)[0, 3]  # the window's 4th token
        torch.testing.assert_close(engine.last_logits, fresh, atol=3e-5, rtol=1e-5)
