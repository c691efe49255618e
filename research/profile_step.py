"""Where a training step's time goes: `triplet` against `raw` at equal attention positions.

    python -m research.profile_step --config configs/tiny.yaml --repeats 30 [--accum 8] \
        [--memory-rope fixed]

Builds each variant's model from the config (model/variants.py's gpt_config) with random weights
and one fixed batch of the config's shape: `raw` gets M + T tokens (no loss on the first M),
`triplet` M memory slots (4-token surface forms, all valid) + T tokens. Each repeat runs one
step of every variant in turn and times its phases: the memory encoding (TripletEncoder),
the attention plan (mask), the rest of the forward, the backward, Muon's and AdamW's steps.
With `--accum N` a step is N forward/backward passes (micro-batches) before the optimizers step
once, as gradient accumulation does: the optimizers' cost is per step, the rest per token.
Prints the median of every phase per variant and the triplet / raw ratio of whole steps and of
the forward + backward alone.
Single-threaded by default (`--threads`) so the two variants share nothing but the machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

import torch

from configs.schema import load_config
from model import attention
from model.gpt import GPT
from model.memory import Memory
from model.optim import build_optimizers
from model.variants import gpt_config

PHASES = ("encode", "plan", "forward", "backward", "muon", "adamw")


class PhaseTimer:
    """Wall time per named phase of the current step (CPU work is synchronous)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def timed_submodules(model: GPT, timer: PhaseTimer) -> None:
    """Count the TripletEncoder as its own phase (it runs inside the forward, whose time is
    what remains; `profile` times the attention plan the same way)."""
    if model.triplet_encoder is not None:
        encode = model.triplet_encoder.forward

        def timed_encode(*args, **kwargs):
            with timer.phase("encode"):
                return encode(*args, **kwargs)
        model.triplet_encoder.forward = timed_encode


def random_batch(vocab: int, batch: int, tokens: int, slots: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, vocab, (batch, tokens), generator=g)
    targets = torch.randint(0, vocab, (batch, tokens), generator=g)
    memory = None
    if slots:
        spans = torch.randint(0, vocab, (3, batch, slots, 4), generator=g)
        memory = Memory(subject=spans[0], relation=spans[1], object=spans[2],
                        ids=torch.full((batch, slots, 3), -1), negated=torch.zeros(batch, slots, dtype=torch.bool),
                        age=torch.randint(0, 512, (batch, slots), generator=g),
                        mask=torch.ones(batch, slots, dtype=torch.bool))
    return idx, targets, memory


def profile(config_path: str, repeats: int, memory_rope: str | None, accum: int = 1) -> dict:
    cfg = load_config(config_path)
    if memory_rope:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"memory_rope": memory_rope})})
    vocab, B = cfg.tokenizer.vocab_size, cfg.train.device_batch_size
    T, M = cfg.model.sequence_len, cfg.model.memory_slots
    timer = PhaseTimer()
    build_plan = attention.build_plan

    def timed_plan(*args, **kwargs):
        with timer.phase("plan"):
            return build_plan(*args, **kwargs)
    attention.build_plan = timed_plan  # model/gpt.py calls it through the module
    try:
        runs = {}
        for variant in ("raw", "triplet"):
            torch.manual_seed(0)
            model = GPT(replace(gpt_config(cfg, variant, vocab), attn_backend="sdpa"))
            model.init_weights()
            timed_submodules(model, timer)
            slots = M if variant == "triplet" else 0
            idx, targets, memory = random_batch(vocab, B, T + (M - slots), slots)
            if variant == "raw":
                targets[:, :M] = -1
            runs[variant] = (model, build_optimizers(model, cfg.train), idx, targets, memory)

        steps: dict[str, list[dict[str, float]]] = {v: [] for v in runs}
        for repeat in range(repeats + 2):  # the first two warm up
            for variant, (model, optimizers, idx, targets, memory) in runs.items():
                timer.seconds = {}
                t0 = time.perf_counter()
                for _ in range(accum):
                    with timer.phase("forward"):
                        loss = model(idx, targets, memory)
                    with timer.phase("backward"):
                        (loss / accum).backward()
                for name, opt in zip(("muon", "adamw"), optimizers):
                    with timer.phase(name):
                        opt.step()
                model.zero_grad(set_to_none=True)
                seconds = dict(timer.seconds, step=time.perf_counter() - t0)
                # encode and plan ran inside the forward
                seconds["forward"] -= seconds.get("encode", 0.0) + seconds.get("plan", 0.0)
                if repeat >= 2:
                    steps[variant].append(seconds)
    finally:
        attention.build_plan = build_plan

    medians = {v: {p: 1000 * statistics.median(s.get(p, 0.0) for s in rows)
                   for p in (*PHASES, "step")} for v, rows in steps.items()}
    def ratio(phases: tuple[str, ...]) -> float:
        return round(statistics.median(
            sum(t.get(p, 0.0) for p in phases) / sum(r.get(p, 0.0) for p in phases)
            for t, r in zip(steps["triplet"], steps["raw"])), 3)
    return {"config": config_path, "memory_rope": cfg.model.memory_rope, "repeats": repeats,
            "shape": {"layers": cfg.model.depth, "width": cfg.model.n_embd, "T": T, "M": M, "B": B,
                      "accum": accum},
            "ms": medians, "triplet_over_raw": ratio(("step",)),
            "triplet_over_raw_forward_backward": ratio(("encode", "plan", "forward", "backward"))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--memory-rope", choices=attention.MEMORY_ROPE)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = profile(args.config, args.repeats, args.memory_rope, args.accum)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.config} {result['shape']} memory_rope={result['memory_rope']}, "
          f"median of {args.repeats} steps of {args.accum} micro-batch(es), ms:")
    print(f"{'variant':<8}" + "".join(f"{p:>10}" for p in (*PHASES, "step")))
    for variant, ms in result["ms"].items():
        print(f"{variant:<8}" + "".join(f"{ms[p]:>10.1f}" for p in (*PHASES, "step")))
    print(f"triplet / raw (median of per-repeat ratios): step {result['triplet_over_raw']}, "
          f"forward + backward {result['triplet_over_raw_forward_backward']}")


if __name__ == "__main__":
    main()
