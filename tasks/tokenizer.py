"""Tokenizer stage task: byte-level BPE on the train split (model.tokenizer does the work)."""
from tasks.stage import stage_task


def _tokenizer(cfg, run_dir, on_progress):
    from model.tokenizer import run_tokenizer
    return run_tokenizer(cfg, run_dir, on_progress)


tokenizer = stage_task("tokenizer", _tokenizer)
