"""Shards stage task: parallel tokens + memory shards (warehouse.training_shards does the work)."""
from tasks.stage import stage_task


def _shards(cfg, run_dir, on_progress):
    from warehouse.training_shards import run_shards
    return run_shards(cfg, run_dir, on_progress)


shards = stage_task("shards", _shards)
