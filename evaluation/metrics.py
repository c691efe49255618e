"""The metrics table's rows: what the evaluate stage records and the report reads.

A row is (variant, ablation, split, metric, value, step). Model figures (split "val", ablation
"none" or one of the variant's evaluation ablations) come from `model.evaluate.evaluate_variant`:
`SCALAR_METRICS` plus `recall_acc@<lo>-<hi>`, recall accuracy per statement-to-recall distance
bucket (`distance_bucket`: fixed, so every variant and run shares them). Extraction figures
(variant = extractor, ablation "vs_oracle", split "all") come from
evaluation/extraction_quality.py, as do the oracle-vs-extracted memory gap rows (variant = the
model variant, ablation = the extractor).

To add a metric: compute it in `model.evaluate.Totals.result` (a model figure) or in
evaluation/extraction_quality.py (an extraction figure), list a model scalar in `SCALAR_METRICS`,
and show it in evaluation/report.py; the metrics table takes any name.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Iterable

SCALAR_METRICS = ("bpb", "recall_bpb", "recall_acc", "compression", "positions")
DISTANCE_METRIC = re.compile(r"recall_acc@(\d+)-(\d+)")
EXTRACTION_ABLATION = "vs_oracle"
SPLIT_PREFERENCE = ("val", "all", "train")
# Below one point of recall_acc a gap is evaluation noise (a few thousand recall spans), and a
# share of it would be a ratio of noise.
MIN_GAP = 0.01


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


def distance_buckets(pairs: Iterable[tuple[int, bool]]) -> list[tuple[int, int, float, int]]:
    """(lo, hi, accuracy, count) per distance bucket, in distance order, from
    (distance_tokens, correct) pairs."""
    hits: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for distance, correct in pairs:
        bucket = hits[distance_bucket(distance)]
        bucket[0] += int(bool(correct))
        bucket[1] += 1
    return [(lo, hi, c / n, n) for (lo, hi), (c, n) in sorted(hits.items())]


def model_rows(variant: str, ablation: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """One evaluation (`evaluate_variant`'s dict) as metrics rows, distance buckets included."""
    step = result.get("step")
    rows = [{"variant": variant, "ablation": ablation, "split": "val", "metric": m,
             "value": result[m], "step": step}
            for m in SCALAR_METRICS if result.get(m) is not None]
    for lo, hi, acc, n in distance_buckets(result.get("recall_acc_by_distance") or []):
        if n:
            rows.append({"variant": variant, "ablation": ablation, "split": "val",
                         "metric": f"recall_acc@{lo}-{hi}", "value": acc, "step": step})
    return rows


class Metrics:
    """The newest value of every (variant, ablation, metric), preferring the val split."""

    def __init__(self, rows: list[tuple[str, str, str, str, float]]):
        best: dict[tuple[str, str, str], tuple[int, float]] = {}
        for variant, ablation, split, metric, value in rows:
            rank = SPLIT_PREFERENCE.index(split) if split in SPLIT_PREFERENCE else len(SPLIT_PREFERENCE)
            key = (variant, ablation, metric)
            if key not in best or rank < best[key][0]:
                best[key] = (rank, value)
        self.values = {k: v for k, (_, v) in best.items()}

    def get(self, variant: str, ablation: str, metric: str) -> float | None:
        return self.values.get((variant, ablation, metric))

    def has_run(self, variant: str, ablation: str = "none") -> bool:
        return any(k[:2] == (variant, ablation) for k in self.values)

    def group(self, variant: str, ablation: str) -> dict[str, float]:
        """Every metric of one (variant, ablation)."""
        return {m: v for (var, abl, m), v in self.values.items() if (var, abl) == (variant, ablation)}

    def extraction_scores(self) -> dict[str, dict[str, float]]:
        """extractor -> its scores against the oracle (the `vs_oracle` rows)."""
        names = sorted({var for var, abl, _ in self.values if abl == EXTRACTION_ABLATION})
        return {name: self.group(name, EXTRACTION_ABLATION) for name in names}

    def distance_curves(self, variants: list[str]) -> dict[str, list[tuple[int, int, float]]]:
        """label -> [(lo, hi, recall_acc)] for every (variant, ablation) with distance rows,
        `variants` in their order, each followed by its ablations."""
        curves: dict[tuple[int, bool, str], list[tuple[int, int, float]]] = defaultdict(list)
        for (variant, ablation, metric), value in self.values.items():
            m = DISTANCE_METRIC.fullmatch(metric)
            if m and variant in variants:
                key = (variants.index(variant), ablation != "none", ablation)
                curves[key].append((int(m.group(1)), int(m.group(2)), value))
        return {(variants[v] if ablation == "none" else f"{variants[v]} ({ablation})"): sorted(points)
                for (v, _, ablation), points in sorted(curves.items())}


def read_metrics(con) -> Metrics:
    """The table's newest row per key (reruns append); rowid breaks ties within one insert."""
    return Metrics(con.execute("""
        SELECT variant, ablation, split, metric, value FROM metrics
        QUALIFY row_number() OVER (PARTITION BY variant, ablation, split, metric
                                   ORDER BY recorded_at DESC, rowid DESC) = 1""").fetchall())
