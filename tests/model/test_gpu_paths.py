"""The GPU configs' code paths, exercised on this CPU where they can run: the fineweb-d12
training path (narrowed) under torch.compile and bf16 autocast, its checkpoint loaded back, and
FlexAttention against SDPA on d12's attention shapes. The CUDA kernels themselves (flash-attn,
compiled flex, nccl) run only on a GPU: `python -m research.device_check` (BENCHMARKS.md)."""
import math
from pathlib import Path

import pytest
import torch
import yaml

from configs.schema import load_config
from model.attention import attend, build_plan
from model.checkpoint import latest_checkpoint
from model.evaluate import evaluate_variant, load_model
from model.gpt import GPT, GPTConfig
from model.train import train
from research.toy_lookup import ToyTask, write_toy_shards, write_toy_tokenizer

REPO = Path(__file__).resolve().parents[2]


def d12_on_this_cpu(tmp_path: Path) -> Path:
    """configs/fineweb-d12.yaml narrowed to width 64 (2 heads) and 2 of its 12 blocks (compiling
    12 blocks takes ~10 minutes on 2 CPU cores; each block is the same code), on this CPU, 3
    steps of bf16 autocast under torch.compile, on toy shards whose documents reach past one
    512-token window."""
    d12 = yaml.safe_load((REPO / "configs" / "fineweb-d12.yaml").read_text())
    run = tmp_path / "runs" / "d12"
    write_toy_tokenizer(run)
    write_toy_shards(run, ToyTask(facts=3, keys=10, filler_len=560), num_docs=12, docs_per_shard=6)
    config = {**d12, "name": "d12", "tokenizer": {"vocab_size": 300},
              "model": {**d12["model"], "depth": 2, "n_embd": 64, "n_head": 2, "attn_backend": "sdpa"},
              "train": {**d12["train"], "device": "cpu", "steps": 3, "checkpoint_every": 3,
                        "device_batch_size": 2, "total_batch_size": 2 * 512 * 2, "compile": True,
                        "precision": "bf16", "memory_source": "oracle", "variants": ["triplet"],
                        "wandb": {"mode": "disabled"}},
              "extract": {"backends": ["oracle"]},
              "ingest": {"source": "synthetic"},
              "evaluate": {"ablations": ["no_memory"], "max_windows": 8, "batch_size": 4}}
    path = tmp_path / "d12.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_the_d12_path_trains_compiled_in_bf16_and_its_checkpoint_loads_back(tmp_path):
    cfg = load_config(d12_on_this_cpu(tmp_path))
    assert cfg.model.sequence_len == 512 and cfg.model.memory_slots == 64 and cfg.train.compile
    run_dir = tmp_path / "runs" / "d12"
    torch.set_num_threads(1)
    train(cfg, run_dir, "triplet")
    path = latest_checkpoint(run_dir / "checkpoints" / "triplet")
    assert path.name == "step_000003"
    meta, model, spec = load_model(path)
    assert meta["model_config"]["n_embd"] == 64 and model.config.memory_slots == 64
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 weights
    result = evaluate_variant(cfg, run_dir, "triplet")  # evaluation autocasts the same way
    assert result["windows"] > 0 and math.isfinite(result["bpb"]) and result["step"] == 3


def test_flex_matches_sdpa_on_d12_attention_shapes():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=300, n_layer=1, n_head=6, n_embd=768, sequence_len=512,
                    memory_slots=64, attn_backend="sdpa")
    model = GPT(cfg)
    B, M, T, H, D = 2, 64, 512, 6, 128
    cos, sin, memory_cos, memory_sin = model.rotary_tables(T)
    valid = torch.rand(B, M) < 0.7
    q, k, v = (torch.randn(B, M + T, H, D) for _ in range(3))
    outs = {}
    for backend in ("sdpa", "flex"):
        plan = build_plan(backend, "unrotated", valid, cos, sin, memory_cos, memory_sin, batch_size=B)
        with torch.no_grad():
            outs[backend] = attend(q, k, v, plan)
    keep = torch.cat([valid, torch.ones(B, T, dtype=torch.bool)], dim=1)  # invalid slots' rows differ
    assert torch.allclose(outs["flex"][keep], outs["sdpa"][keep], atol=2e-5, rtol=1e-4)
