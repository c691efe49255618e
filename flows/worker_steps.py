"""Prefect pull steps (prefect.yaml `pull:`): what a worker does before each flow run it starts.

A worker runs flows from a checkout of this repository, named by the `TCC_REPO` variable of the
worker's environment (`TCC_REPO=$PWD prefect worker start --pool cpu`): the flow's configs and
its `runs/` folder are relative to it. Prefect's own `set_working_directory` step would turn an
unset variable into a bare "No such file or directory: ''"; this step names the variable.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_VARIABLE = "TCC_REPO"
CHECKOUT_MARKER = "prefect.yaml"  # a folder holding it is a checkout of this repository


def enter_checkout() -> dict[str, str]:
    """Change into the checkout `TCC_REPO` names; returns it as Prefect's `directory` output.
    Without the variable, or when it names no checkout, the flow run fails with one line that
    says how to start the worker."""
    repo = os.environ.get(REPO_VARIABLE, "").strip()
    start = f"start the worker as `{REPO_VARIABLE}=/path/to/checkout prefect worker start --pool cpu`"
    if not repo:
        raise RuntimeError(f"{REPO_VARIABLE} is not set in the worker's environment: {start}")
    if not (Path(repo) / CHECKOUT_MARKER).is_file():
        raise RuntimeError(f"{REPO_VARIABLE}={repo} is not a checkout of this repository "
                           f"(no {CHECKOUT_MARKER} there): {start}")
    os.chdir(repo)
    return {"directory": str(Path(repo).resolve())}
