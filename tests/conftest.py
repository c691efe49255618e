"""Shared test setup: offline, quiet, and one Prefect test harness per session."""
import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

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
