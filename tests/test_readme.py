"""The README's quick commands run as written: every code block marked `<!-- readme-test -->`
(or `<!-- readme-test: needs runs/tiny -->`, run once `make demo` has made runs/tiny), one
command a line, from the repository root, exit status 0. Blocks that start servers, train for
minutes or need the network are not marked."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
@pytest.mark.parametrize("argv, needs", COMMANDS, ids=[" ".join(a[2:])[:60] for a, _ in COMMANDS])
def test_readme_command_runs(argv, needs):
    if needs and not (REPO / needs / "config.yaml").is_file():
        pytest.skip(f"needs {needs} (make demo)")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, *argv[1:]], cwd=REPO,  # `python`: this interpreter env=env, capture_output=True, text=True,
                          timeout=COMMAND_SECONDS)
    assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
