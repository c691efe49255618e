"""GPT with read-only triplet memory (DESIGN §4), in the spirit of nanochat's gpt.py.

    from model.gpt import GPT, GPTConfig
    model = GPT(GPTConfig.from_model_config(run_config.model, vocab_size=tok.vocab_size))
    logits = model(idx)                               # [B, T, vocab]
    loss = model(idx, targets, memory=memory)         # mean next-token loss on the window
    nats = model(idx, targets, memory, loss_reduction="none")   # [B, T] per-token loss (0 = ignored)

Parameter-free RMSNorm, rotary (base 100000), QK-norm (then x1.2), ReLU^2 MLP 4x, untied head,
vocab padded to a multiple of 64, logits soft-capped 15*tanh(x/15) in fp32, cross-entropy with
ignore index -1. Output projections start at zero, lm_head at std 0.001.

Optional tied embeddings (`tie_embeddings`): the head is the token embedding, and logits are
scaled by 1/sqrt(n_embd) (rows have norm ~sqrt(n_embd)). Copying a value then needs no per-token
map from input to output embedding: a slot or a position that carries a token's embedding already
points at that token's logit. nanochat unties; the tiny CPU demo ties, as it learns to copy every
kind of value within its budget only this way (BENCHMARKS.md "Tied embeddings").

Optional short convolution (`short_conv` = kernel size, 0 = off): before each block's attention,
every token position adds a causal depthwise convolution over itself and the k-1 tokens before it
(the "canon layer" of Physics of Language Models part 4.1; the short conv of H3 and Based). It
hands each position its recent tokens in one step, so the query at "Mara Quell worked at" holds
subject and relation before any attention has been learnt. Memory slots are not a sequence and
are left out. The weights start at zero: at step 0 the model is the plain GPT.

With `memory`, each triplet becomes one vector (TripletEncoder) placed before the window; the
residual stream is [m_1..m_M | t_1..t_T] and attention follows model/attention.py's rule. Logits
and loss are computed on token positions only. `memory=None` is exactly a plain GPT, and memory
whose slots are all invalid gives the same logits (tokens then see nothing extra).

With `memory_injection: kv` (KBLaM, arXiv 2410.10450) the slots are no positions: every
`kv_layer_stride`-th layer (layers 0, k, 2k, ...) adds them to its attention as extra keys and
values, projected per layer from the TripletEncoder's key (subject, relation, polarity, age) and
value (the object), scored by the layer's own memory query projection and without rotation
(model/attention.py `attend_memory_keys`). The residual stream holds the tokens only. KBLaM's
logit shift (-log M + log C) for thousands of entries is left out: M here is at most a few dozen.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from model import attention
from model.attention import (BACKENDS, FLASH_MAX_HEAD_DIM, MEMORY_INJECTIONS, MEMORY_ROPE,
                             AttentionPlan)
from model.memory import Memory
from model.triplet_encoder import TripletEncoder

TRIPLET_ENCODERS: tuple[str, ...] = ("tokens", "vocab")
HEAD_DIM = 128  # the depth dial's head width (nanochat)
QK_SCALE = 1.2  # q and k after QK-norm (nanochat)


class GPTConfigError(ValueError):
    """An invalid model configuration; `field` names the setting, the message says the fix."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(kw_only=True)
