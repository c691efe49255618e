"""The pull step of every deployment: a worker enters the checkout TCC_REPO names, or fails the
run with one line naming TCC_REPO."""
import os
from pathlib import Path

import pytest
import yaml
from prefect.deployments.steps.core import _get_function_for_step

from flows.worker_steps import enter_checkout

REPO = Path(__file__).resolve().parents[2]


def _pull_steps() -> list[dict]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())["pull"]


def test_prefect_yaml_pulls_through_enter_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("TCC_REPO", str(REPO))
    monkeypatch.chdir(tmp_path)
    (step,) = _pull_steps()
    ((name, inputs),) = step.items()
    # found the way a worker's flow run finds it (run_step itself would start a Prefect server)
    outputs = _get_function_for_step(name)(**inputs)
    assert outputs["directory"] == str(REPO) and Path.cwd() == REPO


@pytest.mark.parametrize("value, message", [
    (None, "TCC_REPO is not set in the worker's environment"),
    ("", "TCC_REPO is not set in the worker's environment"),
    ("{tmp}", "TCC_REPO={tmp} is not a checkout of this repository (no prefect.yaml there)"),
])
def test_a_worker_without_tcc_repo_fails_naming_it(monkeypatch, tmp_path, value, message):
    if value is None:
        monkeypatch.delenv("TCC_REPO", raising=False)
    else:
        monkeypatch.setenv("TCC_REPO", value.format(tmp=tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError) as err:
        enter_checkout()
    text = str(err.value)
    assert text.startswith(message.format(tmp=tmp_path)) and "\n" not in text
    assert "TCC_REPO=/path/to/checkout prefect worker start --pool cpu" in text
    assert Path(os.getcwd()) == tmp_path
