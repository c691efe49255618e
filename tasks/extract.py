"""Extract stage task: triplets shards per docs shard (extraction.stage does the work)."""
from tasks.stage import stage_task


def _extract(cfg, run_dir, on_progress):
    from extraction.stage import run_extract
    return run_extract(cfg, run_dir, on_progress)


extract = stage_task("extract", _extract)
