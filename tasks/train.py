"""The train stage's work, one per variant: launch `torchrun ... -m model.train` as a subprocess.

The subprocess's lines are streamed into the Prefect log (and the terminal); a non-zero exit
fails the task. A rerun after a kill resumes from the variant's last checkpoint, but only when
that checkpoint was written for the same settings and shards: `checkpoints/<variant>/RUN_KEY`
records them, and anything else starts the variant afresh.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any, Callable

from configs.fingerprint import code_version, config_fingerprint
from configs.schema import RunConfig, stage_section
from warehouse.run_folder import RUN_CONFIG

log = logging.getLogger(__name__)
STEP_LINE = re.compile(r"^step (\d+)/(\d+)\b")


def torchrun_command(run_dir: Path, variant: str, nproc: int, resume: bool) -> list[str]:
    """The command the train stage runs (also printed by `--dry-run`): torchrun for several
    processes; one process runs model.train directly (torchrun's launcher costs seconds)."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={nproc}", "-m", "model.train"] if nproc > 1
                else [sys.executable, "-m", "model.train"])
    cmd = [*launcher, "--config", str(Path(run_dir) / RUN_CONFIG),
           "--runs-dir", str(Path(run_dir).parent), "--variant", variant]
    return cmd + (["--resume"] if resume else [])


def checkpoint_key(cfg: RunConfig, run_dir: Path, variant: str) -> str:
    """What checkpoints depend on: the variant's train settings, the shards they were trained on
    and the training code (a checkpoint of other code is not resumed)."""
    shards = json.loads((Path(run_dir) / "shards" / "manifest.json").read_text())
    return config_fingerprint([stage_section(cfg, "train", variant), shards["cache_key"],
                               code_version(("model.train",))])


def prepare_checkpoints(run_dir: Path, variant: str, key: str) -> bool:
    """Keep checkpoints written under this key (resume); clear others. Returns `resume`."""
    folder = Path(run_dir) / "checkpoints" / variant
    marker = folder / "RUN_KEY"
    if folder.is_dir() and marker.is_file() and marker.read_text().strip() == key:
        return any(folder.glob("step_*"))
    if folder.exists():
        log.info("checkpoints of %s belong to other settings; starting afresh", variant)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    marker.write_text(key + "\n")
    return False


def run_streaming(cmd: list[str], on_line: Callable[[str], None], tail: int = 60) -> None:
    """Run `cmd`, passing each output line to `on_line`; on failure raise with the reason the
    command printed (its last "error: ..." line) first, then its last lines."""
    last: deque[str] = deque(maxlen=tail)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            last.append(line)
            on_line(line)
    if proc.returncode != 0:
        reason = next((line.removeprefix("error: ") for line in reversed(last)
                       if line.startswith("error: ")), None)
        first = (f"training failed: {reason} (exit status {proc.returncode})" if reason
                 else f"training exited with status {proc.returncode}")
        raise RuntimeError(f"{first}; last lines:\n" + "\n".join(last))


def _stage_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect import get_run_logger
        return get_run_logger()
    except Exception:  # outside a flow run
        return log


def train_variant(cfg: RunConfig, run_dir: Path, variant: str,
                  on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    resume = prepare_checkpoints(run_dir, variant, checkpoint_key(cfg, run_dir, variant))
    cmd = torchrun_command(run_dir, variant, cfg.train.nproc_per_node, resume)
    logger = _stage_logger()
    logger.info("%s: %s", "resuming" if resume else "starting", " ".join(cmd))

    def on_line(line: str) -> None:
        logger.info(line)
        m = STEP_LINE.match(line)
        if m and on_progress is not None:
            on_progress(int(m.group(1)), int(m.group(2)))

    run_streaming(cmd, on_line)
    steps = sorted((Path(run_dir) / "checkpoints" / variant).glob("step_*"))
    if not steps:
        raise RuntimeError(f"training of {variant} finished without writing a checkpoint")
    log_file = Path("train") / f"{variant}.jsonl"
    return {
        "outputs": [str(steps[-1].relative_to(run_dir)), str(log_file)],
        "rows": {"steps": cfg.train.steps, "checkpoint": steps[-1].name},
        "counters": {"resumed": int(resume)},
    }
