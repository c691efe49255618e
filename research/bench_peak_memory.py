"""Peak memory of a training step against model/resources.py's estimate (CPU, fp32, sdpa).

    python -m research.bench_peak_memory --layers 4 --width 256 --heads 4 --window 256 --slots 64 \\
        --batch 8 --vocab 4096

Builds the GPT, its optimizers and a random batch with memory slots, runs three training steps
and prints one JSON line: the process's peak resident memory above what it held before the model
was built (`measured`), `training_memory`'s estimate and their ratio. Run one shape per process:
the peak is the process's own (VmHWM, reset before the model is built).
"""
from __future__ import annotations

import argparse
import json
import re
import resource

import torch

from configs.schema import TrainConfig
from model.gpt import GPT, GPTConfig
from model.memory import Memory
from model.optim import build_optimizers
from model.resources import training_memory

STEPS = 3


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def reset_peak() -> int:
    """Restart the peak at the resident size now (Linux: clear_refs 5) and return that size.
    Without the reset, a peak from imports (which varies with what the parent process left in the
    environment) could hide the training steps' peak. Elsewhere: the lifetime peak so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmRSS")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    try:
        return _status_bytes("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(cfg: GPTConfig, batch: int) -> dict[str, float]:
    """Peak resident bytes above the start of STEPS training steps, and the estimate."""
    start = reset_peak()
    model = GPT(cfg)
    optimizers = build_optimizers(model, TrainConfig())
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, cfg.vocab_size, (batch, cfg.sequence_len), generator=g)
    memory = None
    if cfg.memory_slots:
        B, M = batch, cfg.memory_slots
        spans = torch.randint(0, cfg.vocab_size, (3, B, M, 4), generator=g)
        memory = Memory(subject=spans[0], relation=spans[1], object=spans[2],
                        ids=torch.full((B, M, 3), -1), negated=torch.zeros(B, M, dtype=torch.bool),
                        age=torch.zeros(B, M, dtype=torch.long), mask=torch.ones(B, M, dtype=torch.bool))
    for _ in range(STEPS):
        model(idx, idx, memory).backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
    measured = peak_rss() - start
    estimate = training_memory(cfg, batch, "sdpa").total
    return {"measured": measured, "estimate": estimate, "ratio": estimate / measured}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("layers", 2), ("width", 128), ("heads", 2), ("window", 64), ("slots", 16),
                          ("batch", 16), ("vocab", 2048)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = GPTConfig(vocab_size=args.vocab, n_layer=args.layers, n_head=args.heads,
                    n_embd=args.width, sequence_len=args.window, memory_slots=args.slots,
                    attn_backend="sdpa")
    print(json.dumps({**vars(args), **measure(cfg, args.batch)}))


if __name__ == "__main__":
    main()
