"""Train one variant: the torchrun entry point.

    torchrun --standalone --nproc_per_node=2 -m model.train --config configs/tiny.yaml --variant triplet
    python -m model.train --config configs/tiny.yaml --variant window --steps 50   # one process

DDP over gloo (CPU) or nccl (GPU); bf16 autocast on GPU (train.precision; bf16 on CPU too when
asked); optional torch.compile (train.compile);
gradient accumulation up to `train.total_batch_size` window tokens per step. A checkpoint is
written every `train.checkpoint_every` steps and at the end (model/checkpoint.py); `--resume`
continues from the highest valid one exactly where it stopped (weights, optimizer, each rank's
loader position and RNG). `--steps K` stops after step K of the configured schedule, so a run
stopped at K and resumed reproduces the uninterrupted one. Rank 0 prints one line per step and
appends step, loss and learning rate as JSON to `runs/<name>/train/<variant>.jsonl` (the report's
loss curves; the same bytes after a resume as without one) and the step's speed to
`train/<variant>.speed.jsonl`; wandb logs too when `train.wandb.mode` is not `disabled`.

Every variant gets the same windows and targets; what each adds before the window (tokens with no
loss on them, or memory slots) is its entry in model/variants.py. Variants without a memory builder
get a model without memory.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from configs.schema import RunConfig, load_config_or_exit
from model.checkpoint import (latest_checkpoint, load_checkpoint, rng_state, save_checkpoint,
                              set_rng_state)
from model.dataloader import Batch, WindowLoader, load_training_documents
from model.gpt import GPT
from model.optim import build_optimizers, lr_multiplier, set_learning_rates
from model.precision import autocast_for
from model.tokenizer import load_run_tokenizer
from model.variants import gpt_config, prepared_spec, variant_of
from warehouse.shard_io import write_text_atomically

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 per GPU


class TrainInputError(ValueError):
    """Bad input to training (missing shards, settings that do not fit); one line, exit 1."""


class TrainingDiverged(RuntimeError):
    """The loss became inf or NaN; training stops rather than write a meaningless checkpoint."""


# ---------------------------------------------------------------- setup

def grad_accum_steps(cfg: RunConfig, world_size: int) -> int:
    per_micro_step = cfg.train.device_batch_size * cfg.model.sequence_len * world_size
    total = cfg.train.total_batch_size
    if total is None:
        return 1
    if total % per_micro_step:
        raise TrainInputError(
            f"train.total_batch_size ({total}) must be a multiple of device_batch_size x "
            f"sequence_len x processes ({per_micro_step}): change it or device_batch_size")
    return total // per_micro_step


def pick_device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainInputError("train.device is 'cuda' but no GPU is visible: set train.device: auto")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); joins the process group when started by torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((f for key, f in PEAK_BF16_FLOPS.items() if key in name), None)


def gather(obj: Any, world_size: int) -> list[Any]:
    """Every rank's `obj`, in rank order."""
    if world_size == 1:
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------- the loss log

def log_path(run_dir: Path, variant: str) -> Path:
    return Path(run_dir) / "train" / f"{variant}.jsonl"


def speed_log_path(run_dir: Path, variant: str) -> Path:
    return Path(run_dir) / "train" / f"{variant}.speed.jsonl"


def reset_log(path: Path, keep_through_step: int) -> None:
    """Keep the lines of steps <= `keep_through_step` (0 on a fresh start), so a resumed run's log
    has each step once."""
    kept = []
    if keep_through_step > 0 and path.is_file():
        for line in path.read_text().splitlines():
            try:
                if int(json.loads(line)["step"]) <= keep_through_step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill
    write_text_atomically("".join(f"{line}\n" for line in kept), path)


# ---------------------------------------------------------------- training

