"""A small real run for the engine tests: synthetic stories through the pipeline's own stage
functions (ingest, tokenizer, extract with oracle and spaCy, canonicalize, shards), then
`triplet` and `window` trained for a few steps in-process, so live memory can be checked against
the memory shards the shards stage wrote for the same text."""
import pytest
import torch

from configs.schema import dump_config, parse_config
from corpora.ingest import run_ingest
from extraction.canonicalize import run_canonicalize
from extraction.stage import run_extract
from model.tokenizer import run_tokenizer
from model.train import train
from shards.build import run_shards

STORY_RUN = {
    "name": "story",
    "ingest": {"source": "synthetic", "docs_per_shard": 8,
               "synthetic": {"num_docs": 16, "min_distance": 30, "max_distance": 50}},
    "tokenizer": {"vocab_size": 512},
    "extract": {"backends": ["oracle", "spacy"]},
    "model": {"depth": 1, "n_embd": 32, "n_head": 2, "sequence_len": 32, "memory_slots": 8,
              "short_conv": 2, "attn_backend": "sdpa"},
    "train": {"variants": ["window", "triplet"], "memory_source": "oracle", "steps": 3,
              "device_batch_size": 4, "checkpoint_every": 3, "warmup_steps": 1},
    "evaluate": {"max_windows": 40, "batch_size": 8},
}


@pytest.fixture(scope="session")
def story_run(tmp_path_factory):
    """(config, run folder) of the small synthetic run, built once per test session."""
    cfg = parse_config(STORY_RUN)
    run_dir = tmp_path_factory.mktemp("engine_story") / "runs" / "story"
    for stage in (run_ingest, run_tokenizer, run_extract, run_canonicalize, run_shards):
        stage(cfg, run_dir)
    (run_dir / "config.yaml").write_text(dump_config(cfg))  # as the flow writes it
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for variant in cfg.train.variants:
            train(cfg, run_dir, variant)
    finally:
        torch.set_num_threads(threads)
    return cfg, run_dir
