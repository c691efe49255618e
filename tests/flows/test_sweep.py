"""A sweep through the real flows: upstream stages run once and are shared, a training that a
point does not change is adopted from another point, and a second sweep is cached throughout."""
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from configs.sweep import point_run_dir
from warehouse.db import connect
from warehouse.sql import run_query

REPO = Path(__file__).resolve().parents[2]
SMALL = {
    "name": "small",
    "ingest": {"source": "synthetic", "docs_per_shard": 30,
               "synthetic": {"num_docs": 60, "min_distance": 40, "max_distance": 80}},
    "tokenizer": {"vocab_size": 320},
    "extract": {"backends": ["oracle"]},
    "model": {"depth": 1, "n_embd": 32, "n_head": 2, "sequence_len": 32, "memory_slots": 8,
              "attn_backend": "sdpa"},
    "train": {"variants": ["window", "triplet"], "steps": 2, "device_batch_size": 4,
              "checkpoint_every": 2},
    "evaluate": {"ablations": ["no_memory"], "max_windows": 32},
}
UPSTREAM = ("ingest", "tokenizer", "extract", "canonicalize", "shards")


def inode(path: Path) -> int:
    return os.stat(path).st_ino


def stage_runs(run_dir: Path) -> dict[str, int]:
    con = connect(run_dir, read_only=True)
    try:
        return dict(con.execute("SELECT stage, count(*) FROM stage_runs GROUP BY 1").fetchall())
    finally:
        con.close()


def test_a_sweep_over_training_settings_extracts_once(tmp_path, prefect_harness):
    from flows.sweep import sweep
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    runs = tmp_path / "runs"
    statuses = sweep(config=str(config), runs_dir=str(runs), sets=["model.memory_slots=4,8"])
    assert statuses == {"memory_slots-4": "ran", "base": "ran"}

    sweep_dir = runs / "small-sweep"
    (upstream,) = (sweep_dir / "upstream").iterdir()
    assert stage_runs(upstream) == {name: 1 for name in UPSTREAM}  # one upstream run for both
    four, eight = point_run_dir(sweep_dir, "memory_slots-4"), point_run_dir(sweep_dir, "base")
    for name in ("docs/shard_00000.parquet", "triplets/shard_00000.parquet",
                 "memory/shard_00001.parquet", "tokenizer/tokenizer.json"):
        assert inode(four / name) == inode(eight / name) == inode(upstream / name), name
    for stage in UPSTREAM:
        assert (four / stage / "manifest.json").read_text() == \
            (upstream / stage / "manifest.json").read_text()
    # window does not read M: trained once, the second point has the first's checkpoint
    window = "checkpoints/window/step_000002/model.safetensors"
    triplet = "checkpoints/triplet/step_000002/model.safetensors"
    assert inode(four / window) == inode(eight / window)
    assert inode(four / triplet) != inode(eight / triplet)
    trained = {p.name: stage_runs(p).get("train-window", 0) for p in (four, eight)}
    assert trained == {"memory_slots-4": 1, "base": 0}
    evaluate = json.loads((eight / "evaluate" / "manifest.json").read_text())
    assert evaluate["counters"] == {"evaluations_reused": 1, "key_token_scorings": 0}  # window's, with its checkpoint

    _, rows = run_query(sweep_dir, "SELECT DISTINCT x FROM sweep_metrics WHERE variant = 'triplet' "
                        "AND metric = 'recall_bpb' ORDER BY x_value")
    assert rows == [("4",), ("8",)]
    assert (sweep_dir / "report" / "sweep.md").is_file() and (sweep_dir / "report" / "cli.png").is_file()

    again = sweep(config=str(config), runs_dir=str(runs), sets=["model.memory_slots=4,8"])
    assert again == {"memory_slots-4": "cached", "base": "cached"}
    assert stage_runs(upstream) == {name: 1 for name in UPSTREAM}


def test_planned_trainings_tell_variants_with_equal_settings_apart():
    from configs.sweep import sweep_plan
    from flows.sweep import planned_trainings
    data = {**SMALL, "train": {**SMALL["train"], "variants": ["window", "triplet", "sentences"]}}
    rows = planned_trainings(sweep_plan(data, "small.yaml", ["model.memory_slots=4,8"]))
    assert [(r["trains"], r["adopts"]) for r in rows] == [
        ("window, triplet, sentences", "-"), ("triplet, sentences", "window (memory_slots-4)")]


def test_dry_run_prints_the_plan_and_what_is_adopted(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    proc = subprocess.run([sys.executable, "-m", "flows.sweep", "--config", str(config),
                           "--runs-dir", str(tmp_path / "runs"), "--set", "model.memory_slots=4,8",
                           "--set", "train.seed=1337,1", "--dry-run"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "4 points, 1 upstream run(s), 6 trainings, 2 adopted from an earlier point" in proc.stdout
    assert "window (memory_slots-4)" in proc.stdout
    assert not (tmp_path / "runs").exists()
    bad = subprocess.run([sys.executable, "-m", "flows.sweep", "--config", str(config),
                          "--set", "train.matrx_lr=0.1", "--dry-run"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "train.matrx_lr: unknown key" in bad.stderr
