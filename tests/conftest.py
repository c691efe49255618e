"""Shared test setup: offline, quiet, one Prefect test harness per session, and the toy run.

The toy run (model and research tests): a run folder (tokenizer, tokens + memory shards, config)
built in tmp. The toy task is research/toy_lookup.py's: each document states `facts` facts "K R V ." (one oracle
memory row each, and a wrong spacy row), runs through 20 predictable filler tokens, and recalls
every fact (the first recall's value is token 27: window 2 of T=16). K is one of 10 keys and V
one of 32 values, drawn at random, so at the recall V can be predicted only from the memory slot
(or from raw context that reaches back to the statement: only the `full` variant's).
"""
import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import yaml

from research.toy_lookup import ToyTask, write_toy_shards, write_toy_tokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
# The full benchmark files (`python -m corpora.fetch redocred|conll04` writes them to data/;
# TCC_BENCHMARK_DATA names another folder). Every test runs on tests/fixtures/; the ones marked
# `benchmark_data` add checks on the full files and skip without them.
BENCHMARK_DATA = Path(os.environ.get("TCC_BENCHMARK_DATA") or REPO_ROOT / "data")


@pytest.fixture(scope="session")
def prefect_harness():
    """A throwaway Prefect API for flow tests (about 10 s once per session)."""
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def benchmark_file():
    """`benchmark_file("redocred_dev.json")`: the full file's path, or the test is skipped."""
    def find(name: str) -> Path:
        path = BENCHMARK_DATA / name
        if not path.is_file():
            pytest.skip(f"{path} absent (python -m corpora.fetch redocred|conll04 writes data/; "
                        "TCC_BENCHMARK_DATA=<folder> points elsewhere)")
        return path
    return find


# ---------------------------------------------------------------- the toy run


def toy_config(model: dict | None = None, **train) -> dict:
    return {
        "name": "toy",
        "model": {"depth": 2, "n_embd": 64, "n_head": 2, "sequence_len": 16, "memory_slots": 4,
                  "attn_backend": "sdpa", **(model or {})},
        "train": {"steps": 8, "device_batch_size": 8, "checkpoint_every": 4, "warmup_steps": 2,
                  "matrix_lr": 0.02, "embedding_lr": 0.01, "full_context_cap": 48, **train},
        "evaluate": {"batch_size": 16},
    }


def build_toy_run(root: Path, num_docs: int = 60, facts: int = 1, model: dict | None = None,
                  **train) -> tuple[Path, Path]:
    """Write root/runs/toy (tokenizer, shards) and root/toy.yaml; returns (config, runs dir)."""
    runs = root / "runs"
    write_toy_tokenizer(runs / "toy")
    write_toy_shards(runs / "toy", ToyTask(facts=facts, keys=10), num_docs)
    config = root / "toy.yaml"
    config.write_text(yaml.safe_dump(toy_config(model, **train)))
    return config, runs


def train_toy_variants(config: Path, runs: Path, variants: tuple[str, ...]) -> None:
    """Train each variant in-process with one torch thread (tiny matrices: more threads only
    contend on a shared machine)."""
    import torch
    from model.train import main as train_main
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for variant in variants:
            train_main(["--config", str(config), "--runs-dir", str(runs), "--variant", variant])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_run_builder():
    """`build_toy_run` itself, for fixtures of wider scope."""
    return build_toy_run


@pytest.fixture(scope="session")
def toy_trainer():
    """`train_toy_variants` itself."""
    return train_toy_variants


@pytest.fixture
def toy_run(tmp_path):
    """A function(num_docs, facts, model, **train) -> (config path, runs dir) in tmp_path."""
    return lambda num_docs=60, **kwargs: build_toy_run(tmp_path, num_docs, **kwargs)


# ---------------------------------------------------------------- what a run holds

@pytest.fixture(scope="session")
def content_of():
    """`run_content`, for tests that compare what two runs hold."""
    return run_content


def run_content(run_dir: Path) -> dict[str, str]:
    """Content fingerprint of every shard and warehouse table of a run (stage_runs, a history,
    aside): two runs that hold the same data compare equal."""
    import hashlib
    from warehouse.contracts import SHARD_KINDS, TABLE_WRITERS
    from warehouse.db import connect, table_fingerprint
    from warehouse.shard_io import list_shards
    out = {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for kind in SHARD_KINDS for p in list_shards(run_dir, kind)}
    con = connect(run_dir, read_only=True)
    try:
        for table in TABLE_WRITERS:
            if table != "stage_runs":
                out[f"table:{table}"] = str(table_fingerprint(con, table))
    finally:
        con.close()
    return out
