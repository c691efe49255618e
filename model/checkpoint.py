"""Step-numbered training checkpoints, written atomically and resumed from the highest valid one.

    checkpoints/<variant>/step_000500/
        model.safetensors   the weights
        optimizer.pt        [Muon, AdamW] state dicts
        loader.json         each rank's dataloader position
        rng.pt              each rank's torch / CUDA / numpy / python RNG states
        meta.json           step, variant, the whole run config and the GPTConfig (written last)

A checkpoint is assembled in a hidden temporary folder and renamed into place, so a step folder
either is complete or does not exist; `latest_checkpoint` still checks every file and skips a
folder that is not valid. Everything loads with safetensors or `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FILES = ("model.safetensors", "optimizer.pt", "loader.json", "rng.pt", "meta.json")


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]
    weights: dict[str, torch.Tensor]
    optimizers: list[dict[str, Any]]
    loader_states: list[dict[str, Any]]  # one per rank
    rng_states: list[dict[str, Any]]  # one per rank

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def step_folder(folder: Path, step: int) -> Path:
    return Path(folder) / f"step_{step:06d}"


def save_checkpoint(folder: Path, step: int, model: torch.nn.Module,
                    optimizers: list[torch.optim.Optimizer], loader_states: list[dict[str, Any]],
                    rng_states: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write `folder/step_<step>` atomically (an existing one for the same step is replaced)."""
    final = step_folder(folder, step)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(_unshared(model.state_dict()), tmp / "model.safetensors")
        torch.save([opt.state_dict() for opt in optimizers], tmp / "optimizer.pt")
        (tmp / "loader.json").write_text(json.dumps(loader_states, indent=1))
        torch.save(rng_states, tmp / "rng.pt")
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=2, default=str))
        _replace_folder(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copies of the weights; a tensor that shares memory with an earlier one (tied embeddings)
    is copied, as safetensors refuses shared tensors. Loading fills the shared one twice."""
    seen: set[int] = set()
    weights = {}
    for key, value in state.items():
        value = value.detach().contiguous().cpu()
        weights[key] = value.clone() if value.data_ptr() in seen else value
        seen.add(value.data_ptr())
    return weights


def _replace_folder(src: Path, dst: Path) -> None:
    if dst.exists():  # a rerun of the same step: move the old one aside, then drop it
        old = dst.with_name(f".old-{dst.name}-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)


def is_valid(path: Path) -> bool:
    """Every file present and meta.json readable with the folder's step."""
    if not all((path / f).is_file() for f in FILES):
        return False
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return path.name == f"step_{int(meta.get('step', -1)):06d}"


def latest_checkpoint(folder: Path) -> Path | None:
    """The valid step folder with the highest step, or None."""
    steps = sorted(Path(folder).glob("step_*"), key=lambda p: p.name, reverse=True)
    return next((p for p in steps if is_valid(p)), None)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> Checkpoint:
    path = Path(path)
    if not is_valid(path):
        raise FileNotFoundError(f"{path}: not a complete checkpoint (needs {', '.join(FILES)})")
    return Checkpoint(
        path=path,
        meta=json.loads((path / "meta.json").read_text()),
        weights=load_file(path / "model.safetensors", device=str(device)),
        optimizers=torch.load(path / "optimizer.pt", map_location=device, weights_only=True),
        loader_states=json.loads((path / "loader.json").read_text()),
        rng_states=torch.load(path / "rng.pt", weights_only=True),
    )


def load_weights(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(meta, weights) of a checkpoint, without the optimizer and loader states (for evaluation)."""
    path = Path(path)
    if not is_valid(path):
        raise FileNotFoundError(f"{path}: not a complete checkpoint (needs {', '.join(FILES)})")
    return json.loads((path / "meta.json").read_text()), load_file(path / "model.safetensors", device=str(device))


def rng_state() -> dict[str, Any]:
    """This process's RNG states, in types `torch.load(weights_only=True)` accepts."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
