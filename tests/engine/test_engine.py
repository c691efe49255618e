"""The engine against fresh uncached forwards, for every variant of the table (the baselines
included: pooled chunks, stating sentences, facts as text, selected clauses, memory as layer
keys/values) and one registered here, with a prefix AND memory: teacher-forced reading across
window slides, a memory change in mid-window, greedy generation, explain weights; and sampling
that the seed reproduces. Checkpoints come from real (short) training runs on the toy task."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from configs.schema import load_config
from engine.engine import Engine, make_sampler, window_context
from engine.live_memory import MemoryState
from model.dataloader import document_windows, load_training_documents, make_batch
from model.evaluate import find_checkpoint, load_model
from model.train import train
from model.variants import VARIANTS, Variant, triplet_memory

ATOL = 3e-5


def first_two_tokens(doc, window_start, spec):
    return doc.tokens[:min(2, window_start)]


PROBE = Variant("engine_probe", "memory + the first 2 tokens", prefix=first_two_tokens,
                prefix_cap=lambda spec: 2, memory=triplet_memory, reads_memory_rows=True)
VARIANT_NAMES = [*VARIANTS, PROBE.name]  # every variant of the table, and the probe
SLOT_VARIANTS = [name for name in VARIANTS if VARIANTS[name].memory is not None] + [PROBE.name]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_run_builder):
    """Every variant trained for a few steps on the toy run (the short convolution on; `kv`
    injects into layer 0 of 2, so a layer without memory keys runs beside one with them)."""
    VARIANTS.add(PROBE)
    config, runs = toy_run_builder(tmp_path_factory.mktemp("engine"), 40, facts=2,
                                   model={"short_conv": 3, "kv_layer_stride": 2}, steps=6,
                                   checkpoint_every=3, variants=VARIANT_NAMES)
    cfg, run_dir = load_config(config), runs / "toy"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for variant in VARIANT_NAMES:
            train(cfg, run_dir, variant)
        yield run_dir
    finally:
        torch.set_num_threads(threads)
        del VARIANTS[PROBE.name]


def engine_and_docs(run_dir, variant):
    _, model, spec = load_model(find_checkpoint(run_dir, variant, None))
    # every document with its memory rows: a variant that reads none must not change with them
    return Engine(model, spec), model, spec, load_training_documents(run_dir, "val", "oracle")


def uncached(model, spec, doc, window_start):
    """Logits of the window's tokens by a fresh forward over [memory | prefix + window]."""
    batch = make_batch([doc], np.array([[0, window_start]]), spec)
    return model(batch.inputs, memory=batch.memory)[0, int(batch.prefix_len[0]):]


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_teacher_forced_reading_equals_fresh_forwards_window_by_window(trained, variant):
    engine, model, spec, docs = engine_and_docs(trained, variant)
    for doc in docs[:3]:
        tokens = doc.tokens.tolist()
        slides = engine.stats.slides
        logits = [engine.start(tokens[:1], MemoryState(doc.memory))]
        logits += [engine.feed([t]) for t in tokens[1:-1]]  # one token at a time, across slides
        logits = torch.cat(logits)
        for _, start in document_windows([doc], spec.window_len).tolist():
            expected = uncached(model, spec, doc, start)
            torch.testing.assert_close(logits[start:start + len(expected)], expected, atol=ATOL, rtol=1e-5)
        assert engine.stats.slides - slides == (len(tokens) - 2) // spec.window_len
        if engine.uses_memory:
            assert engine.slots == VARIANTS[variant].memory(doc, engine.window.start, spec)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_a_memory_change_mid_window_gives_the_fresh_forward_on_the_new_memory(trained, variant):
    engine, model, spec, docs = engine_and_docs(trained, variant)
    doc = docs[0]
    tokens = doc.tokens.tolist()
    start = spec.window_len  # the second window: both facts are evicted
    newest = [r for r in doc.memory if r.token_pos <= start][-1]
    engine.start(tokens[:start + 5], MemoryState([r for r in doc.memory if r is not newest]))
    before = engine.window.context
    # the newest evicted fact joins: a variant whose context is built from memory rows changes
    # (slots, or the prefix of facts / clauses) and the window is recomputed; the others stay
    changed = engine.set_memory(MemoryState(doc.memory))
    assert changed == VARIANTS[variant].reads_memory_rows == (engine.window.context != before)
    assert engine.stats.memory_rebuilds == int(changed)
    fresh = replace(doc, tokens=doc.tokens[:start + 6])  # the last token: the target
    torch.testing.assert_close(engine.last_logits, uncached(model, spec, fresh, start)[-1], atol=ATOL, rtol=1e-5)
    assert not engine.set_memory(MemoryState(doc.memory))  # the same context: nothing recomputed
    assert engine.stats.memory_rebuilds == int(changed)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_greedy_generation_equals_the_uncached_argmax_step_by_step(trained, variant):
    engine, model, spec, docs = engine_and_docs(trained, variant)
    doc = docs[0]
    prompt = doc.tokens[:7].tolist()
    engine.start(prompt, MemoryState(doc.memory))
    generated = list(prompt)

    def fresh(tokens):
        # a fresh forward over the window that holds the last token (a dummy target after it)
        start = (len(tokens) - 1) // spec.window_len * spec.window_len
        return uncached(model, spec, replace(doc, tokens=np.asarray(tokens + [0])), start)[-1]
    expected = fresh(generated)
    for step in engine.generate(40, make_sampler(0, None, 0)):  # 47 tokens: three windows of 16
        assert step.token == int(expected.argmax())
        generated.append(step.token)
        assert engine.tokens == generated  # in the document as soon as it is handed out
        expected = fresh(generated)
        torch.testing.assert_close(engine.last_logits, expected, atol=ATOL, rtol=1e-5)
    assert len(engine.tokens) == 47


