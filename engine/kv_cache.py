"""The KV-cached forward of model.gpt.GPT: memory keys/values once per memory, token keys/values
one step at a time.

    cache = WindowCache(model, memory, capacity=spec.context_len)   # the memory's keys/values once
    logits, weights = cache.forward(idx)        # idx [B, t] the next t tokens: logits [B, t, vocab]

The model places memory as its `memory_injection` says (model/gpt.py), and so does the cache:
- `positions`: the slots are positions before the window in every layer. A memory query sees only
  memory, so every layer's memory states depend on the memory alone: running the blocks over the
  slots by themselves gives the keys/values the full forward uses;
- `kv`: the slots are extra keys/values of the layers in `config.memory_key_layers` only, made
  from the TripletEncoder's keys/values by each such layer's own projections (no block runs over
  them); a token scores them with that layer's memory query, unrotated, under the same softmax as
  the tokens (model/attention.py `attend_memory_keys`). The other layers attend over tokens only.
In both, a token query sees every valid memory key and the tokens up to itself, so the
keys/values of earlier tokens never change while the memory and the window stay: append, never
recompute; the short convolution sees the `kernel - 1` tokens before it: its inputs are kept per
layer. Only valid slots are passed in (invalid ones are never attended to), so every memory key
counts.

A memory change changes what every token attends to, hence every token's keys and values from the
second layer up: the window's cache must then be rebuilt (a new `WindowCache`, then the window's
tokens again), which engine/engine.py does and BENCHMARKS.md measures. Rotary positions count
from the first cached token, as in training, where a sequence starts at its prefix.

Attention here is SDPA with an explicit mask whatever `attn_backend` the model was trained with
(all backends give the same numbers, tests/model/test_attention.py); with `explain=True` the
softmax is computed explicitly so that its weights on the memory slots come back, averaged over
heads and over the layers that read memory (`memory_layers`: every layer for `positions`, the
injecting ones for `kv`): `weights[b, i, m]` is how much token i attended to slot m, and a token's
weights sum to its attention mass on memory in those layers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from model.attention import (place_memory_keys, place_memory_rotary, place_token_rotary,
                             place_tokens_beside_memory_keys, rotate)
from model.gpt import GPT, GPTConfig, norm
from model.memory import Memory


def memory_layers(config: GPTConfig) -> tuple[int, ...]:
    """The layers whose attention reads memory slots: all of them (`positions`), the injecting
    ones (`kv`), none without memory."""
    if config.memory_slots == 0:
        return ()
    if config.memory_injection == "kv":
        return config.memory_key_layers
    return tuple(range(config.n_layer))


class WindowCache:
    """Per layer: keys and values of [memory slots | cached tokens] (memory only in a layer that
    reads it), and the short-conv inputs."""

    def __init__(self, model: GPT, memory: Memory | None, capacity: int):
        cfg = model.config
        self.model = model
        if memory is not None and model.triplet_encoder is None:
            raise ValueError("memory was given but the model has memory_slots=0")
        if memory is not None and not bool(memory.mask.all()):
            raise ValueError("pass only the valid memory slots (every mask entry True)")
        device = model.inv_freq.device
        batch_size = 1 if memory is None else memory.mask.shape[0]
        self.scale = cfg.head_dim ** -0.5
        self.num_memory = 0 if memory is None else memory.slots
        self.memory_layers = memory_layers(cfg) if self.num_memory else ()
        self.memory_keys = cfg.memory_injection == "kv"  # slots as layer keys, not positions
        self.length = 0
        self.capacity = capacity
        cos, sin, self.memory_cos, self.memory_sin = model.rotary_tables(capacity)
        self.cos, self.sin = cos, sin
        self.keys, self.values = [], []
        for layer in range(cfg.n_layer):
            slots = self.num_memory if layer in self.memory_layers else 0
            shape = (batch_size, cfg.n_head, slots + capacity)
            self.keys.append(torch.zeros(*shape, self._key_dim(layer), device=device))
            self.values.append(torch.zeros(*shape, cfg.head_dim, device=device))
        self.conv = [None if b.conv is None else
                     torch.zeros(batch_size, b.conv.weight.shape[-1] - 1, cfg.n_embd, device=device)
                     for b in model.blocks]
        if self.num_memory:
            memory = memory.to(device)
            if self.memory_keys:
                self._project_memory_keys(memory)
            else:
                self._encode_memory(memory)

    def _key_dim(self, layer: int) -> int:
        """Keys are widened to 2 x head_dim where memory is scored unrotated beside rotated tokens."""
        cfg = self.model.config
        widened = layer in self.memory_layers and (self.memory_keys or cfg.memory_rope == "unrotated")
        return 2 * cfg.head_dim if widened else cfg.head_dim

    @torch.no_grad()
    def _encode_memory(self, memory: Memory) -> None:
        """`positions`: run the blocks over the slots alone (memory attends only to memory) and
        keep each layer's memory keys and values."""
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
    def _project_memory_keys(self, memory: Memory) -> None:
        """`kv`: each injecting layer's keys and values of the slots (the slots run through no
        block: they are the TripletEncoder's keys/values, projected per layer)."""
        model, M = self.model, self.num_memory
        keys, values = model.triplet_encoder.keys_values(memory, model.wte)
        for layer in self.memory_layers:
            k, v = model.blocks[layer].attn.memory_keys_values(keys, values)
            self.keys[layer][:, :, :M] = place_memory_keys(k).transpose(1, 2)
            self.values[layer][:, :, :M] = v.transpose(1, 2)

    def _place_tokens(self, layer: int, x: Tensor, q: Tensor, k: Tensor, cos: Tensor,
                      sin: Tensor) -> tuple[Tensor, Tensor]:
        """q, k [B, t, H, D] of tokens at the positions of cos/sin, as this layer scores them."""
        if layer not in self.memory_layers:
            return rotate(q, cos, sin), rotate(k, cos, sin)
        if self.memory_keys:
            q_memory = self.model.blocks[layer].attn.memory_query(x)
            return place_tokens_beside_memory_keys(q, k, q_memory, cos, sin)
        return place_token_rotary(q, k, self.model.config.memory_rope, cos, sin)

    @torch.no_grad()
    def forward(self, idx: Tensor, explain: bool = False) -> tuple[Tensor, Tensor | None]:
        """Logits [B, t, vocab] of the next t tokens idx [B, t], appended to the cache; with
        `explain`, their attention on the memory slots [B, t, M] (mean over heads and the
        layers that read memory)."""
        model, M, n = self.model, self.num_memory, self.length
        B, t = idx.shape
        if n + t > self.capacity:
            raise ValueError(f"{n + t} tokens do not fit a cache of {self.capacity}: slide the window")
        cos, sin = self.cos[n:n + t], self.sin[n:n + t]
        # token i (at position n + i) sees every memory slot and the tokens at positions <= n + i
        query_pos = n + torch.arange(t, device=idx.device)[:, None]
        token_pos = torch.arange(n + t, device=idx.device)[None, :]
        causal = token_pos <= query_pos
        beside_memory = torch.cat([torch.ones(t, M, dtype=torch.bool, device=idx.device), causal], dim=1)
        weights = torch.zeros(B, t, M, device=idx.device) if explain else None
        x = model.wte(idx)
        for layer, block in enumerate(model.blocks):
            if block.conv is not None:
                inputs = norm(x)
                state = self.conv[layer]
                x = x + block.conv(inputs, state)
                self.conv[layer] = torch.cat([state, inputs], dim=1)[:, inputs.shape[1]:]
            h = norm(x)
            q, k, v = block.attn.project(h)
            q, k = self._place_tokens(layer, h, q, k, cos, sin)
            q, k, v = (a.transpose(1, 2) for a in (q, k, v))
            slots = M if layer in self.memory_layers else 0
            end = slots + n + t
            self.keys[layer][:, :, slots + n:end], self.values[layer][:, :, slots + n:end] = k, v
            keys, values = self.keys[layer][:, :, :end], self.values[layer][:, :, :end]
            mask = beside_memory if slots else causal
            if explain:
                scores = q @ keys.transpose(-1, -2) * self.scale
                probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
                y = probs @ values
                if slots:
                    weights += probs[..., :slots].mean(dim=1) / len(self.memory_layers)
            else:
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale)
            x = x + block.attn.c_proj(y.transpose(1, 2).reshape(x.shape))
            x = x + block.mlp(norm(x))
        self.length = n + t
        return model.logits(x), weights
