"""Evaluate stage task: every trained variant on the val split, plus the ablations of `triplet`.

`model.evaluate.evaluate_variant` computes the figures (the model code knows nothing of DuckDB);
this task writes them to `eval/<variant>.json` and to the warehouse `metrics` table as rows
(variant, ablation, split, metric, value, step). The unablated row of every variant has ablation
"none"; `triplet` adds one row set per configured ablation (`no_memory`, `shuffled`, or an
extractor name whose memory replaces the trained one).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from configs.schema import VARIANTS, RunConfig
from tasks.stage import stage_task
from warehouse.shards import write_text_atomically

SCALAR_METRICS = ("bpb", "recall_bpb", "recall_acc", "compression", "positions")
# evaluate.ablations names -> model.evaluate's --memory choices
MEMORY_FOR_ABLATION = {"none": "as_trained", "no_memory": "none", "shuffled": "shuffled",
                       "oracle": "oracle", "spacy": "spacy", "vllm": "vllm"}


def metric_rows(variant: str, ablation: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten one evaluation into metrics-table rows (per-distance recall buckets included)."""
    from warehouse.report import distance_buckets
    step = result.get("step")
    rows = [{"variant": variant, "ablation": ablation, "split": "val", "metric": m,
             "value": result[m], "step": step}
            for m in SCALAR_METRICS if result.get(m) is not None]
    for lo, hi, acc, n in distance_buckets(result.get("recall_acc_by_distance") or []):
        if n:
            rows.append({"variant": variant, "ablation": ablation, "split": "val",
                         "metric": f"recall_acc@{lo}-{hi}", "value": acc, "step": step})
    return rows


def run_evaluate(cfg: RunConfig, run_dir: Path,
                 on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from model.evaluate import evaluate_variant
    from warehouse.db import connect, insert_metrics

    jobs = [(v, "none") for v in cfg.train.variants]
    if "triplet" in cfg.train.variants:
        jobs += [("triplet", a) for a in cfg.evaluate.ablations]
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for i, (variant, ablation) in enumerate(jobs):
        result = evaluate_variant(cfg, run_dir, variant, memory=MEMORY_FOR_ABLATION[ablation])
        results.setdefault(variant, {})[ablation] = result
        rows += metric_rows(variant, ablation, result)
        if on_progress:
            on_progress(i + 1, len(jobs))
    outputs = []
    for variant, by_ablation in results.items():
        path = write_text_atomically(json.dumps(by_ablation, indent=2) + "\n",
                                     Path(run_dir) / "eval" / f"{variant}.json")
        outputs.append(str(path.relative_to(run_dir)))
    con = connect(run_dir)
    try:  # replace every model metric in one transaction: no duplicates, no rows of dropped variants
        con.execute("BEGIN")
        con.execute("DELETE FROM metrics WHERE variant IN (SELECT unnest(?))", [list(VARIANTS)])
        insert_metrics(con, rows)
        con.execute("COMMIT")
    finally:
        con.close()
    return {"outputs": outputs, "rows": {"metrics": len(rows), "evaluations": len(jobs)}}


evaluate = stage_task("evaluate", run_evaluate)
