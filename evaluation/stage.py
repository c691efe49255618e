"""The evaluate stage: every trained variant on the val split, its ablations, and extraction.

`run_evaluate(cfg, run_dir)` evaluates each variant of `train.variants` unablated (ablation
"none") and with each `evaluate.ablations` entry that applies to it (model/variants.py says which:
`no_memory`, `shuffled`, or an extraction backend's memory), through
`model.evaluate.evaluate_variant` (the model code knows nothing of DuckDB). It writes each
variant's figures to `eval/<variant>.json`, scores every extractor against the oracle
(evaluation/extraction_quality.py), and records all of it as one evaluation in the warehouse
(`evaluations`, `metrics`, `extraction_scores`, in one transaction; evaluation/metrics.py says
what a row is). Earlier evaluations are kept: the tables are the run's history, and the newest
evaluation is the current one. An evaluation's id is a hash of the run config's fingerprint and
its figures, so a rerun that reproduces the same figures re-records that evaluation instead of
adding a copy (and a killed-and-rerun run holds the same rows as an uninterrupted one, recording
times aside). This stage is the three tables' only writer.

When the run trains `full`, each variant's unablated evaluation also carries its LongPPL on
the key tokens `full` chooses (model/key_tokens.py; the choice in `eval/key_tokens.json`).

An evaluation in `eval/<variant>.json` whose `evaluation_key` is still the current one (the same
checkpoint, ablation, evaluate settings and evaluation code) is reused, not run again: after
one variant is retrained only its evaluations run, and a sweep point that adopted a training
(flows/sweep.py) adopts its evaluations with it.

    python -m evaluation.stage --config configs/tiny.yaml --run runs/tiny
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from configs.fingerprint import code_version, config_fingerprint, file_content_hash
from configs.schema import RunConfig, stage_main
from evaluation.extraction_quality import extraction_quality, gap_rows, score_rows
from evaluation.metrics import Metrics, model_rows
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


METRIC_COLUMNS = ("variant", "ablation", "split", "metric", "bucket_lo", "bucket_hi", "value",
                  "ci_lo", "ci_hi", "n", "step")


def evaluation_settings(cfg: RunConfig) -> dict[str, Any]:
    """What a reader comparing two evaluations wants to see first (evaluations.settings)."""
    return {"tokenizer_vocab": cfg.tokenizer.vocab_size,
            "model": {k: getattr(cfg.model, k) for k in ("depth", "n_embd", "n_head",
                                                         "sequence_len", "memory_slots")},
            "steps": cfg.train.steps, "seed": cfg.train.seed, "variants": list(cfg.train.variants),
            "memory_source": cfg.train.memory_source, "ablations": list(cfg.evaluate.ablations),
            "max_windows": cfg.evaluate.max_windows, "source": cfg.ingest.source}


def write_evaluation(con, run_config_fingerprint: str, settings: dict[str, Any],
                     rows: list[dict[str, Any]], scores: list[dict[str, Any]]) -> str:
    """Record one evaluation (metrics `rows`, extraction `scores`) in one transaction; returns its
    id. The id is a hash of the config fingerprint and the figures, so recording the same
    evaluation again (a cached rerun of the stage) replaces its rows instead of adding copies,
    and makes it the current one again."""
    evaluation_id = config_fingerprint({"config": run_config_fingerprint, "rows": rows,
                                        "scores": scores})[:12]
    values = ", ".join(["?"] * (1 + len(METRIC_COLUMNS)))
    con.execute("BEGIN")
    try:
        con.execute("DELETE FROM metrics WHERE evaluation_id = ?", [evaluation_id])
        con.execute("DELETE FROM extraction_scores WHERE evaluation_id = ?", [evaluation_id])
        con.execute("DELETE FROM evaluations WHERE evaluation_id = ?", [evaluation_id])
        con.execute("INSERT INTO evaluations VALUES (?, ?, now(), ?)",
                    [evaluation_id, run_config_fingerprint, json.dumps(settings, sort_keys=True)])
        if rows:
            con.executemany(f"INSERT INTO metrics (evaluation_id, {', '.join(METRIC_COLUMNS)}) "
                            f"VALUES ({values})",
                            [(evaluation_id, *(r.get(c) for c in METRIC_COLUMNS)) for r in rows])
        if scores:
            con.executemany("INSERT INTO extraction_scores (evaluation_id, extractor, metric, "
                            "value, n) VALUES (?, ?, ?, ?, ?)",
                            [(evaluation_id, r["extractor"], r["metric"], r["value"], r.get("n"))
                             for r in scores])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return evaluation_id


def record_metrics(cfg: RunConfig, run_dir: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add the extraction figures (scores against the oracle, memory gaps) to the model `rows`
    and record them as one evaluation; returns its id and what was written."""
    con = connect(run_dir)
    try:
        quality = extraction_quality(con, cfg, run_dir)
        scores = score_rows(quality)
        rows = rows + gap_rows(cfg, Metrics(rows), quality, memory_variants(cfg))
        evaluation_id = write_evaluation(con, config_fingerprint(cfg.model_dump(mode="json")),
                                         evaluation_settings(cfg), rows, scores)
    finally:
        con.close()
    return {"evaluation_id": evaluation_id, "metrics": rows, "extraction_scores": scores}


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


