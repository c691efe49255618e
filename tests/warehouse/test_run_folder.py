"""The run folder an inspection CLI reads when not told: --run, runs/<name> of --config, the only
or the newest run folder."""
import os
from pathlib import Path

import pytest

from warehouse.run_folder import resolve_run, run_and_config

CONFIG = "name: {name}\n"


def _run(runs: Path, name: str, mtime: float) -> Path:
    folder = runs / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(CONFIG.format(name=name))
    os.utime(folder / "config.yaml", (mtime, mtime))
    return folder


def test_the_rules_in_order(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(FileNotFoundError, match="no run folder"):
        resolve_run(None, None, runs)
    older = _run(runs, "older", 1_000)
    (runs / "not-a-run").mkdir()  # no config.yaml: never picked
    assert resolve_run(None, None, runs) == (older, f"the only run folder under {runs}/")
    newer = _run(runs, "newer", 2_000)
    folder, rule = resolve_run(None, None, runs)
    assert folder == newer and rule.startswith("the newest of 2 run folders")
    assert resolve_run(older, None, runs) == (older, "--run")


def test_run_and_config_reads_the_run_folders_config_and_says_which_rule(tmp_path, capsys):
    runs = tmp_path / "runs"
    _run(runs, "older", 1_000)
    newer = _run(runs, "newer", 2_000)
    folder, cfg = run_and_config(None, None, runs)
    assert folder == newer and cfg.name == "newer"
    assert capsys.readouterr().err.startswith(f"run: {newer} (the newest of 2")
    config = tmp_path / "other.yaml"
    config.write_text(CONFIG.format(name="older"))
    folder, cfg = run_and_config(None, str(config), runs)
    assert folder == runs / "older" and cfg.name == "older"
    assert f"({runs}/<name> of --config)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no run folder"):
        run_and_config(None, None, tmp_path / "empty")
