"""One device check for a lent GPU: the numbers the GPU configs rest on, in one JSON file.

    python -m research.device_check --out device_check.json [--steps 50]

Under 8 minutes on one H100/H200; it writes one JSON object with
- `attention`: the memory attention rule on every backend against SDPA with an explicit mask,
  forward and backward (largest absolute difference of outputs and of q/k/v gradients, and
  whether a padded memory slot's contents change any token's output), both rotary placements;
- `d12`: `--steps` training steps of the fineweb-d12 model (768 wide, 12 layers, T = 512,
  M = 64) in bf16 under torch.compile on random tokens: median step seconds, tokens/s and MFU;
- `step_time`: triplet (M slots + T tokens), raw (T + M tokens) and window (T tokens) step times
  at d12's shapes, and the triplet/raw ratio at equal attention positions;
- `peak_memory`: torch.cuda.max_memory_allocated of a d12 triplet step against
  model/resources.py's estimate for it.
Without CUDA each part says it was skipped and why, and the attention checks run on the CPU
backends that can (sdpa, flex forward) at small shapes, so the script itself is tested here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from model.attention import BackendUnavailable, attend, build_plan, flash_kernel_installed
from model.gpt import GPT, GPTConfig
from model.memory import Memory
from model.resources import REFERENCE_GPU, training_memory
from warehouse.shard_io import write_text_atomically

D12 = dict(n_layer=12, n_head=6, n_embd=768, sequence_len=512, memory_slots=64)
VOCAB = 32768
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


def _random_memory(batch: int, slots: int, vocab: int, device: torch.device,
                   g: torch.Generator) -> Memory:
    spans = torch.randint(0, vocab, (3, batch, slots, 4), generator=g).to(device)
    mask = (torch.rand(batch, slots, generator=g) < 0.8).to(device)
    return Memory(subject=spans[0], relation=spans[1], object=spans[2],
                  ids=torch.full((batch, slots, 3), -1, device=device),
                  negated=torch.zeros(batch, slots, dtype=torch.bool, device=device),
                  age=torch.randint(0, 512, (batch, slots), generator=g).to(device), mask=mask)


def attention_checks(device: torch.device, shapes: tuple[int, int, int, int, int]) -> dict[str, Any]:
    """Every backend against SDPA with the explicit mask, forward and backward."""
    B, M, T, H, D = shapes
    g = torch.Generator().manual_seed(0)
    half = D // 2
    inv = 100000.0 ** (-torch.arange(half, dtype=torch.float32) / half)
    angles = torch.outer(torch.arange(-1, T, dtype=torch.float32), inv)
    cos, sin = angles.cos().to(device), angles.sin().to(device)
    valid = (torch.rand(B, M, generator=g) < 0.7).to(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = [torch.randn(B, M + T, H, D, generator=g).to(device, dtype) for _ in range(3)]
    keep = torch.cat([valid, torch.ones(B, T, dtype=torch.bool, device=device)], dim=1)
    out: dict[str, Any] = {}
    for rope in ("unrotated", "fixed"):
        results = {}
        for backend in ("sdpa", "flex", "flash"):
            if backend == "flash" and not flash_kernel_installed():
                results[backend] = {"skipped": "flash-attn is not installed"}
                continue
            backward = device.type == "cuda" or backend == "sdpa"  # flex has no CPU backward
            q, k, v = (x.clone().requires_grad_(backward) for x in base)
            try:
                plan = build_plan(backend, rope, valid, cos[1:], sin[1:], cos[:1], sin[:1], batch_size=B)
                y = attend(q, k, v, plan)
            except BackendUnavailable as err:
                results[backend] = {"skipped": str(err)}
                continue
            entry = {"output": y.detach().float(), "backward": backward}
            if backward:
                (y.float()[keep] ** 2).sum().backward()
                entry["grads"] = [x.grad.float() for x in (q, k, v)]
            # padded slots must change nothing a token sees
            noisy = [x.clone() for x in base]
            for x in noisy:
                x[:, :M][~valid] = torch.randn_like(x[:, :M][~valid])
            with torch.no_grad():
                y2 = attend(*noisy, plan)
            entry["padding_leaks"] = bool((y2[:, M:] != y.detach()[:, M:]).any())
            results[backend] = entry
        reference = results["sdpa"]
        summary = {}
        for backend, entry in results.items():
            if "skipped" in entry:
                summary[backend] = entry
                continue
            diff = (entry["output"][keep] - reference["output"][keep]).abs().max().item()
            row = {"max_abs_output_diff": diff, "padding_leaks": entry["padding_leaks"],
                   "backward": entry["backward"]}
            if entry["backward"] and reference["backward"]:
                row["max_abs_grad_diff"] = max((a - b).abs().max().item()
                                               for a, b in zip(entry["grads"], reference["grads"]))
            summary[backend] = row
        out[rope] = summary
    out["dtype"], out["shapes"] = str(dtype), dict(zip("BMTHD", shapes))
    return out


def _step_seconds(step, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def d12_training(device: torch.device, steps: int, batch: int) -> dict[str, Any]:
    """`steps` bf16 compiled training steps of the d12 triplet model; MFU against the GPU's peak."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB, attn_backend="auto", **D12)
    model = GPT(cfg).to(device)
    compiled = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, VOCAB, (batch, cfg.sequence_len), generator=g).to(device)
    memory = _random_memory(batch, cfg.memory_slots, VOCAB, device, g)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(idx, idx, memory)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    started = time.perf_counter()
    step()  # compiles
    compile_s = time.perf_counter() - started
    torch.cuda.reset_peak_memory_stats()
    times = _step_seconds(step, steps)
    median = statistics.median(times)
    positions = batch * (cfg.sequence_len + cfg.memory_slots)
    flops = model.estimate_flops_per_token() * positions / median
    name = torch.cuda.get_device_name(device)
    peak = next((f for key, f in PEAK_BF16.items() if key in name), None)
    estimate = training_memory(cfg, batch, "flash", bf16=True)
    return {"device": name, "batch": batch, "compile_seconds": compile_s, "steps": steps,
            "median_step_seconds": median, "tokens_per_s": batch * cfg.sequence_len / median,
            "model_flops_per_s": flops, "mfu": flops / peak if peak else None,
            "peak_memory": {"measured_bytes": torch.cuda.max_memory_allocated(device),
                            "estimated_bytes": estimate.total,
                            "ratio": estimate.total / torch.cuda.max_memory_allocated(device)}}