@pytest.mark.parametrize("variant", SLOT_VARIANTS)
def test_explain_weights_sum_to_the_attention_mass_on_memory_window_by_window(trained, variant,
                                                                              memory_mass):
    _, model, spec, docs = engine_and_docs(trained, variant)
    engine = Engine(model, spec, explain=True)
    doc = docs[0]
    tokens = doc.tokens.tolist()
    logits = [engine.start(tokens[:1], MemoryState(doc.memory))]
    weights = [engine.last_weights]
    for token in tokens[1:-1]:
        logits.append(engine.feed([token]))
        weights.append(engine.last_weights)
        assert len(engine.last_weights) == len(engine.slots)  # one weight per slot it could see
    logits, mass_seen = torch.cat(logits), torch.stack([w.sum() for w in weights])
    windows_with_memory = 0
    for _, start in document_windows([doc], spec.window_len).tolist():
        batch = make_batch([doc], np.array([[0, start]]), spec)
        expected, mass = memory_mass(model, batch.inputs, batch.memory)
        prefix = int(batch.prefix_len[0])
        expected, mass = expected[0, prefix:], mass[prefix:]
        torch.testing.assert_close(logits[start:start + len(mass)], expected, atol=ATOL, rtol=1e-5)
        torch.testing.assert_close(mass_seen[start:start + len(mass)], mass, atol=1e-5, rtol=1e-5)
        windows_with_memory += bool(window_context(VARIANTS[variant], doc, start, spec).slots)
    assert windows_with_memory >= 2 and 0 < float(mass_seen.max()) < 1


def test_sampling_is_reproducible_by_seed_and_top_k_limits_it(trained):
    engine, _, _, docs = engine_and_docs(trained, "window")
    runs = []
    for seed in (5, 5, 6):
        engine.start(docs[0].tokens[:3].tolist())
        runs.append([s.token for s in engine.generate(20, make_sampler(1.0, 3, seed))])
    assert runs[0] == runs[1] and runs[0] != runs[2]
    engine.start(docs[0].tokens[:3].tolist())
    allowed = set(torch.topk(engine.last_logits, 3).indices.tolist())
    step = next(engine.generate(1, make_sampler(2.0, 3, 0)))
    assert step.token in allowed
    with pytest.raises(ValueError, match="start a document"):
        next(Engine(engine.model, engine.spec).generate(1, make_sampler(0, None, 0)))
