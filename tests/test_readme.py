"""The README's quick commands run as written: every code block marked `<!-- readme-test -->`
(or `<!-- readme-test: needs runs/tiny -->`), one command a line, exit status 0. Plain blocks run
from the repository root. A block that needs runs/tiny runs in a folder holding a small run named
`tiny` (a real pipeline run of a few minutes' less: 40 documents, 10 steps) under runs/ and its
config as configs/tiny.yaml, with the repository on PYTHONPATH, so `make demo` need not have run.
Blocks that start servers, train for minutes or need the network are not marked."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- readme-test(?:: needs (?P<needs>\S+))? -->\n```\n(?P<body>.*?)\n```",
                    re.MULTILINE | re.DOTALL)
COMMAND_SECONDS = 300


def readme_commands(text: str) -> list[tuple[list[str], str | None]]:
    """(argv, the run folder it needs or None) of every command of the marked blocks (a line
    each, split as a shell would, comments cut)."""
    commands = []
    for block in MARKER.finditer(text):
        for line in block.group("body").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append((argv, block.group("needs")))
    return commands


COMMANDS = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))


def test_the_readme_marks_quick_commands():
    assert len(COMMANDS) >= 6
    assert all(argv[:2] == ["python", "-m"] for argv, _ in COMMANDS)


# configs/tiny.yaml in miniature: every variant and ablation the marked commands read
SMALL_TINY = {
    "name": "tiny",
    "ingest": {"source": "synthetic", "docs_per_shard": 20,
               "synthetic": {"num_docs": 40, "min_distance": 20, "max_distance": 40}},
    "tokenizer": {"vocab_size": 300},
    "extract": {"backends": ["oracle"]},
    "model": {"depth": 1, "n_embd": 32, "n_head": 2, "sequence_len": 32, "memory_slots": 8},
    "train": {"variants": ["window", "triplet", "full"], "steps": 10, "device_batch_size": 4,
              "checkpoint_every": 10},
    "evaluate": {"ablations": ["no_memory", "shuffled"], "max_windows": 16},
}
ENV = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "WANDB_MODE": "disabled",
       "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def small_tiny_folder(tmp_path_factory) -> Path:
    """A folder with configs/tiny.yaml (SMALL_TINY) and its finished run in runs/tiny."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "configs").mkdir()
    (folder / "configs" / "tiny.yaml").write_text(yaml.safe_dump(SMALL_TINY))
    done = subprocess.run([sys.executable, "-m", "flows.pipeline", "--config", "configs/tiny.yaml"],
                          cwd=folder, env={**ENV, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("argv, needs", COMMANDS, ids=[" ".join(a[2:])[:60] for a, _ in COMMANDS])
def test_readme_command_runs(argv, needs, request):
    cwd, env = REPO, ENV
    if needs:
        assert needs == "runs/tiny", f"a README block needs {needs}: give it a fixture here"
        cwd, env = request.getfixturevalue("small_tiny_folder"), {**ENV, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, *argv[1:]], cwd=cwd,  # `python`: this interpreter
                          env=env, capture_output=True, text=True, timeout=COMMAND_SECONDS)
    assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
