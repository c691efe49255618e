"""Training under real torchrun (2 processes, gloo on CPU): checkpoints, and an exact resume."""
import json
import os
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from model.checkpoint import (latest_checkpoint, load_checkpoint, load_weights, rng_state,
                              save_checkpoint, set_rng_state)
from model.optim import lr_multiplier
from model.train import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def torchrun(config, runs, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "model.train", "--config", str(config), "--runs-dir", str(runs),
           "--variant", "triplet", *extra]
    env = {**os.environ, "PYTHONPATH": REPO, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def losses(log):
    return [(r["step"], r["loss"]) for r in map(json.loads, log.read_text().splitlines())]


def test_two_process_run_checkpoints_and_resumes_exactly(toy_run):
    # 8 windows x 16 tokens x 2 ranks = 256 tokens per micro-step: 2 accumulated micro-steps
    config, runs = toy_run(num_docs=60, total_batch_size=512)
    run_dir = runs / "toy"
    log = run_dir / "train" / "triplet.jsonl"
    out = torchrun(config, runs)
    assert [line.split(" |")[0] for line in out.splitlines() if line.startswith("step")] == [
        f"step {k}/8" for k in range(1, 9)]  # one line per step, from rank 0 only
    uninterrupted = losses(log)
    assert [s for s, _ in uninterrupted] == list(range(1, 9))
    assert uninterrupted[-1][1] < uninterrupted[0][1]  # it learns

    folder = run_dir / "checkpoints" / "triplet"
    assert sorted(p.name for p in folder.iterdir()) == ["step_000004", "step_000008"]
    ckpt = load_checkpoint(latest_checkpoint(folder))  # safetensors + weights_only loads
    assert ckpt.step == 8 and ckpt.meta["variant"] == "triplet"
    assert ckpt.meta["config"]["name"] == "toy" and ckpt.meta["model_config"]["memory_slots"] == 4
    assert [s["rank"] for s in ckpt.loader_states] == [0, 1] and len(ckpt.rng_states) == 2
    assert all(torch.isfinite(w).all() for w in ckpt.weights.values())

    shutil.rmtree(folder)
    torchrun(config, runs, "--steps", "5")
    assert [s for s, _ in losses(log)] == [1, 2, 3, 4, 5]
    out = torchrun(config, runs, "--resume")
    assert "resuming triplet from" in out and "step 5/8" not in out
    assert losses(log) == uninterrupted  # every later step has exactly the same loss


def test_bad_input_exits_with_one_line(toy_run, tmp_path, capsys):
    config, runs = toy_run(num_docs=10)
    shutil.rmtree(runs / "toy" / "tokens")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config), "--runs-dir", str(runs), "--variant", "window"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run the shards stage first" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: toy\ntrain: {stepz: 3}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(bad), "--variant", "window"])
    assert exit_info.value.code == 2 and "train.stepz: unknown key" in capsys.readouterr().err


def test_a_non_finite_loss_stops_training_with_one_line(toy_run, capsys):
    # finite but absurd learning rates: the weights overflow, the loss is NaN within a few steps
    config, runs = toy_run(num_docs=20, steps=20, matrix_lr=1e30, embedding_lr=1e30,
                           warmup_steps=0)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config), "--runs-dir", str(runs), "--variant", "triplet"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"error: variant triplet: the loss is (nan|inf) at step \d+; lower "
                        r"train.matrix_lr / train.embedding_lr or check the shards", err), err
    assert not list((runs / "toy" / "checkpoints" / "triplet").glob("step_*"))


def test_total_batch_size_sets_gradient_accumulation():
    from configs.schema import parse_config
    from model.train import TrainInputError, grad_accum_steps
    cfg = parse_config({"name": "x", "model": {"sequence_len": 16},
                        "train": {"device_batch_size": 4, "total_batch_size": 256}})
    assert grad_accum_steps(cfg, world_size=2) == 2 and grad_accum_steps(cfg, world_size=4) == 1
    with pytest.raises(TrainInputError, match=r"multiple of device_batch_size x sequence_len x "
                                              r"processes \(192\)"):
        grad_accum_steps(cfg, world_size=3)


def test_recall_weight_reweights_the_objective_but_not_the_logged_loss():
    from types import SimpleNamespace

    from model.train import training_losses
    nats = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    batch = SimpleNamespace(targets=torch.tensor([[5, 6, 7, -1]]),
                            recall=torch.tensor([[False, False, True, False]]))
    loss, objective = training_losses(nats, batch, 1.0)
    assert loss.item() == objective.item() == pytest.approx(2.0)
    loss, objective = training_losses(nats, batch, 10.0)
    assert loss.item() == pytest.approx(2.0)  # the plain mean over the 3 targets
    assert objective.item() == pytest.approx((1 + 2 + 10 * 3) / 12)  # the ignored position counts 0


def test_lr_schedule_warms_up_holds_and_warms_down():
    lrs = [lr_multiplier(s, 20, 4, 0.25) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and set(lrs[4:15]) == {1.0}
    assert all(a > b for a, b in zip(lrs[14:], lrs[15:])) and lrs[-1] == pytest.approx(0.05)


def draws():
    return torch.rand(3).tolist(), float(np.random.rand()), random.random()


def test_resume_point_is_the_highest_valid_checkpoint(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    for step in (2, 4):
        save_checkpoint(tmp_path, step, model, [opt], [{"epoch": 0}], [rng_state()], {"variant": "x"})
    expected = draws()  # what follows the RNG state saved at step 4
    (tmp_path / "step_000006").mkdir()  # a folder without its files: not a checkpoint
    (tmp_path / ".tmp-step_000008-1").mkdir()  # a write cut short
    assert latest_checkpoint(tmp_path).name == "step_000004"
    set_rng_state(load_checkpoint(tmp_path / "step_000004").rng_states[0])
    assert draws() == expected  # torch, numpy and python RNGs restored
    (tmp_path / "step_000004" / "meta.json").write_text("{cut")
    assert latest_checkpoint(tmp_path).name == "step_000002"
    meta, weights = load_weights(tmp_path / "step_000002")
    assert meta["step"] == 2 and torch.equal(weights["weight"], model.weight)


def test_a_tied_model_checkpoints_and_loads_back(tmp_path):
    from model.gpt import GPT, GPTConfig
    config = GPTConfig(vocab_size=100, n_layer=1, n_head=2, n_embd=32, sequence_len=8,
                       memory_slots=0, attn_backend="sdpa", tie_embeddings=True)
    model = GPT(config)
    opt = torch.optim.AdamW(model.parameters())
    path = save_checkpoint(tmp_path, 1, model, [opt], [{"epoch": 0}], [rng_state()], {"variant": "x"})
    _, weights = load_weights(path)
    again = GPT(config)
    again.load_state_dict(weights)
    assert again.lm_head.weight is again.wte.weight
    assert torch.equal(again.wte.weight, model.wte.weight)