class GPTConfig:
    vocab_size: int
    n_layer: int = 12
    n_head: int = 6
    n_embd: int = 768
    sequence_len: int = 2048     # the window T (longer inputs are fine: rotary tables grow)
    memory_slots: int = 16       # M; 0 builds no TripletEncoder (a plain GPT)
    attn_backend: str = "auto"
    triplet_encoder: str = "tokens"
    memory_rope: str = "unrotated"
    memory_injection: str = "positions"  # or "kv": keys/values of every kv_layer_stride-th layer
    kv_layer_stride: int = 3     # KBLaM's: layers 0, 3, 6, ...
    id_buckets: int = 4096       # `vocab` encoder: hashed rows per table
    max_surface_len: int = 16    # `tokens` encoder: tokens kept per subject/relation/object
    age_buckets: int = 16        # log2 buckets of tokens-ago
    short_conv: int = 0          # kernel of the causal token convolution per block; 0 = none
    tie_embeddings: bool = False  # lm_head is wte (logits scaled by 1/sqrt(n_embd))
    softcap: float = 15.0
    rope_base: float = 100000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "sequence_len", "id_buckets",
                     "max_surface_len", "age_buckets", "kv_layer_stride"):
            if getattr(self, name) < 1:
                raise GPTConfigError(name, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("memory_slots", "short_conv"):
            if getattr(self, name) < 0:
                raise GPTConfigError(name, f"{name} must be >= 0, got {getattr(self, name)}")
        choices = {"attn_backend": BACKENDS, "triplet_encoder": TRIPLET_ENCODERS,
                   "memory_rope": MEMORY_ROPE, "memory_injection": MEMORY_INJECTIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise GPTConfigError(
                    name, f"{name} is {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.n_embd % self.n_head:
            divisors = [h for h in range(1, self.n_head + 1) if self.n_embd % h == 0]
            raise GPTConfigError(
                "n_head", f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"set n_head to a divisor of n_embd, e.g. {divisors[-1]}")
        if self.head_dim % 2:
            raise GPTConfigError(
                "n_head", f"head_dim = n_embd / n_head = {self.head_dim} must be even for rotary embeddings: "
                "change n_embd or n_head")
        if self.attn_backend == "flash":
            if not attention.flash_kernel_installed():
                raise GPTConfigError(
                    "attn_backend", "attn_backend 'flash' needs flash-attn: pip install -e '.[gpu]' "
                    "(or set attn_backend: auto)")
            widened = self.memory_rope == "unrotated" or self.memory_injection == "kv"
            width = 2 * self.head_dim if widened else self.head_dim
            if width > FLASH_MAX_HEAD_DIM:
                raise GPTConfigError(
                    "attn_backend", f"attn_backend 'flash' with memory_rope {self.memory_rope!r} "
                    f"(memory as {self.memory_injection}) attends over {width} dims per head, "
                    f"flash-attn's limit is {FLASH_MAX_HEAD_DIM}: use more heads, memory_rope: "
                    "fixed, or attn_backend: flex")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def memory_key_layers(self) -> tuple[int, ...]:
        """The layers whose attention reads memory as keys/values (`kv` injection only)."""
        if self.memory_injection != "kv" or self.memory_slots == 0:
            return ()
        return tuple(range(0, self.n_layer, self.kv_layer_stride))

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // 64) * 64

    @classmethod
    def from_model_config(cls, model, vocab_size: int) -> "GPTConfig":
        """From the run config's `model` section (configs/schema.py ModelConfig): every field of
        the section is the GPTConfig field of the same name, except the `depth` dial, which is
        n_layer and sets the width (depth * 64 rounded up to 128, heads of 128) unless n_embd /
        n_head are given, as tiny CPU models do. A section field GPTConfig lacks is an error."""
        values = model.model_dump()
        depth = values.pop("depth")
        values["n_layer"] = depth
        values["n_embd"] = values["n_embd"] or -(-depth * 64 // 128) * 128
        values["n_head"] = values["n_head"] or max(1, values["n_embd"] // HEAD_DIM)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"model section fields {sorted(unknown)} have no GPTConfig field")
        return cls(vocab_size=vocab_size, **values)


def norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


class MemoryKeys(NamedTuple):
    """`kv` injection: the slots' keys and values [B, M, n_embd] and their attention plan."""
    keys: Tensor
    values: Tensor
    plan: AttentionPlan


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, reads_memory_keys: bool = False) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        C = config.n_embd
        self.c_q = nn.Linear(C, C, bias=False)
        self.c_k = nn.Linear(C, C, bias=False)
        self.c_v = nn.Linear(C, C, bias=False)
        self.c_proj = nn.Linear(C, C, bias=False)
        self.reads_memory_keys = reads_memory_keys
        if reads_memory_keys:  # KBLaM: this layer's own memory query and key/value adapters
            self.c_q_memory = nn.Linear(C, C, bias=False)
            self.c_k_memory = nn.Linear(C, C, bias=False)
            self.c_v_memory = nn.Linear(C, C, bias=False)

    def input_projections(self) -> list[nn.Linear]:
        memory = [self.c_q_memory, self.c_k_memory, self.c_v_memory] if self.reads_memory_keys else []
        return [self.c_q, self.c_k, self.c_v, *memory]

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k (QK-normed, scaled, not yet rotated) and v of x [B, S, C], each [B, S, H, D]."""
        B, S, _ = x.shape
        shape = (B, S, self.n_head, self.head_dim)
        q = norm(self.c_q(x).view(shape)) * QK_SCALE
        k = norm(self.c_k(x).view(shape)) * QK_SCALE
        return q, k, self.c_v(x).view(shape)

    def memory_query(self, x: Tensor) -> Tensor:
        """The `kv` layer's memory query of x [B, S, C] (QK-normed, never rotated): [B, S, H, D]."""
        B, S, _ = x.shape
        return norm(self.c_q_memory(x).view(B, S, self.n_head, self.head_dim)) * QK_SCALE

    def memory_keys_values(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """The `kv` layer's keys and values of the slots' keys / values [B, M, C]: [B, M, H, D]
        each. They depend on the memory alone (a KV-cached decoder computes them once)."""
        slots = (*keys.shape[:2], self.n_head, self.head_dim)
        return (norm(self.c_k_memory(keys).view(slots)) * QK_SCALE,
                self.c_v_memory(values).view(slots))

    def forward(self, x: Tensor, plan: AttentionPlan, memory: MemoryKeys | None = None) -> Tensor:
        B, S, C = x.shape
        q, k, v = self.project(x)
        if memory is None:
            y = attention.attend(q, k, v, plan)
        else:
            y = attention.attend_memory_keys(
                q, k, v, self.memory_query(x), *self.memory_keys_values(memory.keys, memory.values),
                memory.plan)
        return self.c_proj(y.reshape(B, S, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class ShortConv(nn.Module):
    """Causal depthwise convolution over the token axis: y_t = sum_j w_j * x_(t-j), j < kernel."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels, 1, kernel))

    def forward(self, x: Tensor, state: Tensor | None = None) -> Tensor:
        """x [B, T, C] -> [B, T, C]; position t sees positions t - kernel + 1 .. t only. `state`
        [B, kernel - 1, C] holds the inputs just before x (a KV-cached decoder's), else zeros."""
        if state is None:
            padded = F.pad(x.transpose(1, 2), (self.weight.shape[-1] - 1, 0))
        else:
            padded = torch.cat([state, x], dim=1).transpose(1, 2)
        return F.conv1d(padded, self.weight, groups=x.shape[-1]).transpose(1, 2)


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.conv = ShortConv(config.n_embd, config.short_conv) if config.short_conv else None
        self.attn = CausalSelfAttention(config, reads_memory_keys=layer in config.memory_key_layers)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, plan: AttentionPlan, num_memory: int = 0,
                memory_keys: MemoryKeys | None = None) -> Tensor:
        """x [B, num_memory + T, C]: the memory slots first, then the tokens; `memory_keys` reach
        the attention of a layer that reads them."""
        if self.conv is not None:
            memory, tokens = x[:, :num_memory], x[:, num_memory:]
            x = torch.cat([memory, tokens + self.conv(norm(tokens))], dim=1)
        x = x + self.attn(norm(x), plan, memory_keys if self.attn.reads_memory_keys else None)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.triplet_encoder = TripletEncoder(config) if config.memory_slots > 0 else None
        half = config.head_dim // 2
        inv_freq = config.rope_base ** (-torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """nanochat's init: embeddings N(0, 1), inputs uniform(+-sqrt(3/C)), outputs zero."""
        nn.init.normal_(self.wte.weight, std=1.0)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=0.001)
        bound = 3 ** 0.5 * self.config.n_embd ** -0.5
        for block in self.blocks:
            for lin in (*block.attn.input_projections(), block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.conv is not None:
                nn.init.zeros_(block.conv.weight)  # starts as the plain GPT
        if self.triplet_encoder is not None:
            self.triplet_encoder.init_weights()

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimizer role: 'matrix' (hidden 2-D weights: Muon); 'embedding',
        'head', 'memory' (TripletEncoder tables and gates) and 'scalar' (short-conv kernels): AdamW."""
        vectors = [] if self.triplet_encoder is None else self.triplet_encoder.vector_parameters()
        convs = [block.conv.weight for block in self.blocks if block.conv is not None]
        not_matrix = {id(p) for p in vectors + convs}
        matrices = [p for p in self.blocks.parameters() if id(p) not in not_matrix]
        if self.triplet_encoder is not None:
            matrices += [p for p in self.triplet_encoder.parameters() if id(p) not in not_matrix]
        head = [] if self.config.tie_embeddings else [self.lm_head.weight]
        groups = {"matrix": matrices, "embedding": [self.wte.weight], "head": head,
                  "memory": vectors, "scalar": convs}
        assert sum(len(g) for g in groups.values()) == len(list(self.parameters()))
        return groups

    def estimate_flops_per_token(self, context_len: int | None = None) -> float:
        """Training FLOPs per processed position (memory slots count as positions): 6 x the
        non-embedding weights + 12 * layers * width * context (attention, as nanochat counts it).
        context_len defaults to sequence_len + memory_slots; the TripletEncoder is not counted."""
        skip = {id(self.wte.weight)}
        if self.triplet_encoder is not None:
            skip |= {id(p) for p in self.triplet_encoder.parameters()}
        n = sum(p.numel() for p in self.parameters() if id(p) not in skip)
        if self.config.tie_embeddings:  # the head is the skipped embedding, but it is a matmul
            n += self.lm_head.weight.numel()
        cfg = self.config
        context = context_len if context_len is not None else cfg.sequence_len + cfg.memory_slots
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * context

    def rotary_tables(self, T: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """cos/sin for token positions 0..T-1 and for memory's fixed position -1."""
        positions = torch.arange(-1, T, dtype=torch.float32, device=self.inv_freq.device)
        angles = torch.outer(positions, self.inv_freq)
        cos, sin = angles.cos(), angles.sin()
        return cos[1:], sin[1:], cos[:1], sin[:1]

    def logits(self, x: Tensor) -> Tensor:
        """Soft-capped fp32 logits [B, T, vocab] of the last block's token outputs x [B, T, C]."""
        logits = self.lm_head(norm(x))[..., : self.config.vocab_size].float()
        if self.config.tie_embeddings:
            logits = logits * self.config.n_embd ** -0.5
        cap = self.config.softcap
        return cap * torch.tanh(logits / cap)

    def forward(self, idx: Tensor, targets: Tensor | None = None, memory: Memory | None = None,
                loss_reduction: str = "mean") -> Tensor:
        """Logits [B, T, vocab] without targets; with targets the loss ('mean', 'sum', or 'none'
        for per-token nats [B, T], 0 where the target is -1)."""
        B, T = idx.shape
        x = self.wte(idx)
        cos, sin, memory_cos, memory_sin = self.rotary_tables(T)
        tables = (cos, sin, memory_cos, memory_sin)
        backend, valid, memory_keys = self.config.attn_backend, None, None
        if memory is not None and memory.slots > 0:
            if self.triplet_encoder is None:
                raise ValueError("memory was given but the model has memory_slots=0: build it with "
                                 "memory_slots > 0, or pass memory=None")
            if memory.mask.shape[0] != B:
                raise ValueError(f"memory batch {memory.mask.shape[0]} != token batch {B}")
            if self.config.memory_injection == "kv":  # memory keys are never rotated
                keys, values = self.triplet_encoder.keys_values(memory, self.wte)
                memory_plan = attention.build_plan(backend, "unrotated", memory.mask.bool(),
                                                   *tables, batch_size=B)
                memory_keys = MemoryKeys(keys.to(x.dtype), values.to(x.dtype), memory_plan)
            else:
                slots = self.triplet_encoder(memory, self.wte).to(x.dtype)
                x = torch.cat([slots, x], dim=1)
                valid = memory.mask.bool()
        plan = attention.build_plan(backend, self.config.memory_rope, valid, *tables, batch_size=B)
        num_memory = x.shape[1] - T
        for block in self.blocks:
            x = block(x, plan, num_memory, memory_keys)
        logits = self.logits(x[:, num_memory:])
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-1, reduction=loss_reduction)
        return loss.view(B, T) if loss_reduction == "none" else loss
