"""The numeric precision of a forward pass: bf16 autocast or plain fp32.

`train.precision: auto` is bf16 autocast on CUDA (weights stay fp32) and fp32 on CPU; `bf16`
asks for bf16 autocast on either, which is how the GPU path is exercised on a CPU.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast_for(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast on `device` when `precision` asks for it, else a context that does nothing."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
