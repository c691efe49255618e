"""The variant table: a variant is one entry plus its builder, and everything else reads the table.

A throwaway variant (`memory_and_first`: the triplet memory AND the document's first 3 tokens
before the window) is registered for the test only and goes through config validation, the
loader, a training run, evaluation with an ablation, and the evaluate stage's job list."""
import math

import numpy as np
import pytest
import torch

from configs.schema import ConfigError, load_config, parse_config
from evaluation.stage import evaluation_jobs
from model.dataloader import document_windows, load_training_documents, make_batch
from model.evaluate import evaluate_variant
from model.train import train
from model.variants import (BUILT_IN, VARIANTS, Variant, WindowSpec, gpt_config, triplet_memory,
                            window_spec)

FIRST = 3


def first_tokens(doc, window_start, spec):
    """The document's first FIRST tokens, for windows that no longer see them."""
    return doc.tokens[:min(FIRST, window_start)]


@pytest.fixture
def throwaway():
    variant = Variant("memory_and_first", "memory + the first 3 tokens", prefix=first_tokens,
                      prefix_cap=lambda spec: FIRST, memory=triplet_memory,
                      reads_memory_rows=True, ablations=("no_memory",))
    VARIANTS.add(variant)
    yield variant
    del VARIANTS[variant.name]


def test_built_in_variants_and_what_they_add():
    assert BUILT_IN == ("window", "triplet", "raw", "full")
    spec = WindowSpec("raw", 16, 4, 48)
    assert spec.context_len == 20 and WindowSpec("full", 16, 4, 48).context_len == 64
    assert WindowSpec("triplet", 16, 4, 48).context_len == 16
    assert VARIANTS["triplet"].memory is not None and VARIANTS["raw"].memory is None
    with pytest.raises(ValueError, match="registered already"):
        VARIANTS.add(Variant("raw", "again"))
    with pytest.raises(ValueError, match="unknown ablation kinds"):
        Variant("odd", "x", ablations=("sometimes",))
    with pytest.raises(ValueError, match="needs a prefix_cap"):
        Variant("odd", "x", prefix=first_tokens)


def test_a_registered_variant_trains_and_evaluates(toy_run, throwaway):
    config, runs = toy_run(num_docs=40, steps=4, checkpoint_every=2,
                           variants=["window", "memory_and_first"])
    cfg = load_config(config)  # the config accepts the new name
    assert cfg.train.variants == ["window", "memory_and_first"]
    run_dir = runs / "toy"

    # loader: the prefix is the first 3 tokens, no loss on it; memory as `triplet` builds it
    spec = window_spec(cfg, "memory_and_first")
    docs = load_training_documents(run_dir, "train", "oracle")
    windows = document_windows(docs, spec.window_len)
    second = windows[windows[:, 1] == 16][:2]
    batch = make_batch(docs, second, spec)
    for b, (d, _) in enumerate(second.tolist()):
        assert batch.inputs[b, :FIRST].tolist() == docs[d].tokens[:FIRST].tolist()
        assert batch.inputs[b, FIRST:FIRST + 16].tolist() == docs[d].tokens[16:32].tolist()
        assert (batch.targets[b, :FIRST] == -1).all()
    assert batch.prefix_len.tolist() == [FIRST, FIRST] and batch.memory.mask.sum() == 2
    model_cfg = gpt_config(cfg, "memory_and_first", 300)
    assert model_cfg.memory_slots == 4 and model_cfg.sequence_len == 16 + FIRST

    # a train step (the real training loop, in-process) and evaluation with its ablation
    torch.set_num_threads(1)
    train(cfg, run_dir, "memory_and_first")
    with_memory = evaluate_variant(cfg, run_dir, "memory_and_first")
    removed = evaluate_variant(cfg, run_dir, "memory_and_first", memory="none")
    assert with_memory["step"] == 4 and math.isfinite(with_memory["bpb"])
    assert with_memory["positions"] > removed["positions"]  # memory slots count as positions
    with pytest.raises(ValueError, match="does not apply to variant 'memory_and_first'"):
        evaluate_variant(cfg, run_dir, "memory_and_first", memory="shuffled")
    assert evaluation_jobs(cfg) == [("window", "none"), ("memory_and_first", "none"),
                                    ("memory_and_first", "no_memory")]


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train.variants: 'tripple' is not a training variant; "
                                          r"choose from window, triplet, raw, full"):
        parse_config({"name": "x", "train": {"variants": ["window", "tripple"]}})


def test_loader_and_variant_prefixes_are_the_raw_tokens_before_the_window():
    doc_tokens = np.arange(100, 200)

    class Doc:
        tokens = doc_tokens
    spec_raw, spec_full = WindowSpec("raw", 16, 4, 48), WindowSpec("full", 16, 4, 48)
    assert VARIANTS["raw"].prefix(Doc, 32, spec_raw).tolist() == list(range(128, 132))
    assert VARIANTS["full"].prefix(Doc, 64, spec_full).tolist() == list(range(116, 164))
    assert VARIANTS["full"].prefix(Doc, 0, spec_full).tolist() == []