def step_times(device: torch.device, batch: int, repeats: int) -> dict[str, Any]:
    """Median forward+backward seconds at d12's shapes: triplet vs raw at equal positions."""
    T, M = D12["sequence_len"], D12["memory_slots"]
    g = torch.Generator().manual_seed(2)
    long_idx = torch.randint(0, VOCAB, (batch, T + M), generator=g).to(device)
    memory = _random_memory(batch, M, VOCAB, device, g)
    runs = {"window": (T, 0, long_idx[:, :T], None), "raw": (T + M, 0, long_idx, None),
            "triplet": (T, M, long_idx[:, :T], memory)}
    out = {}
    for name, (seq, slots, idx, mem) in runs.items():
        torch.manual_seed(0)
        cfg = GPTConfig(vocab_size=VOCAB, n_layer=D12["n_layer"], n_head=D12["n_head"],
                        n_embd=D12["n_embd"], sequence_len=seq, memory_slots=slots)
        model = torch.compile(GPT(cfg).to(device))

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                model(idx, idx, mem).backward()
        step()
        out[name] = statistics.median(_step_seconds(step, repeats))
    out["triplet_over_raw"] = out["triplet"] / out["raw"]
    return out


def device_check(steps: int, batch: int) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    result: dict[str, Any] = {"torch": torch.__version__, "cuda": cuda,
                              "flash_attn": flash_kernel_installed(),
                              "reference_gpu": REFERENCE_GPU[0]}
    shapes = (4, D12["memory_slots"], D12["sequence_len"], D12["n_head"], 128) if cuda \
        else (2, 5, 12, 2, 16)
    result["attention"] = attention_checks(device, shapes)
    if cuda:
        result["d12"] = d12_training(device, steps, batch)
        result["step_time"] = step_times(device, batch, repeats=20)
    else:
        why = "no CUDA device here (torch.cuda.is_available() is False)"
        result["d12"] = {"skipped": why}
        result["step_time"] = {"skipped": why}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("device_check.json"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = device_check(args.steps, args.batch)
    result["seconds"] = time.perf_counter() - started
    write_text_atomically(json.dumps(result, indent=2, default=str) + "\n", args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "attention"}, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
