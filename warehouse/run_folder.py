"""Which run folder an inspection CLI reads when it is not told (commands run from the repository).

    run_dir, rule = resolve_run(args.run, cfg, Path(args.runs_dir))
    run_dir = find_run(args.run, None, Path("runs"))  # printed on stderr
    run_dir, cfg = run_and_config(args.run, args.config, Path(args.runs_dir))  # + its config

The rules, first that applies: `--run` as given; with `--config`, `<runs-dir>/<the config's
name>`; else the only run folder under `<runs-dir>` (default `runs`), or the newest one (its
`config.yaml` written last) when there are several. A run folder is a folder holding the
`config.yaml` the pipeline writes. `find_run` prints the folder it found and the rule on stderr,
so output on stdout stays what the command computes.
"""
from __future__ import annotations

import sys
from pathlib import Path

from configs.schema import RunConfig, load_config_or_exit

RUN_CONFIG = "config.yaml"  # the resolved config the pipeline writes into every run folder


def run_folders(runs_dir: Path) -> list[Path]:
    """The run folders directly under `runs_dir`, oldest config.yaml first."""
    if not Path(runs_dir).is_dir():
        return []
    found = [p for p in Path(runs_dir).iterdir() if (p / RUN_CONFIG).is_file()]
    return sorted(found, key=lambda p: (p / RUN_CONFIG).stat().st_mtime)


def resolve_run(run: Path | None, cfg: RunConfig | None, runs_dir: Path) -> tuple[Path, str]:
    """(run folder, the rule that chose it) for `--run`, the `--config` given (None: none) and
    `--runs-dir`; FileNotFoundError when no rule finds one."""
    if run is not None:
        return Path(run), "--run"
    if cfg is not None:
        return Path(runs_dir) / cfg.name, f"{runs_dir}/<name> of --config"
    folders = run_folders(runs_dir)
    if not folders:
        raise FileNotFoundError(f"no run folder (a folder with {RUN_CONFIG}) under {runs_dir}/: "
                                "pass --run or --config, or run the pipeline first")
    if len(folders) == 1:
        return folders[0], f"the only run folder under {runs_dir}/"
    return folders[-1], f"the newest of {len(folders)} run folders under {runs_dir}/ (--run to pick)"


def find_run(run: Path | None, cfg: RunConfig | None, runs_dir: Path) -> Path:
    """For CLIs: `resolve_run`'s folder, printed with its rule on stderr unless `run` named it,
    or a one-line exit."""
    try:
        run_dir, rule = resolve_run(run, cfg, runs_dir)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    if run is None:
        print(f"run: {run_dir} ({rule})", file=sys.stderr)
    return run_dir


def run_and_config(run: Path | None, config: str | None, runs_dir: Path) -> tuple[Path, RunConfig]:
    """The run folder (`find_run`) and its config: `config` when given, else the run folder's
    own config.yaml."""
    cfg = load_config_or_exit(config) if config is not None else None
    run_dir = find_run(run, cfg, runs_dir)
    if cfg is not None:
        return run_dir, cfg
    if not (run_dir / RUN_CONFIG).is_file():
        raise SystemExit(f"error: {run_dir / RUN_CONFIG}: no such file (is {run_dir} a run folder?)")
    return run_dir, load_config_or_exit(run_dir / RUN_CONFIG)
