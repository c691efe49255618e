"""Merged memory is recalled: a model trained (here, briefly) to look facts up by key answers a
question about document A inside document B when A's memory is merged into B's, and cannot
without it. The toy lookup task stands in for the synthetic stories (README "Generating with live
memory" shows the same on the `make demo` run); memory rows merge as engine/live_memory.py merges
them: the loaded memory stated at token 0, then the document's own."""
import torch

from configs.schema import load_config
from engine.engine import Engine
from engine.live_memory import MemoryState
from model.dataloader import load_training_documents
from model.evaluate import find_checkpoint, load_model
from model.train import train


def merged(a_rows, b_rows):
    return sorted([r._replace(token_pos=0) for r in a_rows] + b_rows, key=lambda r: r.token_pos)


def test_facts_of_story_a_merged_into_story_b_are_recalled_in_b(toy_run):
    config, runs = toy_run(num_docs=300, facts=2, model={"memory_slots": 4, "short_conv": 4},
                           steps=300, device_batch_size=64, checkpoint_every=1000, warmup_steps=5,
                           embedding_lr=0.05, variants=["triplet"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_config(config), runs / "toy", "triplet")
    finally:
        torch.set_num_threads(threads)
    _, model, spec = load_model(find_checkpoint(runs / "toy", "triplet", None))
    engine = Engine(model, spec)
    docs = load_training_documents(runs / "toy", "val", "oracle")
    with_a = without_a = pairs = 0
    for a, b in zip(docs, docs[1:]):
        if {r.subject for r in a.memory} & {r.subject for r in b.memory} or \
                {r.object for r in a.memory} & {r.object for r in b.memory}:
            continue  # a shared key would be an upsert, a shared value no test
        statements = b.tokens[:b.recall_spans[0][0] - 2].tolist()  # B's facts and filler
        for fact in a.memory:
            question = statements + [*fact.subject, *fact.relation]  # asks A's fact, inside B
            engine.start(question, MemoryState(merged(a.memory, b.memory)))
            with_a += int(engine.last_logits.argmax()) == fact.object[0]
            engine.start(question, MemoryState(b.memory))
            without_a += int(engine.last_logits.argmax()) == fact.object[0]
            pairs += 1
    assert pairs >= 30
    # measured: 56 of 74 with A's memory merged in, 0 without
    assert with_a >= 0.6 * pairs and without_a <= 0.1 * pairs, (with_a, without_a, pairs)
