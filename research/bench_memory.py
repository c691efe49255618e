"""Memory benchmarks for BENCHMARKS.md: rotary placement of memory, and triplet vs window speed.

    python -m research.bench_memory rope  [--steps 800] [--seeds 2]   # both memory_rope options
    python -m research.bench_memory speed [--repeats 10]                # step time, equal positions

`rope` trains a tiny GPT per `memory_rope` option, side by side, on a toy task that only memory
can solve: each window contains queries `subject o1 o2` whose two-token answer is the object of the
memory slot with that subject; nothing in the window gives it away.
Loss is on the answer tokens only. It reports the eval loss with memory and with memory removed
(chance is ln(#values) per answer token), at the trained window and at a 4x longer one.

`speed` times forward+backward of `triplet` (M slots + T tokens) against `window` (T + M tokens,
the same number of attention positions) per backend that can run here (flex: forward only on CPU).
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from model.gpt import GPT, GPTConfig
from model.memory import Memory

FIRST_FILLER, NUM_FILLER = 2, 14
RELATION = 1  # one relation: the task is about finding and copying, not about relations
FIRST_SUBJECT, NUM_SUBJECTS = 16, 32
FIRST_VALUE, NUM_VALUES = 48, 64
TOY_VOCAB = FIRST_VALUE + NUM_VALUES
QUERIES_PER_WINDOW = 8


def toy_batch(batch_size: int, window: int, slots: int, g: torch.Generator) -> tuple:
    """(idx, targets, memory) for the toy task; 2..slots valid slots per row, the rest padded.

    The window is filler with QUERIES_PER_WINDOW queries `subject o1 o2` placed anywhere; the
    targets are o1 (after the subject) and o2 (after o1), known only from the memory slot
    (subject, RELATION, o1 o2).
    """
    idx = FIRST_FILLER + torch.randint(0, NUM_FILLER, (batch_size, window), generator=g)
    targets = torch.full_like(idx, -1)
    subject = torch.full((batch_size, slots, 1), -1)
    relation = torch.full((batch_size, slots, 1), -1)
    obj = torch.full((batch_size, slots, 2), -1)
    mask = torch.zeros(batch_size, slots, dtype=torch.bool)
    span = window // QUERIES_PER_WINDOW
    for b in range(batch_size):
        n_valid = int(torch.randint(min(2, slots), slots + 1, (1,), generator=g))
        order = torch.randperm(slots, generator=g)[:n_valid]  # valid slots anywhere among M
        subject[b, order, 0] = FIRST_SUBJECT + torch.randperm(NUM_SUBJECTS, generator=g)[:n_valid]
        relation[b, order, 0] = RELATION
        obj[b, order] = FIRST_VALUE + torch.randint(0, NUM_VALUES, (n_valid, 2), generator=g)
        mask[b, order] = True
        for q in range(QUERIES_PER_WINDOW):  # one query per third of the window, anywhere in it
            start = q * span + int(torch.randint(0, span - 2, (1,), generator=g))
            slot = order[int(torch.randint(0, n_valid, (1,), generator=g))]
            idx[b, start:start + 3] = torch.cat([subject[b, slot], obj[b, slot]])
            targets[b, start:start + 2] = obj[b, slot]
    memory = Memory(subject=subject, relation=relation, object=obj,
                    ids=torch.full((batch_size, slots, 3), -1),
                    negated=torch.zeros(batch_size, slots, dtype=torch.bool),
                    age=torch.randint(0, 512, (batch_size, slots), generator=g), mask=mask)
    return idx, targets, memory


def toy_model(memory_rope: str, window: int, slots: int, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOY_VOCAB, n_layer=2, n_head=2, n_embd=64, sequence_len=window,
                         memory_slots=slots, attn_backend="sdpa", memory_rope=memory_rope))


@torch.no_grad()
def toy_eval(model: GPT, batches: list[tuple]) -> dict[str, float]:
    """Mean answer-token loss with and without memory, and with memory split into the first
    answer token (found by subject) and the second (found by the first)."""
    model.eval()
    sums = {"with_memory": 0.0, "without_memory": 0.0, "first_token": 0.0, "second_token": 0.0}
    for idx, targets, memory in batches:
        nats = model(idx, targets, memory, loss_reduction="none")
        first = (targets >= 0) & (idx < FIRST_VALUE)  # the input is the subject
        second = (targets >= 0) & (idx >= FIRST_VALUE)  # the input is o1
        sums["with_memory"] += nats[targets >= 0].mean().item()
        sums["first_token"] += nats[first].mean().item()
        sums["second_token"] += nats[second].mean().item()
        sums["without_memory"] += model(idx, targets, None).item()
    model.train()
    return {k: v / len(batches) for k, v in sums.items()}


def train_toy(ropes: tuple[str, ...], steps: int, seed: int = 0, window: int = 32, slots: int = 8,
              batch_size: int = 32, lr: float = 3e-2) -> list[dict]:
    """Train one model per memory_rope option in lockstep on the same batches; eval losses at
    `window` and at 4x `window` (positions never seen in training)."""
    models = [toy_model(rope, window, slots, seed) for rope in ropes]
    opts = [torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
            for m in models]
    seconds = [0.0] * len(models)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        batch = toy_batch(batch_size, window, slots, g)
        for i, (model, opt) in enumerate(zip(models, opts)):
            t0 = time.perf_counter()
            loss = model(*batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seconds[i] += time.perf_counter() - t0
    eval_g = torch.Generator().manual_seed(10_000 + seed)
    same = [toy_batch(64, window, slots, eval_g) for _ in range(4)]
    longer = [toy_batch(64, 4 * window, slots, eval_g) for _ in range(4)]
    return [{"memory_rope": rope, "seed": seed, "steps": steps, "seconds": sec,
             "eval": toy_eval(model, same), "eval_4x_window": toy_eval(model, longer)}
            for rope, model, sec in zip(ropes, models, seconds)]


def bench_rope(steps: int, seeds: int) -> None:
    print(f"toy task: chance = ln({NUM_VALUES}) = {math.log(NUM_VALUES):.3f} nats per answer token")
    print("eval_with: eval loss on the answer tokens with memory (o1 / o2: first and second answer "
          "token); eval_without: with memory removed; 4x_*: the same on windows 4x the trained "
          "length; seconds: training time")
    print("memory_rope  seed  steps  seconds  eval_with  (o1 / o2)        eval_without  "
          "4x_with  4x_without")
    for seed in range(seeds):
        for r in train_toy(("unrotated", "fixed"), steps, seed):
            print(f"{r['memory_rope']:<11}  {seed:>4}  {steps:>5}  {r['seconds']:>7.1f}  "
                  f"{r['eval']['with_memory']:>9.3f}  ({r['eval']['first_token']:.3f} / "
                  f"{r['eval']['second_token']:.3f})  {r['eval']['without_memory']:>12.3f}  "
                  f"{r['eval_4x_window']['with_memory']:>7.3f}  "
                  f"{r['eval_4x_window']['without_memory']:>10.3f}", flush=True)


def time_pair(model: GPT, runs: list[tuple], backward: bool, repeats: int) -> list[float]:
    """Median seconds of one forward (+ backward) per input tuple (idx, targets, memory); the
    inputs alternate within each repeat so machine load drifts hit all of them alike."""
    times = [[] for _ in runs]
    for i in range(repeats + 1):  # the first round warms up
        for j, (idx, targets, memory) in enumerate(runs):
            t0 = time.perf_counter()
            if backward:
                model(idx, targets, memory).backward()
            else:
                with torch.no_grad():
                    model(idx, targets, memory)
            if i:
                times[j].append(time.perf_counter() - t0)
    return [sorted(t)[len(t) // 2] for t in times]


def bench_speed(repeats: int) -> None:
    shapes = [  # (n_layer, n_embd, n_head, T, M, batch)
        (2, 128, 4, 64, 16, 16),     # configs/tiny.yaml's model
        (4, 256, 2, 256, 64, 8),
    ]
    print("window_ms: median ms of one pass of `window` on T + M tokens; triplet_ms: of `triplet` "
          "on M memory slots + T tokens (the same attention positions); ratio: triplet_ms / "
          "window_ms (above 1: memory positions cost more than token positions); pass: fwd+bwd "
          "(a training step without the optimizer) or fwd")
    print("shape                      backend  rope       pass      window_ms  triplet_ms  ratio")
    for n_layer, n_embd, n_head, T, M, batch in shapes:
        g = torch.Generator().manual_seed(0)
        vocab = 2048
        window_idx = torch.randint(0, vocab, (batch, T + M), generator=g)
        idx, targets = window_idx[:, M:], window_idx[:, M:]
        spans = torch.randint(0, vocab, (3, batch, M, 4), generator=g)
        memory = Memory(subject=spans[0], relation=spans[1], object=spans[2],
                        ids=torch.full((batch, M, 3), -1),
                        negated=torch.zeros(batch, M, dtype=torch.bool),
                        age=torch.randint(0, 1000, (batch, M), generator=g),
                        mask=torch.rand(batch, M, generator=g) < 0.8)
        name = f"L{n_layer} C{n_embd} T{T} M{M} B{batch}"
        for backend, backward in (("sdpa", True), ("sdpa", False), ("flex", False)):
            for rope in ("unrotated", "fixed"):
                torch.manual_seed(0)
                model = GPT(GPTConfig(vocab_size=vocab, n_layer=n_layer, n_head=n_head,
                                      n_embd=n_embd, sequence_len=T, memory_slots=M,
                                      attn_backend=backend, memory_rope=rope))
                window_s, triplet_s = time_pair(
                    model, [(window_idx, window_idx, None), (idx, targets, memory)], backward, repeats)
                print(f"{name:<26} {backend:<8} {rope:<10} {'fwd+bwd' if backward else 'fwd':<9} "
                      f"{window_s * 1e3:>9.1f}  {triplet_s * 1e3:>10.1f}  "
                      f"{triplet_s / window_s:>5.2f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    rope = sub.add_parser("rope", help="train both memory_rope options on the toy task")
    rope.add_argument("--steps", type=int, default=800)
    rope.add_argument("--seeds", type=int, default=2)
    speed = sub.add_parser("speed", help="triplet vs window step time at equal positions")
    speed.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    # one thread: on a shared, oversubscribed CPU, more threads made each step ~20x slower
    torch.set_num_threads(1)
    if args.bench == "rope":
        bench_rope(args.steps, args.seeds)
    else:
        bench_speed(args.repeats)


if __name__ == "__main__":
    main()
