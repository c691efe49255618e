"""A small real run for the engine tests: synthetic stories through the pipeline's own stage
functions (ingest, tokenizer, extract with oracle and spaCy, canonicalize, shards), then every
variant of the table trained for a few steps in-process, so live memory can be checked against
the memory shards the shards stage wrote for the same text and every variant run through the
CLI; and the attention mass on memory that explain weights are checked against."""
import pytest
import torch

from configs.schema import dump_config, parse_config
from corpora.ingest import run_ingest
from engine.kv_cache import memory_layers
from extraction.canonicalize import run_canonicalize
from extraction.stage import run_extract
from model import attention
from model.tokenizer import run_tokenizer
from model.train import train
from model.variants import VARIANTS
from shards.build import run_shards

STORY_RUN = {
    "name": "story",
    "ingest": {"source": "synthetic", "docs_per_shard": 8,
               "synthetic": {"num_docs": 16, "min_distance": 30, "max_distance": 50}},
    "tokenizer": {"vocab_size": 512},
    "extract": {"backends": ["oracle", "spacy"]},
    "model": {"depth": 1, "n_embd": 32, "n_head": 2, "sequence_len": 32, "memory_slots": 8,
              "short_conv": 2, "attn_backend": "sdpa"},
    "train": {"variants": list(VARIANTS), "memory_source": "oracle", "steps": 3,
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


@pytest.fixture
def memory_mass():
    """`memory_mass(model, idx, memory)`: the uncached forward's logits [B, T, vocab], and each
    token's attention mass on memory [T] in that forward's own attention (recorded as it runs,
    row 0), mean over heads and the layers that attend to memory slots (engine.kv_cache
    `memory_layers`): what explain weights must sum to."""
    def measure(model, idx, memory):
        seen = []  # (placed queries, placed keys, plan) over [slots | tokens], per memory layer
        real_attend, real_attend_memory_keys = attention.attend, attention.attend_memory_keys

        def recording_attend(q, k, v, plan):
            if plan.num_memory:
                seen.append((*attention.place_rotary(q, k, plan), plan))
            return real_attend(q, k, v, plan)

        def recording_attend_memory_keys(q, k, v, q_memory, k_memory, v_memory, plan):
            q_placed, k_placed = attention.place_tokens_beside_memory_keys(q, k, q_memory,
                                                                           plan.cos, plan.sin)
            memory_keys = attention.place_memory_keys(k_memory)  # slots have no query: zeros
            seen.append((torch.cat([torch.zeros_like(memory_keys), q_placed], 1),
                         torch.cat([memory_keys, k_placed], 1), plan))
            return real_attend_memory_keys(q, k, v, q_memory, k_memory, v_memory, plan)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(attention, "attend", recording_attend)
            patch.setattr(attention, "attend_memory_keys", recording_attend_memory_keys)
            with torch.no_grad():
                logits = model(idx, memory=memory)
        assert len(seen) == len(memory_layers(model.config))
        mass = torch.zeros(idx.shape[1])
        for q, k, plan in seen:
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / plan.head_dim ** 0.5
            allowed = attention.sdpa_mask(plan.valid, plan.num_tokens)
            probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
            mass += probs[0, :, plan.num_memory:, :plan.num_memory].sum(-1).mean(0) / len(seen)
        return logits, mass
    return measure
