"""What a training run needs, computed from the config alone (nothing is allocated).

    n = parameter_count(gpt_cfg)                          # exact, = sum of GPT(gpt_cfg)'s numel
    est = training_memory(gpt_cfg, batch=16, backend="sdpa")   # bytes by part (an estimate)

`training_memory` estimates one rank's peak memory in a training step, by part:
- `weights`, `grads`: 4 bytes per parameter each (fp32 master weights; bf16 autocast keeps them);
- `optimizer`: Muon keeps one fp32 momentum per hidden-matrix weight, AdamW two moments for the
  rest (embeddings, head, memory tables, scalars);
- `activations`: per layer and position, what backward keeps (the block's input and norms, q, k
  and v, widened for `unrotated` memory, the attention output, the MLP's 4x hidden twice), about
  ACTIVATION_FLOATS floats of width n_embd, at 4 bytes (2 under bf16 autocast); plus the attention
  scores a materializing backend keeps (sdpa with a mask: heads x positions^2, twice);
- `logits`: the fp32 logits over the padded vocabulary, softcapped and their softmax gradient.
Memory slots count as positions. The figure is an estimate: BENCHMARKS.md compares it with
measured peaks. The config check uses it to refuse a run that cannot fit the machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

LARGEST_GPU_BYTES = 192 * 2**30  # the most memory one GPU has (B200), for GPU configs checked here
ACTIVATION_FLOATS = 22  # per layer per position, in units of n_embd (see the module docstring)
LOGIT_COPIES = 3  # fp32 logits, their softcapped value, their gradient


def parameter_count(cfg) -> int:
    """Parameters of GPT(cfg) (a model.gpt.GPTConfig), counted from its shapes."""
    C, V, L = cfg.n_embd, cfg.padded_vocab_size, cfg.n_layer
    block = 4 * C * C + 8 * C * C + (C * cfg.short_conv)
    head = 0 if cfg.tie_embeddings else V * C
    encoder = 0
    if cfg.memory_slots > 0:
        tables = cfg.max_surface_len * C if cfg.triplet_encoder == "tokens" \
            else 2 * (cfg.id_buckets + 1) * C
        encoder = tables + 2 * C + cfg.age_buckets * C + 16 * C * C + 4 * C * C
    return V * C + head + L * block + encoder


def adam_parameter_count(cfg) -> int:
    """Parameters AdamW trains (everything but the hidden matrices Muon trains)."""
    C, L = cfg.n_embd, cfg.n_layer
    muon = L * 12 * C * C + (20 * C * C if cfg.memory_slots > 0 else 0)
    return parameter_count(cfg) - muon


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    grads: int
    optimizer: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer + self.activations + self.logits


def training_memory(cfg, batch: int, backend: str, bf16: bool = False) -> MemoryEstimate:
    """One rank's training-step memory for `batch` sequences of cfg.sequence_len tokens (the
    variant's longest context) plus its memory slots, in bytes."""
    params = parameter_count(cfg)
    adam = adam_parameter_count(cfg)
    positions = cfg.sequence_len + cfg.memory_slots
    act_bytes = 2 if bf16 else 4
    per_layer = ACTIVATION_FLOATS * cfg.n_embd * act_bytes * batch * positions
    if backend == "sdpa":  # the math kernel keeps the scores and their softmax
        per_layer += 2 * 4 * batch * cfg.n_head * positions * positions
    logits = LOGIT_COPIES * 4 * batch * cfg.sequence_len * cfg.padded_vocab_size
    return MemoryEstimate(weights=4 * params, grads=4 * params,
                          optimizer=4 * (params - adam) + 8 * adam,
                          activations=cfg.n_layer * per_layer, logits=logits)


def gigabytes(n: int | float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**27 else f"{n / 2**20:,.0f} MiB"


def device_memory(device: str) -> tuple[str, int | None]:
    """(name, bytes) of the memory a training process gets: this machine's RAM on CPU, the first
    visible GPU's memory, or LARGEST_GPU_BYTES for a CUDA config checked where no GPU is visible."""
    import torch
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        try:
            return "this machine", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return "this machine", None
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory
    return "the largest GPU", LARGEST_GPU_BYTES
