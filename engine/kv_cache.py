"""The KV-cached forward of model.gpt.GPT: memory keys/values once per memory, token keys/values
one step at a time.

    cache = WindowCache(model, memory, capacity=spec.context_len)   # runs the memory slots once
    logits, weights = cache.forward(idx)        # idx [B, t] the next t tokens: logits [B, t, vocab]

Why this equals the uncached forward over `[m_1 .. m_M | t_1 .. t_T]` (model/attention.py's rule):
- a memory query sees only memory, so every layer's memory states depend on the memory alone:
  running the blocks over the slots by themselves gives the keys/values the full forward uses;
- a token query sees every valid memory key and the tokens up to itself, so the keys/values of
  earlier tokens never change while the memory and the window stay: append, never recompute;
- the short convolution sees the `kernel - 1` tokens before it: its inputs are kept per layer.
Only valid slots are passed in (invalid ones are never attended to), so every memory key counts.

A memory change changes what every token attends to, hence every token's keys and values from the
second layer up: the window's cache must then be rebuilt (a new `WindowCache`, then the window's
tokens again), which engine/engine.py does and BENCHMARKS.md measures. Rotary positions count
from the first cached token, as in training, where a sequence starts at its prefix.

Attention here is SDPA with an explicit mask whatever `attn_backend` the model was trained with
(all backends give the same numbers, tests/model/test_attention.py); with `explain=True` the
softmax is computed explicitly so that its weights on the memory slots come back, averaged over
heads and layers: `weights[b, i, m]` is how much token i attended to slot m.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from model.attention import place_memory_rotary, place_token_rotary, rotate
from model.gpt import GPT, norm
from model.memory import Memory


class WindowCache:
    """Per layer: keys and values of [memory slots | cached tokens], and the short-conv inputs."""

    def __init__(self, model: GPT, memory: Memory | None, capacity: int):
        cfg = model.config
        self.model = model
        self.with_memory = model.triplet_encoder is not None  # token q/k are placed beside memory
        if memory is not None and not self.with_memory:
            raise ValueError("memory was given but the model has memory_slots=0")
        if memory is not None and not bool(memory.mask.all()):
            raise ValueError("pass only the valid memory slots (every mask entry True)")
        device = model.inv_freq.device
        batch_size = 1 if memory is None else memory.mask.shape[0]
        self.scale = cfg.head_dim ** -0.5
        self.num_memory = 0 if memory is None else memory.slots
        self.length = 0
        self.capacity = capacity
        cos, sin, self.memory_cos, self.memory_sin = model.rotary_tables(capacity)
        self.cos, self.sin = cos, sin
        key_dim = 2 * cfg.head_dim if self.with_memory and cfg.memory_rope == "unrotated" else cfg.head_dim
        shape = (batch_size, cfg.n_head, self.num_memory + capacity)
        self.keys = [torch.zeros(*shape, key_dim, device=device) for _ in model.blocks]
        self.values = [torch.zeros(*shape, cfg.head_dim, device=device) for _ in model.blocks]
        self.conv = [None if b.conv is None else
                     torch.zeros(batch_size, b.conv.weight.shape[-1] - 1, cfg.n_embd, device=device)
                     for b in model.blocks]
        if self.num_memory:
            self._encode_memory(memory.to(device))

    @torch.no_grad()
    def _encode_memory(self, memory: Memory) -> None:
        """Run the blocks over the slots alone (memory attends only to memory) and keep each
        layer's memory keys and values."""
        model, M = self.model, self.num_memory
        x = model.triplet_encoder(memory, model.wte)
        for layer, block in enumerate(model.blocks):
            q, k, v = block.attn.project(norm(x))
            q, k = place_memory_rotary(q, k, model.config.memory_rope, self.memory_cos, self.memory_sin)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
            self.keys[layer][:, :, :M], self.values[layer][:, :, :M] = k, v
            y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
            x = x + block.attn.c_proj(y.transpose(1, 2).reshape(x.shape))
            x = x + block.mlp(norm(x))

    @torch.no_grad()
    def forward(self, idx: Tensor, explain: bool = False) -> tuple[Tensor, Tensor | None]:
        """Logits [B, t, vocab] of the next t tokens idx [B, t], appended to the cache; with
        `explain`, their attention on the memory slots [B, t, M] (mean over heads and layers)."""
        model, M, n = self.model, self.num_memory, self.length
        B, t = idx.shape
        if n + t > self.capacity:
            raise ValueError(f"{n + t} tokens do not fit a cache of {self.capacity}: slide the window")
        end = M + n + t
        cos, sin = self.cos[n:n + t], self.sin[n:n + t]
        # token i (at position n + i) sees every memory slot and the tokens at positions <= n + i
        key_pos = torch.arange(end, device=idx.device)
        query_pos = n + torch.arange(t, device=idx.device)[:, None]
        mask = (key_pos[None, :] < M) | (key_pos[None, :] - M <= query_pos)
        weights = torch.zeros(B, t, M, device=idx.device) if explain else None
        x = model.wte(idx)
        for layer, block in enumerate(model.blocks):
            if block.conv is not None:
                inputs = norm(x)
                state = self.conv[layer]
                x = x + block.conv(inputs, state)
                self.conv[layer] = torch.cat([state, inputs], dim=1)[:, inputs.shape[1]:]
            q, k, v = block.attn.project(norm(x))
            if self.with_memory:
                q, k = place_token_rotary(q, k, model.config.memory_rope, cos, sin)
            else:
                q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            q, k, v = (a.transpose(1, 2) for a in (q, k, v))
            self.keys[layer][:, :, M + n:end], self.values[layer][:, :, M + n:end] = k, v
            keys, values = self.keys[layer][:, :, :end], self.values[layer][:, :, :end]
            if explain:
                scores = q @ keys.transpose(-1, -2) * self.scale
                probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
                y = probs @ values
                weights += probs[..., :M].mean(dim=1) / len(model.blocks)
            else:
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale)
            x = x + block.attn.c_proj(y.transpose(1, 2).reshape(x.shape))
            x = x + block.mlp(norm(x))
        self.length = n + t
        return model.logits(x), weights
