"""TripletEncoder: one memory vector per triplet (subject, relation, object, polarity, age).

Two ways to represent the three parts (`GPTConfig.triplet_encoder`):
- `tokens` (default): pool the model's SHARED token embedding over the surface form's token ids
  (padding -1 ignored). Each within-span position has its own learned per-channel gate before the
  mean, so the order of a multi-token name survives pooling ("New York" != "York New"). Open
  vocabulary: a name seen only in memory is made of the same embeddings the model reads and writes.
- `vocab`: embedding tables over canonical ids, hashed into `id_buckets` rows (`id % id_buckets`;
  id -1, unknown, has its own row). Subject and object share the entity table.

subject | relation | object | polarity (4 x n_embd) -> RMSNorm -> MLP (ReLU^2) -> n_embd, plus an
age embedding over log-spaced buckets of tokens-ago, bucket = min(floor(log2(age + 1)), buckets-1).
Invalid slots give finite vectors (they are masked out of attention anyway).

With `memory_injection: kv` (the KBLaM-style variant) a slot is a key and a value instead of one
vector: the key is subject | relation | polarity through the same RMSNorm, MLP and age embedding,
the value the object's pooled span (`keys_values`); model/gpt.py projects both per layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from model.memory import Memory


def age_bucket(age: Tensor, num_buckets: int) -> Tensor:
    """floor(log2(age + 1)) capped to the last bucket; negative ages count as 0."""
    exponent = torch.frexp((age.clamp(min=0) + 1).float()).exponent  # x = m * 2^e, m in [0.5, 1)
    return (exponent.long() - 1).clamp(max=num_buckets - 1)


def id_bucket(ids: Tensor, num_buckets: int) -> Tensor:
    """Canonical id -> table row; -1 (unknown) -> the dedicated last row `num_buckets`."""
    return torch.where(ids >= 0, ids % num_buckets, torch.full_like(ids, num_buckets))


SLOT_PARTS = ("subject", "relation", "object", "polarity")  # one vector per slot
KEY_PARTS = ("subject", "relation", "polarity")  # `kv`: the key; the object is the value


class TripletEncoder(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        C = config.n_embd
        self.mode = config.triplet_encoder
        self.parts = KEY_PARTS if config.memory_injection == "kv" else SLOT_PARTS
        self.max_surface_len = config.max_surface_len
        self.age_buckets = config.age_buckets
        self.id_buckets = config.id_buckets
        if self.mode == "tokens":
            self.span_gates = nn.Parameter(torch.empty(config.max_surface_len, C))
        else:
            self.entity_emb = nn.Embedding(config.id_buckets + 1, C)
            self.relation_emb = nn.Embedding(config.id_buckets + 1, C)
        self.polarity_emb = nn.Embedding(2, C)
        self.age_emb = nn.Embedding(config.age_buckets, C)
        self.c_fc = nn.Linear(len(self.parts) * C, 4 * C, bias=False)
        self.c_proj = nn.Linear(4 * C, C, bias=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        if self.mode == "tokens":
            # distinct gates per position from the start, near plain mean pooling
            self.span_gates.normal_(1.0, 0.1)
        else:
            nn.init.normal_(self.entity_emb.weight, std=1.0)
            nn.init.normal_(self.relation_emb.weight, std=1.0)
        nn.init.normal_(self.polarity_emb.weight, std=1.0)
        nn.init.normal_(self.age_emb.weight, std=1.0)
        bound = 3 ** 0.5 * self.c_fc.in_features ** -0.5
        nn.init.uniform_(self.c_fc.weight, -bound, bound)
        nn.init.zeros_(self.c_proj.weight)  # like every output projection: starts as a no-op

    def vector_parameters(self) -> list[nn.Parameter]:
        """Embedding tables and gates (AdamW); the two MLP matrices go to Muon."""
        return [p for n, p in self.named_parameters() if not n.startswith(("c_fc", "c_proj"))]

    def pool_span(self, ids: Tensor, token_embedding: nn.Embedding) -> Tensor:
        """Gated mean of token embeddings over a surface form: ids [B, M, L] -> [B, M, C]."""
        ids = ids[..., : self.max_surface_len]  # longer names keep their first tokens
        present = ids >= 0
        emb = token_embedding(ids.clamp(min=0)) * self.span_gates[: ids.shape[-1]]
        emb = emb * present.unsqueeze(-1).to(emb.dtype)
        return emb.sum(dim=-2) / present.sum(dim=-1, keepdim=True).clamp(min=1).to(emb.dtype)

    def part_vectors(self, memory: Memory, token_embedding: nn.Embedding) -> dict[str, Tensor]:
        """Each part of every slot as one [B, M, n_embd] vector."""
        if self.mode == "tokens":
            subject, relation, obj = (self.pool_span(span, token_embedding)
                                      for span in (memory.subject, memory.relation, memory.object))
        else:
            ids = id_bucket(memory.ids, self.id_buckets)
            subject, relation, obj = (self.entity_emb(ids[..., 0]), self.relation_emb(ids[..., 1]),
                                      self.entity_emb(ids[..., 2]))
        return {"subject": subject, "relation": relation, "object": obj,
                "polarity": self.polarity_emb(memory.negated.long())}

    def encode(self, parts: dict[str, Tensor], age: Tensor) -> Tensor:
        """This encoder's parts -> RMSNorm -> MLP, plus the age embedding: [B, M, n_embd]."""
        h = torch.cat([parts[name] for name in self.parts], dim=-1)
        h = F.rms_norm(h, (h.size(-1),))
        h = self.c_proj(F.relu(self.c_fc(h)).square())
        return h + self.age_emb(age_bucket(age, self.age_buckets))

    def forward(self, memory: Memory, token_embedding: nn.Embedding) -> Tensor:
        """Memory -> [B, M, n_embd], one vector per slot (the key, with `memory_injection: kv`)."""
        return self.encode(self.part_vectors(memory, token_embedding), memory.age)

    def keys_values(self, memory: Memory, token_embedding: nn.Embedding) -> tuple[Tensor, Tensor]:
        """`kv`: (keys, values) [B, M, n_embd] each, RMS-normed like the inputs of a layer."""
        parts = self.part_vectors(memory, token_embedding)
        keys, values = self.encode(parts, memory.age), parts["object"]
        return F.rms_norm(keys, (keys.size(-1),)), F.rms_norm(values, (values.size(-1),))
