"""model/resources.py: exact parameter counts, the training plan's arithmetic, and the memory
estimate against the measured peak of real training steps on this CPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from configs.schema import parse_config
from model.gpt import GPT, GPTConfig
from model.resources import adam_parameter_count, parameter_count, training_plan

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("extra", [{}, {"memory_slots": 8}, {"memory_slots": 8, "tie_embeddings": True,
                                                            "short_conv": 4},
                                   {"memory_slots": 8, "memory_injection": "kv", "kv_layer_stride": 2},
                                   {"memory_slots": 8, "triplet_encoder": "vocab", "id_buckets": 33}])
def test_parameter_counts_are_exact(extra):
    cfg = GPTConfig(vocab_size=300, n_layer=3, n_head=2, n_embd=64, sequence_len=16, **extra)
    model = GPT(cfg)
    assert parameter_count(cfg) == sum(p.numel() for p in model.parameters())
    groups = model.param_groups()
    assert adam_parameter_count(cfg) == sum(p.numel() for k, ps in groups.items() if k != "matrix"
                                            for p in ps)


def test_the_plan_counts_tokens_positions_and_flops():
    cfg = parse_config({"name": "p", "model": {"depth": 2, "n_embd": 64, "n_head": 2,
                                               "sequence_len": 32, "memory_slots": 8},
                        "train": {"steps": 10, "device_batch_size": 4, "device": "cpu",
                                  "full_context_cap": 48}})
    triplet, full = training_plan(cfg, "triplet"), training_plan(cfg, "full")
    assert triplet.window_tokens == full.window_tokens == 10 * 4 * 32
    assert (triplet.positions_per_sequence, full.positions_per_sequence) == (40, 80)
    assert triplet.flops > 0 and full.flops > triplet.flops
    assert 0 < triplet.memory_share < 1 and full.memory_share == 0
    assert triplet.hours is not None  # this machine has a measured throughput


@pytest.mark.parametrize("shape", [
    ["--layers", "4", "--width", "256", "--heads", "4", "--window", "256", "--slots", "64",
     "--batch", "8", "--vocab", "4096"],
    ["--layers", "3", "--width", "192", "--heads", "3", "--window", "128", "--slots", "16",
     "--batch", "32", "--vocab", "2048"],
])
def test_the_memory_estimate_is_within_a_quarter_of_the_measured_peak(shape):
    proc = subprocess.run([sys.executable, "-m", "research.bench_peak_memory", *shape], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert 0.8 < result["ratio"] < 1.25, result