def training_losses(nats: torch.Tensor, batch: Batch, recall_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean next-token loss, the objective minimised) from per-token nats [B, L].

    The objective is a weighted mean in which recall tokens count `recall_weight` times (at 1, the
    plain mean). The logged loss is always the plain mean, so curves compare across weights."""
    targets = (batch.targets >= 0).to(nats.dtype)
    loss = nats.sum() / targets.sum().clamp(min=1)
    if recall_weight == 1.0:
        return loss, loss
    weights = targets * (1.0 + (recall_weight - 1.0) * batch.recall.to(nats.dtype))
    return loss, (nats * weights).sum() / weights.sum()


def train(cfg: RunConfig, run_dir: Path, variant: str, resume: bool = False,
          stop_step: int | None = None) -> None:
    """Train `variant` to `stop_step` (default train.steps) of the train.steps schedule."""
    total = cfg.train.steps
    stop = total if stop_step is None else stop_step
    if not 1 <= stop <= total:
        raise TrainInputError(f"--steps must be between 1 and train.steps ({total}), got {stop}")
    if variant_of(variant).memory is not None and cfg.model.memory_slots == 0:
        raise TrainInputError(f"variant {variant!r} needs model.memory_slots > 0")
    tokenizer = load_run_tokenizer(run_dir)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(cfg.train.device, local_rank)
    rank, world_size = init_distributed(device)
    try:
        _train(cfg, Path(run_dir), variant, resume, stop, tokenizer.vocab_size, device, rank,
               world_size)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: RunConfig, run_dir: Path, variant: str, resume: bool, stop: int, vocab_size: int,
           device: torch.device, rank: int, world_size: int) -> None:
    total, master = cfg.train.steps, rank == 0
    spec = prepared_spec(cfg, variant, run_dir)  # recorded in the checkpoint for evaluation
    model_cfg = gpt_config(cfg, variant, vocab_size, spec)
    memory_source = cfg.train.memory_source if variant_of(variant).reads_memory_rows else None
    docs = load_training_documents(run_dir, "train", memory_source, rank, world_size)
    loader = WindowLoader(docs, spec, cfg.train.device_batch_size, cfg.train.seed, rank, world_size)
    accum = grad_accum_steps(cfg, world_size)

    # identical initial weights on every rank; python's and numpy's generators seeded too, so a
    # checkpoint's RNG file is the same bytes in every run of these settings
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % 2**32)
    model = GPT(model_cfg).to(device)
    optimizers = build_optimizers(model, cfg.train)
    folder = run_dir / "checkpoints" / variant
    start = 0
    if resume and (last := latest_checkpoint(folder)) is not None:
        ckpt = load_checkpoint(last, device)
        if len(ckpt.loader_states) != world_size:
            raise TrainInputError(f"{last} was written by {len(ckpt.loader_states)} processes; "
                                  f"resume with --nproc_per_node={len(ckpt.loader_states)}")
        model.load_state_dict(ckpt.weights)
        for opt, state in zip(optimizers, ckpt.optimizers):
            opt.load_state_dict(state)
        loader.load_state_dict(ckpt.loader_states[rank])
        set_rng_state(ckpt.rng_states[rank])
        start = ckpt.step
        if master:
            print(f"resuming {variant} from {last}", flush=True)
    if start > stop:
        raise TrainInputError(f"{folder} already holds step {start}, past --steps {stop}")

    forward = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world_size > 1 else model
    if cfg.train.compile:
        forward = torch.compile(forward)
    autocast = autocast_for(device, cfg.train.precision)
    peak = peak_flops(device)
    flops_per_position = model.estimate_flops_per_token()
    tokens_per_step = cfg.train.device_batch_size * cfg.model.sequence_len * accum * world_size
    meta = {"variant": variant, "world_size": world_size, "config": cfg.model_dump(mode="json"),
            "model_config": asdict(model_cfg), "window_spec": asdict(spec)}
    log_file, speed_file = log_path(run_dir, variant), speed_log_path(run_dir, variant)
    wandb_run = None
    if master:
        reset_log(log_file, start)
        reset_log(speed_file, start)
        wandb_run = _start_wandb(cfg, run_dir, variant)

    model.train()
    for step in range(start, stop):
        t0 = time.perf_counter()
        multiplier = lr_multiplier(step, total, cfg.train.warmup_steps, cfg.train.warmdown_frac)
        set_learning_rates(optimizers, multiplier)
        loss_sum = torch.zeros((), device=device)
        positions = 0
        for micro in range(accum):
            batch = next(loader).to(device)
            positions += batch.inputs.numel() + (0 if batch.memory is None else batch.memory.mask.numel())
            sync = micro == accum - 1 or world_size == 1
            with (nullcontext() if sync else forward.no_sync()):
                with autocast:
                    nats = forward(batch.inputs, batch.targets, memory=batch.memory,
                                   loss_reduction="none")
                loss, objective = training_losses(nats, batch, cfg.train.recall_loss_weight)
                (objective / accum).backward()
            loss_sum += loss.detach()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        if world_size > 1:
            dist.all_reduce(loss_sum)
        loss_value = loss_sum.item() / (accum * world_size)  # the same on every rank
        if not math.isfinite(loss_value):
            raise TrainingDiverged(
                f"variant {variant}: the loss is {loss_value} at step {step + 1}; lower "
                "train.matrix_lr / train.embedding_lr or check the shards")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        done = step + 1
        if master:
            record = {"step": done, "loss": loss_value, "lr": cfg.train.matrix_lr * multiplier}
            speed = {"step": done, "tokens_per_s": tokens_per_step / seconds, "seconds": seconds}
            line = (f"step {done}/{total} | loss {loss_value:.4f} | lr {record['lr']:.4f} | "
                    f"{speed['tokens_per_s']:,.0f} tok/s")
            if peak is not None:  # this rank's positions (memory slots included) vs one GPU's peak
                speed["mfu"] = flops_per_position * positions / seconds / peak
                line += f" | mfu {100 * speed['mfu']:.1f}%"
            print(line, flush=True)
            for path, values in ((log_file, record), (speed_file, speed)):
                with path.open("a") as f:
                    f.write(json.dumps(values) + "\n")
            if wandb_run is not None:
                wandb_run.log({**record, **speed}, step=done)
        if done % cfg.train.checkpoint_every == 0 or done == stop:
            loader_states = gather(loader.state_dict(), world_size)
            rng_states = gather(rng_state(), world_size)
            if master:
                save_checkpoint(folder, done, model, optimizers, loader_states, rng_states, meta)
            if world_size > 1:
                dist.barrier()  # nobody runs ahead of a checkpoint being written
    if wandb_run is not None:
        wandb_run.finish()


def _start_wandb(cfg: RunConfig, run_dir: Path, variant: str):
    if cfg.train.wandb.mode == "disabled":
        return None
    import wandb
    return wandb.init(project=cfg.train.wandb.project, name=f"{cfg.name}-{variant}",
                      mode=cfg.train.wandb.mode, dir=str(run_dir / "train"),
                      config=cfg.model_dump(mode="json"), settings=wandb.Settings(silent=True))


# ---------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train one variant (run under torchrun for DDP).")
    parser.add_argument("--config", required=True, help="run config YAML")
    parser.add_argument("--variant", required=True, help="a variant of model/variants.py")
    parser.add_argument("--runs-dir", default="runs", help="folder holding runs/<name>")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--steps", type=int, default=None,
                        help="stop after this step of the schedule (default: train.steps)")
    args = parser.parse_args(argv)
    cfg = load_config_or_exit(args.config)
    run_dir = Path(args.runs_dir) / cfg.name
    try:
        train(cfg, run_dir, args.variant, resume=args.resume, stop_step=args.steps)
    except (ValueError, FileNotFoundError, TrainingDiverged) as err:  # bad input, or divergence
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
