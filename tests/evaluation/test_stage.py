"""The evaluate stage's per-evaluation key: what an evaluation's figures depend on."""
import os

import torch

from configs.schema import parse_config
from evaluation.stage import evaluation_key
from model.checkpoint import save_checkpoint


def test_evaluation_key_follows_the_weights_content_not_their_modification_time(tmp_path):
    cfg = parse_config({"name": "k"})
    model = torch.nn.Linear(2, 2)
    folder = tmp_path / "checkpoints" / "triplet"
    path = save_checkpoint(folder, 10, model, [], [], [], {"variant": "triplet"})
    key = evaluation_key(cfg, tmp_path, "triplet", "none", "code")
    os.utime(path / "model.safetensors", ns=(1, 1))  # a resumed training rewrote the same bytes
    assert evaluation_key(cfg, tmp_path, "triplet", "none", "code") == key
    assert evaluation_key(cfg, tmp_path, "triplet", "shuffled", "code") != key
    with torch.no_grad():
        model.weight.add_(1.0)
    save_checkpoint(folder, 10, model, [], [], [], {"variant": "triplet"})  # retrained
    assert evaluation_key(cfg, tmp_path, "triplet", "none", "code") != key
