"""Attention over `[m_1 .. m_M | t_1 .. t_T]` with the memory rule of DESIGN §4, three backends.

The rule (one function, `allowed`, used by the SDPA mask and the FlexAttention mask_mod alike):
- a memory query sees the valid memory keys only (an invalid slot also sees itself, so no row is
  ever empty and nothing turns into NaN; invalid slots are never read by anything else, and the
  flash backend, which packs valid slots only, gives them a zero output instead);
- token `t_i` sees every valid memory key and the tokens `t_j`, `j <= i`.

Rotary placement of memory (`memory_rope`):
- `unrotated`: memory keys, and the part of a token query that scores them, carry no rotation, so
  a fact scores the same wherever the token sits. Done exactly in ONE attention call by widening
  the head: token query `[q, rot(q)]`, token key `[0, rot(k)]`, memory query/key `[q, 0]`/`[k, 0]`
  (scale stays 1/sqrt(head_dim)). This equals a split attention (tokens->memory unrotated,
  tokens->tokens rotated) merged through log-sum-exp, but keeps gradients exact on every backend
  (flash-attn returns its LSE without a gradient, so an LSE merge could not be trained through).
- `fixed`: memory sits at position -1 (tokens keep positions 0..T-1, so all-invalid memory is
  exactly a plain GPT), i.e. one position before the window.

Memory as keys and values (`attend_memory_keys`, the KBLaM-style `kv` variant): the slots are not
positions of the residual stream but extra keys and values of some layers' attention. A token
scores a slot with its own memory query, unrotated, and the tokens up to itself with the rotary
query, under one softmax; slots attend to nothing. It runs on the same plan and backends: the
sequence is [slot keys | tokens] with the rule above, the slot rows get zero queries and their
outputs are dropped, and the widened head is the `unrotated` one with the memory query in the
first half (token query `[q_memory, rot(q)]`, slot key `[k_memory, 0]`, token key `[0, rot(k)]`).

Backends: `sdpa` (explicit boolean mask; the reference, works everywhere), `flex` (FlexAttention
with a block mask; compiled on CUDA, unfused and inference-only on CPU because torch 2.13 has no
CPU backward for it), `flash` (flash-attn varlen: memory->memory non-causal over the valid slots,
tokens->[valid memory; tokens] causal aligned bottom-right; CUDA only). `auto` = flash if
installed and on CUDA, else flex on CUDA, else sdpa.
"""
from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS: tuple[str, ...] = ("auto", "sdpa", "flex", "flash")
MEMORY_ROPE: tuple[str, ...] = ("unrotated", "fixed")
MEMORY_INJECTIONS: tuple[str, ...] = ("positions", "kv")  # slots as positions, or as layer keys/values
FLASH_MAX_HEAD_DIM = 256


class BackendUnavailable(RuntimeError):
    """The requested attention backend cannot run here; the message says what to do."""


# ---------------------------------------------------------------- backend selection

def flash_kernel_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def flash_kernel(device: torch.device) -> Callable:
    """flash-attn's `flash_attn_varlen_func` (imported on first use; CUDA tensors only)."""
    if device.type != "cuda":
        raise BackendUnavailable(
            f"attn_backend 'flash' runs on CUDA only (device is {device.type}): "
            "set model.attn_backend: auto or sdpa")
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        raise BackendUnavailable(
            "attn_backend 'flash' needs flash-attn: pip install -e '.[gpu]' "
            "(or set model.attn_backend: auto)") from None
    return flash_attn_varlen_func


def resolve_backend(requested: str, device: torch.device) -> str:
    """The concrete backend for `requested` on `device` ('auto' picks the fastest available)."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "flash" if flash_kernel_installed() else "flex"
    return "sdpa"


# ---------------------------------------------------------------- rotary

def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of x [B, S, H, D] with cos/sin [S, D/2] (pairs are the two halves)."""
    d = x.shape[-1] // 2
    cos, sin = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


