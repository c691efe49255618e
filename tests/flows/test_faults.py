"""Fault injection through the real CLI on a small run: kill -9 during every stage then rerun,
two runs at once, a cut-off output shard, the canonical-ids scenario, SIGTERM and SIGINT, and
no process outliving the CLI. Every table's and shard's content is compared with an
uninterrupted run (RELIABILITY.md lists the matrix)."""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.process_group import carrying

REPO = Path(__file__).resolve().parents[2]
SMALL = {
    "name": "faults",
    "ingest": {"source": "synthetic", "docs_per_shard": 20,
               "synthetic": {"num_docs": 40, "min_distance": 20, "max_distance": 40}},
    "tokenizer": {"vocab_size": 300},
    "extract": {"backends": ["oracle", "spacy"], "workers": 2},  # shards over 2 processes
    "model": {"depth": 1, "n_embd": 32, "n_head": 2, "sequence_len": 32, "memory_slots": 8},
    "train": {"variants": ["window", "triplet"], "steps": 30, "device_batch_size": 4,
              "checkpoint_every": 10},
    "evaluate": {"ablations": ["no_memory", "spacy"], "max_windows": 32},
}
STAGES = ["ingest", "tokenizer", "extract", "canonicalize", "shards", "train-window",
          "train-triplet", "evaluate", "report"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


@pytest.fixture
def content(content_of):
    """Content fingerprint of every shard and table (tests/conftest.py run_content), evaluation,
    training log and final checkpoint file of a run."""
    return lambda run: {**content_of(run), **_run_files(run)}


def _run_files(run: Path) -> dict[str, str]:
    out = {}
    files = sorted((run / "eval").glob("*.json"))
    files += sorted(p for p in (run / "train").glob("*.jsonl") if not p.name.endswith(".speed.jsonl"))
    for variant in SMALL["train"]["variants"]:
        files += sorted((run / "checkpoints" / variant / "step_000030").iterdir())
    for path in files:
        out[path.relative_to(run).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _cli_args(config: Path, runs: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flows.pipeline", "--config", str(config), "--runs-dir",
            str(runs), *extra]


def run_cli(config: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cli_args(config, runs, *extra), cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _sigint_as_in_a_terminal() -> None:
    # a test run started in the background (`nohup make test &`) inherits SIGINT ignored, as shells
    # do for background jobs, and Python then never raises KeyboardInterrupt: give the CLI the
    # disposition a terminal's Ctrl-C meets
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(config: Path, runs: Path, log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(_cli_args(config, runs), cwd=REPO, env=ENV, stdout=handle,
                            stderr=subprocess.STDOUT, preexec_fn=_sigint_as_in_a_terminal)


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text(errors="replace")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the CLI ended before {pattern!r}:\n" + log.read_text()[-3000:])
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} within {timeout} s:\n" + log.read_text()[-3000:])


def token_of(cli: subprocess.Popen, timeout: float = 60) -> str:
    """The CLI's process token, read off its reaper's command line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            try:
                args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"flows.process_group" in args and args[-2:-1] == [str(cli.pid).encode()]:
                return args[-3].decode()
        time.sleep(0.05)
    raise AssertionError("no reaper for the CLI")


def assert_nothing_left(token: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while carrying(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = carrying(token)
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in left]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "faults.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


@pytest.fixture(scope="module")
def uninterrupted(config, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("uninterrupted")
    run_cli(config, runs)
    return runs / "faults"


@pytest.mark.slow
def test_kill_9_during_every_stage_then_rerun_gives_the_same_run(config, uninterrupted, tmp_path,
                                                              content):
    runs, log = tmp_path / "runs", tmp_path / "cli.log"
    landed = []
    for stage in STAGES:
        cli = start_cli(config, runs, log)
        token = token_of(cli)
        # a stage's progress bar opens when it starts; training: once a few steps are logged
        wait_for(log, rf"Task run '{stage}-\w+' - step 4/30" if stage.startswith("train")
                 else rf"(^|\r|\n){stage}: ", cli)
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        assert_nothing_left(token)  # the API server, torchrun and its ranks went with it
        manifest = runs / "faults" / stage.replace("train-", "train/") / "manifest.json"
        landed.append((stage, not manifest.is_file()))
        assert (runs / "faults" / ".lock").read_text()  # the killed run's lock file is left
    log.write_text("")
    final = start_cli(config, runs, log)
    assert final.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert "taking over the lock" in log.read_text()
    assert content(runs / "faults") == content(uninterrupted)
    mid_stage = [stage for stage, inside in landed if inside]
    print(f"kills that landed inside their stage: {len(mid_stage)} of {len(landed)}: {mid_stage}")
    assert len(mid_stage) >= 6, landed  # most kills land inside their stage (fast ones may not)


def test_two_runs_at_once_the_second_fails_naming_the_first(config, tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "first.log"
    first = start_cli(config, runs, log)
    try:
        wait_for(log, r"(^|\r|\n)ingest: ", first)
        second = subprocess.run(_cli_args(config, runs), cwd=REPO, env=ENV, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1
        assert second.stderr.strip().count("\n") == 0
        assert re.fullmatch(rf"error: {re.escape(str(runs / 'faults'))} is in use by another run: "
                            rf"PID {first.pid} on {re.escape(socket.gethostname())} \(python -m "
                            r"flows.pipeline .*\); wait for it to finish or stop it",
                            second.stderr.strip()), second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) != 0


def test_a_cut_off_output_shard_is_rebuilt(config, uninterrupted, tmp_path, content):
    run = tmp_path / "runs" / "faults"
    shutil.copytree(uninterrupted, run)
    path = run / "triplets" / "shard_00001.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    plan = run_cli(config, run.parent, "--dry-run").stdout
    assert re.search(r"^extract\s+will run", plan, re.M) and re.search(r"^ingest\s+cached", plan, re.M)
    rerun = run_cli(config, run.parent).stdout
    assert re.search(r"^extract\s+ran", rerun, re.M)
    assert content(run) == content(uninterrupted)


def test_rerunning_extract_keeps_canonical_ids_and_memory(config, uninterrupted, tmp_path, content):
    run = tmp_path / "runs" / "faults"
    shutil.copytree(uninterrupted, run)
    for _ in range(2):
        run_cli(config, run.parent, "--stages", "extract,canonicalize", "--force", "extract")
    run_cli(config, run.parent, "--stages", "shards", "--force", "shards")
    got, want = content(run), content(uninterrupted)
    for key in want:
        if key.startswith(("memory/", "tokens/", "triplets/", "table:")):
            assert got[key] == want[key], key


@pytest.mark.parametrize("sig, during", [
    (signal.SIGTERM, r"Task run 'train-window-\w+' - step 2/30"),
    (signal.SIGINT, r"Task run 'train-window-\w+' - step 2/30"),
    # the extract workers' pool: once held the CLI's exit forever (a Manager process outlived it)
    (signal.SIGTERM, r"(^|\r|\n)extract: "),
])
def test_sigterm_and_sigint_end_the_cli_and_everything_it_started(config, tmp_path, sig, during):
    runs, log = tmp_path / "runs", tmp_path / "cli.log"
    cli = start_cli(config, runs, log)
    token = token_of(cli)
    wait_for(log, during, cli)
    cli.send_signal(sig)
    assert cli.wait(timeout=60) != 0
    assert_nothing_left(token)


def test_a_diverging_run_ends_the_pipeline_on_the_reason(tmp_path):
    config = tmp_path / "nan.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "name": "nan", "train": {
        **SMALL["train"], "variants": ["window"], "matrix_lr": 1e30, "embedding_lr": 1e30,
        "warmup_steps": 0}}))
    proc = subprocess.run(_cli_args(config, tmp_path / "runs"), cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: pipeline failed: RuntimeError: training failed: variant window: "
                        r"the loss is (nan|inf) at step \d+; lower train.matrix_lr / "
                        r"train.embedding_lr or check the shards \(exit status 1\); last lines:",
                        last), last
