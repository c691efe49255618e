"""What a training run needs, computed from the config alone (nothing is allocated).

    plan = training_plan(cfg, "triplet")               # one variant: the dry run prints these

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
- `logits`: the fp32 logits over the padded vocabulary, softcapped and their softmax gradient;
- `framework`: what the framework allocates for itself at the first backward.
Memory slots count as positions. The figure is an estimate: BENCHMARKS.md compares it with
measured peaks. The config check uses it to refuse a run that cannot fit the machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

LARGEST_GPU_NAME = "the largest GPU"
LARGEST_GPU_BYTES = 192 * 2**30  # the most memory one GPU has (B200), for GPU configs checked here
# Per layer and position, in units of n_embd: what backward keeps plus the gradients alive at its
# peak; fitted to peak RSS of training steps on CPU (BENCHMARKS.md "Resource plan").
ACTIVATION_FLOATS = 34
LOGIT_COPIES = 3  # fp32 logits, their softcapped value, their gradient
FRAMEWORK_BYTES = 200 * 2**20  # the framework's own buffers at the first backward (CPU, measured)


def _meta_model(cfg):
    """GPT(cfg) with every tensor on the meta device: shapes only, nothing allocated."""
    import torch
    from model.gpt import GPT
    with torch.device("meta"):
        return GPT(cfg)


def parameter_count(cfg) -> int:
    """Parameters of GPT(cfg) (a model.gpt.GPTConfig), counted on a meta-device model."""
    return sum(p.numel() for p in _meta_model(cfg).parameters())


def adam_parameter_count(cfg) -> int:
    """Parameters AdamW trains (everything but the hidden matrices Muon trains)."""
    groups = _meta_model(cfg).param_groups()
    return sum(p.numel() for name, params in groups.items() if name != "matrix" for p in params)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    grads: int
    optimizer: int
    activations: int
    logits: int
    framework: int = FRAMEWORK_BYTES

    @property
    def total(self) -> int:
        return (self.weights + self.grads + self.optimizer + self.activations + self.logits
                + self.framework)


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
    return LARGEST_GPU_NAME, LARGEST_GPU_BYTES


# Throughput measured on a device class (BENCHMARKS.md has the runs): model FLOPs per second a
# training step achieves, so the hours of another model size on that device follow. Only what
# was measured here is listed; a device without an entry gets no hours.
MEASURED_FLOPS_PER_S = {
    # configs/tiny.yaml's `triplet` on the 2-core CPU container: this plan's 4.28e12 FLOPs (800
    # steps of 16 x (64 + 16) positions) in 102.8 s (BENCHMARKS.md "End to end"). A model this
    # small is bound by per-step overhead, so bigger models will do better than this on a CPU.
    "this machine": ("2-core CPU, from the demo's train-triplet", 4.28e12 / 102.8),
}
REFERENCE_GPU = ("H100 80 GB", 80 * 2**30, 989e12)  # name, memory, dense bf16 peak
REFERENCE_MFU = 0.41  # nanochat's reported d12 MFU on H100 (REFERENCE.md), not measured here


@dataclass(frozen=True)
class TrainingPlan:
    variant: str
    parameters: int
    window_tokens: int  # target tokens trained on (steps x tokens per step)
    positions_per_sequence: int  # window + prefix + memory slots
    flops: float
    memory: MemoryEstimate  # one process, at train.device_batch_size
    memory_share: float  # the memory slots' share of it
    device: str
    device_bytes: int | None
    hours: float | None  # from a measured throughput on this device, else None


def training_plan(cfg, variant: str) -> TrainingPlan:
    """Parameters, tokens, FLOPs, memory and (where measured) time of training `variant`."""
    from dataclasses import replace
    from model.variants import gpt_config, window_spec
    model_cfg = gpt_config(cfg, variant, cfg.tokenizer.vocab_size)
    spec = window_spec(cfg, variant)
    device, available = device_memory(cfg.train.device)
    on_gpu = device != "this machine"
    backend = "flash" if on_gpu else "sdpa"
    batch, T = cfg.train.device_batch_size, cfg.model.sequence_len
    sequences = (cfg.train.total_batch_size // T if cfg.train.total_batch_size
                 else batch * cfg.train.nproc_per_node)
    positions = spec.context_len + model_cfg.memory_slots
    flops_per_position = _meta_model(model_cfg).estimate_flops_per_token(positions)
    flops = flops_per_position * positions * sequences * cfg.train.steps
    memory = training_memory(model_cfg, batch, backend, bf16=on_gpu)
    without = training_memory(replace(model_cfg, memory_slots=0), batch, backend, bf16=on_gpu)
    # the slots' share of what the step itself needs (the framework's own buffers aside)
    measured = MEASURED_FLOPS_PER_S.get(device)
    return TrainingPlan(
        variant=variant, parameters=parameter_count(model_cfg),
        window_tokens=sequences * T * cfg.train.steps, positions_per_sequence=positions,
        flops=flops, memory=memory,
        memory_share=1 - (without.total - FRAMEWORK_BYTES) / (memory.total - FRAMEWORK_BYTES),
        device=device, device_bytes=available,
        hours=flops / measured[1] / 3600 if measured else None)


def plan_lines(plans: list[TrainingPlan], nproc: int) -> list[str]:
    """The dry run's training plan: a table, then a line per warning."""
    def count(n: float) -> str:
        for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if n >= size:
                return f"{n / size:.1f}{unit}"
        return f"{n:.0f}"
    rows = [["variant", "params", "tokens", "positions", "FLOPs", "memory/process", "weights",
             "optimizer", "activations", "logits", "slots' share", "time"]]
    warnings = []
    for p in plans:
        m = p.memory
        if p.hours is not None:
            time = f"{p.hours:.2f} h ({MEASURED_FLOPS_PER_S[p.device][0]})"
        else:
            gpu, _, peak = REFERENCE_GPU
            where = "a GPU here" if p.device == LARGEST_GPU_NAME else p.device
            time = (f"not measured on {where}; ~{p.flops / (REFERENCE_MFU * peak * nproc) / 3600:.2f} h "
                    f"on {nproc} {gpu} at {REFERENCE_MFU:.0%} MFU (nanochat's)")
        rows.append([p.variant, count(p.parameters), count(p.window_tokens),
                     str(p.positions_per_sequence), f"{p.flops:.2e}", gigabytes(m.total),
                     gigabytes(m.weights), gigabytes(m.optimizer), gigabytes(m.activations),
                     gigabytes(m.logits), f"{p.memory_share:.1%}", time])
        gpu, gpu_bytes, _ = REFERENCE_GPU
        if p.device != "this machine" and m.total > gpu_bytes:
            warnings.append(f"warning: {p.variant} needs about {gigabytes(m.total)} per process, "
                            f"more than an {gpu}'s {gigabytes(gpu_bytes)}: lower "
                            "train.device_batch_size (and raise total_batch_size's accumulation)")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines + warnings