def place_rotary(q: Tensor, k: Tensor, plan: "AttentionPlan") -> tuple[Tensor, Tensor]:
    """Rotate q, k [B, M+T, H, D] as `plan.memory_rope` says (see the module docstring)."""
    M = plan.num_memory
    if M == 0:
        return rotate(q, plan.cos, plan.sin), rotate(k, plan.cos, plan.sin)
    q_mem, k_mem = place_memory_rotary(q[:, :M], k[:, :M], plan.memory_rope, plan.memory_cos,
                                       plan.memory_sin)
    q_tok, k_tok = place_token_rotary(q[:, M:], k[:, M:], plan.memory_rope, plan.cos, plan.sin)
    return torch.cat([q_mem, q_tok], dim=1), torch.cat([k_mem, k_tok], dim=1)


def place_memory_rotary(q: Tensor, k: Tensor, memory_rope: str, memory_cos: Tensor,
                        memory_sin: Tensor) -> tuple[Tensor, Tensor]:
    """q, k [B, M, H, D] of memory slots: at position -1 (`fixed`) or unrotated, widened to
    [q, 0] / [k, 0] (`unrotated`). A KV-cached decoder places memory once with this."""
    if memory_rope == "fixed":
        M = q.shape[1]
        cos, sin = memory_cos.expand(M, -1), memory_sin.expand(M, -1)
        return rotate(q, cos, sin), rotate(k, cos, sin)
    return torch.cat([q, torch.zeros_like(q)], dim=-1), torch.cat([k, torch.zeros_like(k)], dim=-1)


def place_token_rotary(q: Tensor, k: Tensor, memory_rope: str, cos: Tensor,
                       sin: Tensor) -> tuple[Tensor, Tensor]:
    """q, k [B, T, H, D] of tokens beside memory, at the positions of cos/sin [T, D/2]: rotated
    (`fixed`), or widened to [q, rot(q)] / [0, rot(k)] (`unrotated`)."""
    if memory_rope == "fixed":
        return rotate(q, cos, sin), rotate(k, cos, sin)
    return (torch.cat([q, rotate(q, cos, sin)], dim=-1),
            torch.cat([torch.zeros_like(k), rotate(k, cos, sin)], dim=-1))


# ---------------------------------------------------------------- the rule and the plan

def allowed(b: Tensor, q: Tensor, kv: Tensor, valid: Tensor) -> Tensor:
    """May query position q see key position kv in batch row b? (positions over [memory | tokens])"""
    M = valid.shape[1]
    key_is_memory = kv < M
    memory_key_ok = valid[b, kv.clamp(max=M - 1)] | (q == kv)
    token_key_ok = (q >= M) & (kv <= q)
    return torch.where(key_is_memory, memory_key_ok, token_key_ok)


def sdpa_mask(valid: Tensor, T: int) -> Tensor:
    """The boolean mask [B, 1, M+T, M+T] of `allowed`, for F.scaled_dot_product_attention."""
    B, M = valid.shape
    pos = torch.arange(M + T, device=valid.device)
    b = torch.arange(B, device=valid.device)[:, None, None]
    return allowed(b, pos[None, :, None], pos[None, None, :], valid)[:, None]


@dataclass
class FlashLayout:
    """Index tensors for flash-attn varlen calls over packed (valid-slot-only) sequences."""
    memory_index: Tensor      # [n_valid] positions of valid slots in the flattened [B*M]
    memory_cu: Tensor         # [B+1] int32 cumulative valid slots per row
    max_memory: int
    key_keep: Tensor          # [B*(M+T)] bool: valid memory slots and all tokens
    key_cu: Tensor            # [B+1] int32 cumulative (valid slots + T)
    token_cu: Tensor          # [B+1] int32 cumulative T


def flash_layout(valid: Tensor, T: int) -> FlashLayout:
    B, M = valid.shape
    counts = valid.sum(dim=1, dtype=torch.int32)
    zero = torch.zeros(1, dtype=torch.int32, device=valid.device)
    keep = torch.cat([valid, torch.ones(B, T, dtype=torch.bool, device=valid.device)], dim=1)
    return FlashLayout(
        memory_index=valid.flatten().nonzero().squeeze(1),
        memory_cu=torch.cat([zero, counts.cumsum(0, dtype=torch.int32)]),
        max_memory=int(counts.max()) if B else 0,
        key_keep=keep.flatten(),
        key_cu=torch.cat([zero, (counts + T).cumsum(0, dtype=torch.int32)]),
        token_cu=torch.arange(B + 1, dtype=torch.int32, device=valid.device) * T,
    )


