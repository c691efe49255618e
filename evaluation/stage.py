"""The evaluate stage: every trained variant on the val split, its ablations, and extraction.

`run_evaluate(cfg, run_dir)` evaluates each variant of `train.variants` unablated (ablation
"none") and with each `evaluate.ablations` entry that applies to it (model/variants.py says which:
`no_memory`, `shuffled`, or an extraction backend's memory), through
`model.evaluate.evaluate_variant` (the model code knows nothing of DuckDB). It writes each
variant's figures to `eval/<variant>.json`, scores every extractor against the oracle
(evaluation/extraction_quality.py), and replaces the warehouse `metrics` table with all of it in
one transaction (evaluation/metrics.py says what a row is). This stage is the table's only writer.

An evaluation in `eval/<variant>.json` whose `evaluation_key` is still the current one (the same
checkpoint, ablation, evaluate settings and evaluation code) is reused, not run again: after
one variant is retrained only its evaluations run, and a sweep point that adopted a training
(flows/sweep.py) adopts its evaluations with it.

    python -m evaluation.stage --config configs/tiny.yaml --run runs/tiny
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable

from configs.fingerprint import code_version, config_fingerprint, file_content_hash
from configs.schema import RunConfig, stage_main
from evaluation.extraction_quality import extraction_quality, extraction_rows
from evaluation.metrics import EXTRACTION_ABLATION, Metrics, model_rows
from extraction.registry import BACKENDS
from model.variants import variant_of
from warehouse.db import connect
from warehouse.shard_io import write_text_atomically

# evaluate.ablations names -> model.evaluate's --memory choices (a backend name is itself)
MEMORY_FOR_ABLATION = {"none": "as_trained", "no_memory": "none", "shuffled": "shuffled"}


def evaluation_jobs(cfg: RunConfig) -> list[tuple[str, str]]:
    """(variant, ablation) of every evaluation this run makes, in order."""
    backends = set(BACKENDS)
    return [(v, a) for v in cfg.train.variants
            for a in ("none", *(a for a in cfg.evaluate.ablations
                                if variant_of(v).applies(a, backends)))]


def memory_variants(cfg: RunConfig) -> list[str]:
    """The run's variants whose memory comes from an extractor (they have a memory gap)."""
    return [v for v in cfg.train.variants if "memory_source" in variant_of(v).ablations]


def insert_metrics(con, rows: Iterable[dict[str, Any]]) -> int:
    """Append metric rows (variant, ablation, split, metric, value, step)."""
    rows = [(r["variant"], r["ablation"], r["split"], r["metric"], float(r["value"]), r.get("step"))
            for r in rows]
    if rows:
        con.executemany("INSERT INTO metrics (variant, ablation, split, metric, value, step) "
                        "VALUES (?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def record_metrics(cfg: RunConfig, run_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the extraction rows (scores against the oracle, memory gaps) to the model `rows` and
    replace the `metrics` table with them in one transaction; returns every row written."""
    model_metrics = Metrics([(r["variant"], r["ablation"], r["split"], r["metric"], r["value"])
                             for r in rows])
    con = connect(run_dir)
    try:
        quality = extraction_quality(con, cfg, run_dir)
        rows = rows + extraction_rows(cfg, model_metrics, quality, memory_variants(cfg))
        con.execute("BEGIN")
        con.execute("DELETE FROM metrics")
        insert_metrics(con, rows)
        con.execute("COMMIT")
    finally:
        con.close()
    return rows


def evaluation_key(cfg: RunConfig, run_dir: Path, variant: str, ablation: str, code: str) -> str:
    """What one evaluation's figures depend on: the checkpoint it reads (its meta, and its weights
    file's content: a resumed training that writes the same weights evaluates the same), the
    ablation, the evaluate settings that change figures, and the evaluation code (`code`)."""
    from model.evaluate import find_checkpoint
    path = find_checkpoint(run_dir, variant, None)
    weights = path / "model.safetensors"
    stat = weights.stat()
    return config_fingerprint({
        "meta": (path / "meta.json").read_text(encoding="utf-8"),
        "weights": file_content_hash(weights, stat.st_size, stat.st_mtime_ns), "ablation": ablation,
        "evaluate": {"max_windows": cfg.evaluate.max_windows, "batch_size": cfg.evaluate.batch_size},
        "code": code})


def earlier_evaluations(run_dir: Path, variant: str) -> dict[str, dict[str, Any]]:
    """eval/<variant>.json of an earlier run of the stage (empty when there is none)."""
    path = Path(run_dir) / "eval" / f"{variant}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def run_evaluate(cfg: RunConfig, run_dir: Path,
                 on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from model.evaluate import evaluate_variant  # torch: only when the stage runs
    run_dir = Path(run_dir)
    jobs = evaluation_jobs(cfg)
    code = code_version(("model.evaluate",))
    earlier = {v: earlier_evaluations(run_dir, v) for v in cfg.train.variants}
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    reused = 0
    for i, (variant, ablation) in enumerate(jobs):
        key = evaluation_key(cfg, run_dir, variant, ablation, code)
        result = earlier[variant].get(ablation)
        if result is not None and result.get("evaluation_key") == key:
            reused += 1
        else:
            result = {**evaluate_variant(cfg, run_dir, variant,
                                         memory=MEMORY_FOR_ABLATION.get(ablation, ablation)),
                      "evaluation_key": key}
        results.setdefault(variant, {})[ablation] = result
        rows += model_rows(variant, ablation, result)
        if on_progress:
            on_progress(i + 1, len(jobs) + 1)
    outputs = []
    for variant, by_ablation in results.items():
        path = write_text_atomically(json.dumps(by_ablation, indent=2) + "\n",
                                     run_dir / "eval" / f"{variant}.json")
        outputs.append(str(path.relative_to(run_dir)))
    written = record_metrics(cfg, run_dir, rows)
    if on_progress:
        on_progress(len(jobs) + 1, len(jobs) + 1)
    extractors = {r["variant"] for r in written if r["ablation"] == EXTRACTION_ABLATION}
    return {"outputs": outputs,
            "rows": {"metrics": len(written), "evaluations": len(jobs),
                     "extractors_scored": len(extractors)},
            "counters": {"evaluations_reused": reused}}


def main() -> None:
    stage_main(__doc__, run_evaluate, (ValueError, FileNotFoundError))


if __name__ == "__main__":
    main()