KEY_TOKENS_FILE = "eval/key_tokens.json"
KEY_TOKEN_FIELDS = ("longppl", "key_")  # result fields with_key_tokens adds


def key_token_selection(cfg: RunConfig, run_dir: Path, code: str) -> dict[str, Any] | None:
    """The run's key tokens (model/key_tokens.py), reused from eval/key_tokens.json while the
    evaluator's checkpoint, the thresholds and the code are unchanged; None when the run trains
    no evaluator (`full`) or `evaluate.key_tokens.enabled` is off."""
    from model.key_tokens import EVALUATOR, find_key_tokens
    if not cfg.evaluate.key_tokens.enabled or EVALUATOR not in cfg.train.variants:
        return None
    key = config_fingerprint({"evaluator": evaluation_key(cfg, run_dir, EVALUATOR, "key_tokens", code),
                              "rule": cfg.evaluate.key_tokens.model_dump(mode="json")})
    path = Path(run_dir) / KEY_TOKENS_FILE
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier.get("selection_key") == key:
            return earlier
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    selection = {**find_key_tokens(cfg, run_dir), "selection_key": key}
    write_text_atomically(json.dumps(selection) + "\n", path)
    return selection


def with_key_tokens(cfg: RunConfig, run_dir: Path, variant: str, result: dict[str, Any],
                    selection: dict[str, Any] | None, code: str) -> tuple[dict[str, Any], bool]:
    """An unablated evaluation `result` with `variant`'s longppl on the `selection`'s key tokens
    added (kept from `result` while its key holds); (result, whether it was computed now)."""
    if selection is None:
        return {k: v for k, v in result.items() if not k.startswith(KEY_TOKEN_FIELDS)}, False
    key = config_fingerprint({"variant": evaluation_key(cfg, run_dir, variant, "longppl", code),
                              "selection": selection["selection_key"]})
    if result.get("key_tokens_key") == key:
        return result, False
    from model.key_tokens import score_key_tokens
    return {**result, **score_key_tokens(cfg, run_dir, variant, selection),
            "key_targets": selection["scored"], "key_recall_share": selection["recall_share"],
            "key_tokens_key": key}, True


def run_evaluate(cfg: RunConfig, run_dir: Path,
                 on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from model.evaluate import evaluate_variant  # torch: only when the stage runs
    run_dir = Path(run_dir)
    jobs = evaluation_jobs(cfg)
    code = code_version(("model.evaluate",))
    key_code = code_version(("model.key_tokens",))
    selection = key_token_selection(cfg, run_dir, key_code)
    earlier = {v: earlier_evaluations(run_dir, v) for v in cfg.train.variants}
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    reused = scored = 0
    for i, (variant, ablation) in enumerate(jobs):
        key = evaluation_key(cfg, run_dir, variant, ablation, code)
        result = earlier[variant].get(ablation)
        if result is not None and result.get("evaluation_key") == key:
            reused += 1
        else:
            result = {**evaluate_variant(cfg, run_dir, variant,
                                         memory=MEMORY_FOR_ABLATION.get(ablation, ablation)),
                      "evaluation_key": key}
        if ablation == "none":
            result, now = with_key_tokens(cfg, run_dir, variant, result, selection, key_code)
            scored += now
        results.setdefault(variant, {})[ablation] = result
        rows += model_rows(variant, ablation, result)
        if on_progress:
            on_progress(i + 1, len(jobs) + 1)
    outputs = []
    for variant, by_ablation in results.items():
        path = write_text_atomically(json.dumps(by_ablation, indent=2) + "\n",
                                     run_dir / "eval" / f"{variant}.json")
        outputs.append(str(path.relative_to(run_dir)))
    recorded = record_metrics(cfg, run_dir, rows)
    if on_progress:
        on_progress(len(jobs) + 1, len(jobs) + 1)
    extractors = {r["extractor"] for r in recorded["extraction_scores"]}
    if selection is not None:
        outputs.append(KEY_TOKENS_FILE)
    return {"outputs": outputs,
            "rows": {"metrics": len(recorded["metrics"]), "variant_evaluations": len(jobs),
                     "extractors_scored": len(extractors),
                     "key_tokens": selection["count"] if selection else 0},
            "counters": {"evaluations_reused": reused, "key_token_scorings": scored},
            "stats": {"evaluation_id": recorded["evaluation_id"]}}  # the manifest says which


def main() -> None:
    stage_main(__doc__, run_evaluate, (ValueError, FileNotFoundError))


if __name__ == "__main__":
    main()
