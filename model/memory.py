"""The memory batch (`Memory`) and the memory policy that builds one window's memory.

A window starting at token `s` sees the triplets stated in the evicted region (`token_pos <= s`),
after the policy of DESIGN §4. `Memory` holds them as padded tensors, one row per window.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Memory:
    """Padded triplet memory for a batch of windows.

    subject / relation / object: [B, M, L] token ids of the surface forms, padded with -1
    ids: [B, M, 3] canonical (subject, relation, object) ids, -1 when unknown
    negated: [B, M] polarity; age: [B, M] tokens between statement and window start
    mask: [B, M] True for valid slots
    """
    subject: torch.Tensor
    relation: torch.Tensor
    object: torch.Tensor
    ids: torch.Tensor
    negated: torch.Tensor
    age: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> "Memory":
        return Memory(**{k: v.to(device, non_blocking=True) for k, v in self.__dict__.items()})

    @property
    def slots(self) -> int:
        return self.mask.shape[1]