@dataclass
class AttentionPlan:
    """Everything every layer's attention needs for one forward pass, built once."""
    backend: str              # sdpa | flex | flash (resolved)
    memory_rope: str
    num_memory: int           # M (0: a plain causal GPT)
    num_tokens: int           # T
    valid: Tensor | None      # [B, M] bool
    cos: Tensor               # [T, D/2] token positions 0..T-1
    sin: Tensor
    memory_cos: Tensor        # [1, D/2] position -1 (`fixed`)
    memory_sin: Tensor
    head_dim: int
    mask: Tensor | None = None          # sdpa
    block_mask: object | None = None    # flex BlockMask
    flash: FlashLayout | None = None


def build_plan(backend: str, memory_rope: str, valid: Tensor | None, cos: Tensor, sin: Tensor,
               memory_cos: Tensor, memory_sin: Tensor, batch_size: int) -> AttentionPlan:
    """Resolve the backend and precompute its mask / layout for `valid` [B, M] (None: no memory)."""
    T = cos.shape[0]
    device = cos.device
    backend = resolve_backend(backend, device)
    M = 0 if valid is None else valid.shape[1]
    if M == 0:
        valid = torch.zeros(batch_size, 0, dtype=torch.bool, device=device)
    plan = AttentionPlan(backend, memory_rope, M, T, valid, cos, sin, memory_cos, memory_sin,
                         head_dim=2 * cos.shape[1])
    if backend == "sdpa" and M > 0:
        plan.mask = sdpa_mask(valid, T)
    elif backend == "flex":
        plan.block_mask = flex_block_mask(valid, T)
    elif backend == "flash":
        plan.flash = flash_layout(valid, T)
    return plan


# ---------------------------------------------------------------- backends

def run_backend(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan) -> Tensor:
    """q, k (rotary placed) and v [B, M+T, H, D] through the plan's backend -> [B, M+T, H, Dv]."""
    scale = 1.0 / math.sqrt(plan.head_dim)
    if plan.backend == "sdpa":
        return attend_sdpa(q, k, v, plan, scale)
    if plan.backend == "flex":
        return attend_flex(q, k, v, plan, scale)
    if plan.backend == "flash":
        return attend_flash(q, k, v, plan, scale)
    raise ValueError(f"unknown attention backend {plan.backend!r}; choose one of {BACKENDS}")


def attend(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan) -> Tensor:
    """Attention of q, k, v [B, M+T, H, D] (QK-normed, not yet rotated) -> [B, M+T, H, D]."""
    q, k = place_rotary(q, k, plan)
    return run_backend(q, k, v, plan)


def place_memory_keys(k_memory: Tensor) -> Tensor:
    """Slot keys [B, M, H, D] of the `kv` injection, never rotated, widened to [k_memory, 0]."""
    return torch.cat([k_memory, torch.zeros_like(k_memory)], dim=-1)


def place_tokens_beside_memory_keys(q: Tensor, k: Tensor, q_memory: Tensor, cos: Tensor,
                                    sin: Tensor) -> tuple[Tensor, Tensor]:
    """Token q, k, q_memory [B, T, H, D] beside `kv` slot keys, at the positions of cos/sin:
    [q_memory, rot(q)] / [0, rot(k)]. A KV-cached decoder places its tokens with this."""
    k = rotate(k, cos, sin)
    return torch.cat([q_memory, rotate(q, cos, sin)], dim=-1), torch.cat([torch.zeros_like(k), k], dim=-1)


