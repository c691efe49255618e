"""Ingest stage task: corpus -> docs shards + documents table (corpora.ingest does the work)."""
from tasks.stage import stage_task


def _ingest(cfg, run_dir, on_progress):
    from corpora.ingest import run_ingest
    return run_ingest(cfg, run_dir, on_progress)


ingest = stage_task("ingest", _ingest)
