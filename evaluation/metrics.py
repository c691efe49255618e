"""The evaluate stage's tables: what a row is, and reading the current evaluation back.

Every run of the evaluate stage that produces new figures is one *evaluation*: a row of
`evaluations` (evaluation_id, config_fingerprint, recorded_at, settings) and its rows in `metrics`
and `extraction_scores`, all tagged with its `evaluation_id`. Older evaluations stay (the run's
history); the current one is the most recently recorded, and `read_metrics` returns it.

A `metrics` row is (evaluation_id, variant, ablation, split, metric, bucket_lo, bucket_hi, value,
ci_lo, ci_hi, n, step). Model figures (split "val", ablation "none" or one of the variant's
evaluation ablations) come from `model.evaluate.evaluate_variant`: `SCALAR_METRICS`, the sample
sizes `COUNT_METRICS`, LongPPL on the key tokens (`longppl`, n = documents with key tokens;
`key_recall_share`: the share of them that are recall tokens; model/key_tokens.py), and
recall_acc per statement-to-recall distance bucket (metric
"recall_acc" with `bucket_lo`/`bucket_hi` set, NULL on every other row; `distance_bucket`: fixed,
so every variant and run shares them). `n` is a figure's sample size: recall spans for
recall_acc (its 95% interval `ci_lo`..`ci_hi` is Wilson's), documents for bpb and recall_bpb
(their interval a document bootstrap; evaluation/intervals.py). The oracle-vs-extracted memory
gap rows (variant = the model variant, ablation "gap:<extractor>") come from
evaluation/extraction_quality.py, as does `extraction_scores`: (evaluation_id, extractor, metric,
value, n), each extractor's scores against the oracle.

To add a metric: compute it in `model.evaluate.Totals.result` (a model figure) or in
evaluation/extraction_quality.py (an extraction figure), list a model scalar in `SCALAR_METRICS`,
and show it in evaluation/report.py; the tables take any name.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, NamedTuple

from evaluation.intervals import wilson

SCALAR_METRICS = ("bpb", "recall_bpb", "recall_acc", "compression", "positions", "longppl",
                  "key_recall_share")
# how much each evaluation saw (key_targets: the target tokens the key tokens were chosen from)
COUNT_METRICS = ("windows", "documents", "recall_spans", "key_tokens", "key_targets")
# the count a figure's interval is over (model.evaluate.Totals.result's and
# model.key_tokens.longppl's keys)
SAMPLE_SIZE = {"recall_acc": "recall_spans", "recall_bpb": "recall_documents", "bpb": "documents",
               "longppl": "key_documents", "key_recall_share": "key_tokens"}
DISTANCE_METRIC = "recall_acc"
# Below one point of recall_acc a gap is evaluation noise (a few thousand recall spans), and a
# share of it would be a ratio of noise.
MIN_GAP = 0.01


class Figure(NamedTuple):
    """One figure with its 95% interval (None where it has none) and sample size."""
    value: float
    lo: float | None = None
    hi: float | None = None
    n: int | None = None


def distance_bucket(distance: int) -> tuple[int, int]:
    """[lo, hi) of a statement->recall distance in tokens: 16 wide below 64, then quarter
    octaves (64-80, ..., 112-128, 128-160, ..., 224-256, 256-320, ...)."""
    d = max(int(distance), 0)
    if d < 64:
        lo = d // 16 * 16
        return lo, lo + 16
    octave = 1 << (d.bit_length() - 1)
    width = octave // 4
    lo = octave + (d - octave) // width * width
    return lo, lo + width


def distance_buckets(pairs: Iterable[tuple[int, bool]]) -> list[tuple[int, int, int, int]]:
    """(lo, hi, hits, count) per distance bucket, in distance order, from
    (distance_tokens, correct) pairs."""
    hits: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for distance, correct in pairs:
        bucket = hits[distance_bucket(distance)]
        bucket[0] += int(bool(correct))
        bucket[1] += 1
    return [(lo, hi, c, n) for (lo, hi), (c, n) in sorted(hits.items())]


def metric_row(variant: str, ablation: str, metric: str, figure: Figure, step: int | None = None,
               bucket: tuple[int, int] | None = None, split: str = "val") -> dict[str, Any]:
    """A metrics row (without its evaluation_id, which the stage adds when it records them)."""
    return {"variant": variant, "ablation": ablation, "split": split, "metric": metric,
            "bucket_lo": bucket[0] if bucket else None, "bucket_hi": bucket[1] if bucket else None,
            "value": figure.value, "ci_lo": figure.lo, "ci_hi": figure.hi, "n": figure.n,
            "step": step}


def model_rows(variant: str, ablation: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """One evaluation (`evaluate_variant`'s dict) as metrics rows: figures with their intervals
    and sample sizes, the counts, and the distance buckets."""
    step = result.get("step")
    rows = []
    for m in SCALAR_METRICS:
        if result.get(m) is None:
            continue
        lo, hi = result.get(f"{m}_ci") or (None, None)
        n = result.get(SAMPLE_SIZE[m]) if m in SAMPLE_SIZE else None
        rows.append(metric_row(variant, ablation, m, Figure(result[m], lo, hi, n), step))
    rows += [metric_row(variant, ablation, m, Figure(result[m]), step)
             for m in COUNT_METRICS if result.get(m) is not None]
    for lo, hi, hits, n in distance_buckets(result.get("recall_acc_by_distance") or []):
        rows.append(metric_row(variant, ablation, DISTANCE_METRIC,
                               Figure(hits / n, *wilson(hits, n), n), step, (lo, hi)))
    return rows


class Metrics:
    """One evaluation's figures: (variant, ablation, metric) -> Figure, distance buckets apart,
    and each extractor's scores."""

    def __init__(self, rows: Iterable[dict[str, Any]], extraction: Iterable[dict[str, Any]] = ()):
        self.figures: dict[tuple[str, str, str], Figure] = {}
        self.buckets: dict[tuple[str, str], list[tuple[int, int, Figure]]] = defaultdict(list)
        for r in rows:
            figure = Figure(r["value"], r.get("ci_lo"), r.get("ci_hi"), r.get("n"))
            if r.get("bucket_lo") is None:
                self.figures[(r["variant"], r["ablation"], r["metric"])] = figure
            else:
                self.buckets[(r["variant"], r["ablation"])].append(
                    (r["bucket_lo"], r["bucket_hi"], figure))
        self.values = {k: f.value for k, f in self.figures.items()}
        self.scores: dict[str, dict[str, Figure]] = defaultdict(dict)
        for r in extraction:
            self.scores[r["extractor"]][r["metric"]] = Figure(r["value"], n=r.get("n"))

    def get(self, variant: str, ablation: str, metric: str) -> float | None:
        return self.values.get((variant, ablation, metric))

    def figure(self, variant: str, ablation: str, metric: str) -> Figure | None:
        return self.figures.get((variant, ablation, metric))

    def has_run(self, variant: str, ablation: str = "none") -> bool:
        return any(k[:2] == (variant, ablation) for k in self.values)

    def group(self, variant: str, ablation: str) -> dict[str, float]:
        """Every metric of one (variant, ablation)."""
        return {m: v for (var, abl, m), v in self.values.items() if (var, abl) == (variant, ablation)}

    def extraction_scores(self) -> dict[str, dict[str, float]]:
        """extractor -> its scores against the oracle."""
        return {ex: {m: f.value for m, f in scores.items()} for ex, scores in sorted(self.scores.items())}

    def distance_curves(self, variants: list[str]) -> dict[str, list[tuple[int, int, float, int]]]:
        """label -> [(lo, hi, recall_acc, n recall spans)] for every (variant, ablation) with
        distance rows, `variants` in their order, each followed by its ablations."""
        ordered = sorted((variants.index(v), a != "none", a) for v, a in self.buckets if v in variants)
        return {(variants[v] if a == "none" else f"{variants[v]} ({a})"):
                sorted((lo, hi, f.value, f.n) for lo, hi, f in self.buckets[(variants[v], a)])
                for v, _, a in ordered}


class EvaluationsOutdated(RuntimeError):
    """The warehouse's evaluate tables predate evaluation history (an older pipeline's)."""


def evaluation_history(con) -> list[dict[str, Any]]:
    """Every recorded evaluation, newest first: evaluation_id, config_fingerprint, recorded_at,
    settings (JSON text)."""
    # looked up first: for a missing table DuckDB would scan a Python variable of that name
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'evaluations' "
                       "AND database_name = current_database()").fetchall()[0][0]:
        raise EvaluationsOutdated("the warehouse has no `evaluations` table: an older pipeline "
                                  "wrote it; rerun the evaluate stage")
    cursor = con.execute("SELECT evaluation_id, config_fingerprint, recorded_at, settings "
                         "FROM evaluations ORDER BY recorded_at DESC, evaluation_id")
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


def read_metrics(con, evaluation_id: str | None = None) -> Metrics:
    """The figures of one evaluation: `evaluation_id`, by default the current (newest) one; an
    empty Metrics when none has been recorded."""
    if evaluation_id is None:
        recorded = evaluation_history(con)
        if not recorded:
            return Metrics([])
        evaluation_id = recorded[0]["evaluation_id"]

    def rows(sql: str) -> list[dict[str, Any]]:
        cursor = con.execute(sql, [evaluation_id])
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]

    return Metrics(rows("SELECT * FROM metrics WHERE evaluation_id = ?"),
                   rows("SELECT * FROM extraction_scores WHERE evaluation_id = ?"))
