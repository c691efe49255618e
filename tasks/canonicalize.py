"""Canonicalize stage task: entity/relation ids and aliases (extraction.canonicalize does the work)."""
from tasks.stage import stage_task


def _canonicalize(cfg, run_dir, on_progress):
    from extraction.canonicalize import run_canonicalize
    return run_canonicalize(cfg, run_dir, on_progress)


canonicalize = stage_task("canonicalize", _canonicalize)