def attend_memory_keys(q: Tensor, k: Tensor, v: Tensor, q_memory: Tensor, k_memory: Tensor,
                       v_memory: Tensor, plan: AttentionPlan) -> Tensor:
    """Tokens attending to memory keys and to each other (module docstring): q, k, v, q_memory
    [B, T, H, D] the tokens' projections (QK-normed, not rotated), k_memory, v_memory [B, M, H, D]
    the slots'; `plan` is built for the M slots. Returns the tokens' outputs [B, T, H, D]."""
    M = k_memory.shape[1]
    q, k = place_tokens_beside_memory_keys(q, k, q_memory, plan.cos, plan.sin)
    memory_keys = place_memory_keys(k_memory)
    queries = torch.cat([torch.zeros_like(memory_keys), q], dim=1)  # slots attend to nothing
    keys = torch.cat([memory_keys, k], dim=1)
    y = run_backend(queries, keys, torch.cat([v_memory, v], dim=1), plan)
    return y[:, M:]


def attend_sdpa(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan, scale: float) -> Tensor:
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    if plan.mask is None:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.mask, scale=scale)
    return y.transpose(1, 2)


def flex_block_mask(valid: Tensor, T: int):
    from torch.nn.attention.flex_attention import create_block_mask
    B, M = valid.shape
    if M == 0:  # `allowed` indexes valid; a plain causal mask needs no memory lookup
        def mask_mod(b, h, q, kv):
            return kv <= q
    else:
        def mask_mod(b, h, q, kv):
            return allowed(b, q, kv, valid)
    return create_block_mask(mask_mod, B, None, M + T, M + T, device=valid.device)


_compiled_flex = None


def flex_function(device: torch.device) -> Callable:
    """Compiled flex_attention on CUDA (the fused kernel); the unfused eager one elsewhere."""
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention
    if device.type != "cuda":
        return flex_attention
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


def attend_flex(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan, scale: float) -> Tensor:
    if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
        raise BackendUnavailable(
            "attn_backend 'flex' cannot train on CPU (torch 2.13 FlexAttention has no CPU "
            "backward): set model.attn_backend: auto or sdpa")
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    with warnings.catch_warnings():
        # on CPU the unfused path is deliberate (compiling per shape costs ~20 s)
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        y = flex_function(q.device)(q, k, v, block_mask=plan.block_mask, scale=scale)
    return y.transpose(1, 2)


def attend_flash(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan, scale: float) -> Tensor:
    """Two varlen calls: valid memory -> valid memory, and tokens -> [valid memory; tokens]."""
    kernel = flash_kernel(q.device)
    layout, M, T = plan.flash, plan.num_memory, plan.num_tokens
    B, S, H, Dv = v.shape
    out_dtype = v.dtype
    if q.is_cuda and q.dtype == torch.float32:  # flash-attn computes in fp16/bf16 only
        q, k, v = (x.to(torch.bfloat16) for x in (q, k, v))
    if v.shape[-1] != q.shape[-1]:  # `unrotated` widens q, k; flash-attn needs v as wide
        v = F.pad(v, (0, q.shape[-1] - v.shape[-1]))
    Dqk, Dw = q.shape[-1], v.shape[-1]
    keys = k.reshape(B * S, H, Dqk)[layout.key_keep]
    values = v.reshape(B * S, H, Dw)[layout.key_keep]
    tokens = kernel(q[:, M:].reshape(B * T, H, Dqk), keys, values, layout.token_cu, layout.key_cu,
                    T, layout.max_memory + T, softmax_scale=scale, causal=True)
    tokens = tokens.reshape(B, T, H, Dw)
    memory = torch.zeros(B * M, H, Dw, dtype=tokens.dtype, device=tokens.device)
    if layout.memory_index.numel():
        idx = layout.memory_index
        packed = kernel(q[:, :M].reshape(B * M, H, Dqk)[idx], k[:, :M].reshape(B * M, H, Dqk)[idx],
                        v[:, :M].reshape(B * M, H, Dw)[idx], layout.memory_cu, layout.memory_cu,
                        layout.max_memory, layout.max_memory, softmax_scale=scale, causal=False)
        memory = memory.index_put((idx,), packed)
    y = torch.cat([memory.reshape(B, M, H, Dw), tokens], dim=1)
    return y[..., :Dv].to(out_dtype)
