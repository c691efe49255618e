"""The dataloader: windows and targets per variant, disjoint ranks, exact resume, clear errors."""
import numpy as np
import pytest
import torch

from model.dataloader import (TrainingDocument, WindowLoader, document_windows, evicted_context,
                              load_training_documents, make_batch)
from model.variants import WindowSpec
from model.memory import memory_rows


def arange_doc(n: int, recall=(), memory=()) -> TrainingDocument:
    mask = np.zeros(n, dtype=bool)
    mask[list(recall)] = True
    return TrainingDocument("d", np.arange(1000, 1000 + n), mask, [], memory_rows(memory))


def fact(pos, obj):
    return {"token_pos": pos, "clause_pos": pos - 1, "subject_tokens": [1], "relation_tokens": [2], "object_tokens": [obj],
            "subject_id": -1, "relation_id": -1, "object_id": -1, "negated": False,
            "functional": False}


def test_windows_cover_every_target_once():
    docs = [arange_doc(10), arange_doc(9)]
    assert document_windows(docs, 4).tolist() == [[0, 0], [0, 4], [0, 8], [1, 0], [1, 4]]
    batch = make_batch(docs, document_windows(docs, 4), WindowSpec("window", 4, 2, 8))
    targets = batch.targets[batch.targets >= 0].tolist()
    assert targets == list(range(1001, 1010)) + list(range(1001, 1009))


def test_evicted_context_counts_the_tokens_before_each_window_of_the_loader():
    lengths = [1, 2, 5, 9, 10, 33]  # <|bos|> only, one target, ..., several windows
    docs = [arange_doc(n) for n in lengths]
    starts = document_windows(docs, 4)[:, 1]
    stats = evicted_context(np.array(lengths), 4)
    assert stats["documents"] == 6 and stats["share_documents_with_evicted"] == round(3 / 6, 4)
    assert stats["windows"] == len(starts) == 1 + 1 + 2 + 3 + 8
    assert stats["windows_with_evicted"] == int((starts > 0).sum()) == 1 + 2 + 7
    assert stats["share_with_evicted"] == round(float((starts > 0).mean()), 4)
    assert stats["evicted_tokens_mean"] == round(float(starts.mean()), 1)
    assert stats["evicted_tokens_median"] == float(np.median(starts))
    assert evicted_context(np.array([3, 4]), 64)["share_with_evicted"] == 0.0
    assert evicted_context(np.array([], dtype=int), 64)["windows"] == 0


def test_each_variant_has_its_context_and_the_same_targets():
    doc = arange_doc(30, recall=[13, 21], memory=[fact(3, 7), fact(9, 8), fact(12, 9)])
    window = np.array([[0, 10]])
    targets = list(range(1011, 1021))
    by_variant = {v: make_batch([doc], window, WindowSpec(v, 10, 2, 6))
                  for v in ("window", "triplet", "raw", "full")}
    for variant, prefix in (("window", []), ("triplet", []), ("raw", [1008, 1009]),
                            ("full", list(range(1004, 1010)))):
        b = by_variant[variant]
        assert b.inputs[0].tolist() == prefix + list(range(1010, 1020)), variant
        assert b.targets[0].tolist() == [-1] * len(prefix) + targets, variant
        assert b.recall[0].nonzero().flatten().tolist() == [len(prefix) + 2], variant
        assert b.prefix_len.tolist() == [len(prefix)] and b.window_start.tolist() == [10]
        assert (b.memory is not None) == (variant == "triplet")
    mem = by_variant["triplet"].memory
    assert mem.object[0, :, 0].tolist() == [7, 8] and mem.age[0].tolist() == [7, 1]  # newest 2


def test_short_contexts_are_right_padded():
    docs = [arange_doc(12), arange_doc(5)]
    b = make_batch(docs, np.array([[0, 0], [0, 8], [1, 0]]), WindowSpec("full", 4, 2, 100))
    assert b.inputs.shape == (3, 11)  # the longest: 8 earlier tokens + 3 window tokens
    assert b.targets[0].tolist() == [1001, 1002, 1003, 1004] + [-1] * 7
    assert b.targets[1].tolist() == [-1] * 8 + [1009, 1010, 1011]
    assert b.targets[2].tolist() == [1001, 1002, 1003, 1004] + [-1] * 7
    assert b.window_tokens == 11


def test_ranks_read_disjoint_documents(toy_run):
    _, runs = toy_run(num_docs=23)
    run_dir = runs / "toy"
    everything = {d.doc_id for d in load_training_documents(run_dir, "train", "oracle")}
    parts = [{d.doc_id for d in load_training_documents(run_dir, "train", "oracle", rank=r, world_size=3)}
             for r in range(3)]
    assert sum(len(p) for p in parts) == len(everything) == 18  # every 5th document is val
    assert set().union(*parts) == everything
    val = load_training_documents(run_dir, "val", "oracle")
    assert {d.doc_id for d in val}.isdisjoint(everything) and len(val) == 5


def test_memory_rows_of_the_chosen_extractor_only(toy_run):
    _, runs = toy_run(num_docs=5)
    oracle, = load_training_documents(runs / "toy", "val", "oracle")
    spacy, = load_training_documents(runs / "toy", "val", "spacy")
    assert oracle.tokens[3] == oracle.memory[0].object[0]  # the oracle row states the true value
    assert spacy.memory[0].object == (150,)
    with pytest.raises(ValueError, match="no memory rows from extractor 'vllm'"):
        load_training_documents(runs / "toy", "val", "vllm")
    assert load_training_documents(runs / "toy", "val", None)[0].memory == []
    assert oracle.recall_spans == [(27, 28, 5)] and oracle.recall.nonzero()[0].tolist() == [27]


def test_resumed_loader_yields_the_identical_sequence(toy_run):
    _, runs = toy_run(num_docs=12)
    docs = load_training_documents(runs / "toy", "train", "oracle", rank=1, world_size=2)
    spec = WindowSpec("triplet", 16, 4, 48)
    loader = WindowLoader(docs, spec, batch_size=3, seed=5, rank=1, world_size=2)
    for _ in range(4):
        next(loader)
    state = loader.state_dict()
    expected = [next(loader) for _ in range(6)]  # crosses an epoch boundary (10 windows)
    assert loader.state_dict()["epoch"] >= 1
    resumed = WindowLoader(docs, spec, batch_size=3, seed=5, rank=1, world_size=2)
    resumed.load_state_dict(state)
    for want, got in zip(expected, [next(resumed) for _ in range(6)]):
        assert torch.equal(want.inputs, got.inputs) and torch.equal(want.targets, got.targets)
        assert torch.equal(want.memory.object, got.memory.object)
    other_seed = WindowLoader(docs, spec, batch_size=3, seed=6, rank=1, world_size=2)
    with pytest.raises(ValueError, match="seed=5 but this run has seed=6"):
        other_seed.load_state_dict(state)


def test_missing_shards_name_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the shards stage first"):
        load_training_documents(tmp_path, "train", "oracle")


def test_memory_source_matches_the_extractor_by_prefix():
    import pyarrow as pa
    from model.dataloader import source_matches
    sources = pa.array(["vllm:Qwen/Qwen2.5-7B", "vllm", "vllmx", "oracle", "spacy"])
    assert source_matches(sources, "vllm").to_pylist() == [True, True, False, False, False]
    assert source_matches(sources, "oracle").to_pylist() == [False, False, False, True, False]
