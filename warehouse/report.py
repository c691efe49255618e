"""The report stage: `report/report.md` and its plots, from the warehouse and the training logs.

Every figure in the report is a row of the warehouse `metrics` table. The evaluate stage writes
the model rows (variant, ablation "none" or a `triplet` ablation, split "val"): `bpb`,
`recall_bpb`, `recall_acc`, `compression`, `positions`, and `recall_acc@<lo>-<hi>` per
statement-to-recall distance bucket (`distance_buckets`). This stage adds the extraction rows
(variant = extractor, ablation "vs_oracle", split "all"): precision / recall / F1 of every
non-oracle extractor against the oracle (gold) triplets of the same documents, scored by
`extraction.score` (strict: subject, relation, object and polarity; relaxed: subject and
object), the share of recalled facts (synthetic gold recall spans) the extractor stated before
their recall, and the recall_acc gap between oracle and extracted memory with the part of it
that extraction explains.

The report has the variants table, the `triplet` ablations, extraction quality, the gap analysis,
training loss curves (`train/<variant>.jsonl`) in `loss.png` and recall_acc against distance in
`recall_by_distance.png`. Anything not run shows as "not run"; absent optional data (no gold, no
logs, no distance rows) leaves its section saying so.

    python -m warehouse.report --config configs/tiny.yaml --run runs/tiny
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from collections import defaultdict
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from configs.schema import VARIANTS, RunConfig
from extraction.base import Document, Triplet
from extraction.normalize import canonical_relation, normalize_entity
from extraction.score import Dataset, DatasetError, load_dataset, score
from warehouse.db import connect, db_path, insert_metrics
from warehouse.shards import list_shards, write_text_atomically

log = logging.getLogger(__name__)
REPORT_DIR = "report"
DISTANCE_METRIC = re.compile(r"recall_acc@(\d+)-(\d+)")
EXTRACTION_ABLATION = "vs_oracle"
SPLIT_PREFERENCE = ("val", "all", "train")
VARIANT_COLORS = {"window": "C1", "triplet": "C0", "raw": "C2", "full": "C3"}  # same in every plot
ABLATION_MEMORY = {"none": "as trained", "no_memory": "removed", "shuffled": "another document's",
                   "oracle": "oracle (gold) triplets", "spacy": "spaCy triplets",
                   "vllm": "vLLM triplets"}


# ---------------------------------------------------------------- distance buckets

def distance_bucket(distance: int) -> tuple[int, int]:
    """[lo, hi) of a statement->recall distance in tokens: 16 wide below 64, then quarter
    octaves (64-80, ..., 112-128, 128-160, ..., 224-256, 256-320, ...), fixed so that every
    variant and run shares the same buckets."""
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
    (distance_tokens, correct) pairs; stored as metric rows named `recall_acc@<lo>-<hi>`."""
    hits: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for distance, correct in pairs:
        bucket = hits[distance_bucket(distance)]
        bucket[0] += int(bool(correct))
        bucket[1] += 1
    return [(lo, hi, c / n, n) for (lo, hi), (c, n) in sorted(hits.items())]


# ---------------------------------------------------------------- extraction quality

@lru_cache(maxsize=1 << 16)  # surface strings repeat across triplets and extractors
def _fact_keys(subject: str, relation: str, obj: str) -> tuple[tuple, tuple]:
    """(strict key, relaxed key) of a fact: normalized (subject, relation, object), (subject, object)."""
    s, o = normalize_entity(subject), normalize_entity(obj)
    return (s, canonical_relation(relation), o), (s, o)


def _gold_dataset(cfg: RunConfig, oracle: list[Triplet]) -> Dataset:
    """The oracle triplets as `extraction.score`'s gold, matched as that scorer does for the
    run's source (per sentence for synthetic; per document, with Re-DocRED's aliases)."""
    by_doc: dict[str, list[Triplet]] = defaultdict(list)
    for t in oracle:
        by_doc[t.doc_id].append(t)
    docs = [Document(doc_id, "", gold) for doc_id, gold in by_doc.items()]
    if cfg.ingest.source != "redocred":
        return Dataset(cfg.ingest.source, docs, per_sentence=True)
    try:
        src = cfg.ingest.redocred
        aliases = load_dataset("redocred", src.path, src.limit).aliases
    except DatasetError as err:
        log.warning("report: Re-DocRED aliases unavailable (%s); scoring without them", err)
        aliases = {}
    return Dataset("redocred", docs, per_sentence=False, aliases=aliases)


def extraction_quality(con, cfg: RunConfig, run_dir: Path) -> dict[str, dict[str, float]]:
    """Per non-oracle extractor, `extraction.score.score` against the oracle triplets of the
    documents that have them (strict keys include polarity), plus `recall_fact_coverage`
    (synthetic runs): the share of gold recall spans whose fact the extractor stated, positively,
    before the recall (strict and relaxed keys)."""
    rows = con.execute("""
        SELECT doc_id, subject, relation, object, negated, char_start, char_end, confidence,
               extractor FROM triplets
        WHERE doc_id IN (SELECT doc_id FROM triplets WHERE extractor = 'oracle')
        ORDER BY triplet_id""").fetchall()
    by_extractor: dict[str, list[Triplet]] = defaultdict(list)
    for row in rows:
        by_extractor[row[-1]].append(Triplet(*row))
    if "oracle" not in by_extractor:
        return {}
    gold = _gold_dataset(cfg, by_extractor.pop("oracle"))
    recalls = _gold_recalls(run_dir, {d.doc_id for d in gold.docs})
    out = {}
    for extractor, triplets in sorted(by_extractor.items()):
        s = score(triplets, gold)
        scores = {"docs": len(gold.docs), "gold_triplets": s["gold"],
                  "extracted_triplets": s["predicted"],
                  **{f"{kind}_{m}": s[f"{kind}_{m}"] for kind in ("strict", "relaxed")
                     for m in ("p", "r", "f1")}}
        if recalls:
            scores.update(_recall_coverage(triplets, recalls))
        out[extractor] = scores
    return out


def _recall_coverage(triplets: list[Triplet], recalls: list[tuple[str, tuple, int]]) -> dict[str, float]:
    stated: dict[str, list[tuple[tuple, tuple, int]]] = defaultdict(list)
    for t in triplets:
        if not t.negated:
            stated[t.doc_id].append((*_fact_keys(t.subject, t.relation, t.object), t.char_end))
    out = {}
    for i, name in ((0, "recall_fact_coverage"), (1, "recall_fact_coverage_relaxed")):
        covered = sum(any(keys[i] == recalled[i] and end <= start for *keys, end in stated[doc_id])
                      for doc_id, recalled, start in recalls)
        out[name] = covered / len(recalls)
    return out


def _gold_recalls(run_dir: Path, docs: set[str]) -> list[tuple[str, tuple, int]]:
    """(doc_id, fact keys, char_start) of every gold recall span (synthetic runs only; an
    unreadable recall shard is left out with a warning: the coverage is optional)."""
    out = []
    for path in list_shards(run_dir, "recall"):
        try:
            table = pq.read_table(path, columns=["doc_id", "subject", "relation", "value",
                                                 "char_start"])
        except (OSError, pa.ArrowException) as err:
            log.warning("report: %s unreadable (%s); recall coverage leaves it out", path, err)
            continue
        for r in table.to_pylist():
            if r["doc_id"] in docs:
                strict_key, relaxed_key = _fact_keys(r["subject"], r["relation"], r["value"])
                out.append((r["doc_id"], (strict_key, relaxed_key), r["char_start"]))
    return out


# Below one point of recall_acc a gap is evaluation noise (a few thousand recall spans), and a
# share of it would be a ratio of noise.
MIN_GAP = 0.01


def memory_gap(cfg: RunConfig, metrics: "Metrics", extractor: str,
               quality: dict[str, float]) -> dict[str, float]:
    """recall_acc of the `triplet` model with oracle vs this extractor's memory, and the part of
    the gap that missing facts explain: with every extracted fact used as well as oracle memory
    and the rest at the no-memory level, extracted memory would score
    expected = oracle_acc * coverage + no_memory_acc * (1 - coverage)."""
    source = extractor.split(":")[0]
    acc = {a: metrics.get("triplet", a, "recall_acc") for a in ("oracle", "spacy", "vllm", "no_memory")}
    acc[cfg.train.memory_source] = metrics.get("triplet", "none", "recall_acc")
    oracle, extracted, no_memory = acc.get("oracle"), acc.get(source), acc.get("no_memory")
    if oracle is None or extracted is None:
        return {}
    out = {"recall_acc_oracle_memory": oracle, "recall_acc_extracted_memory": extracted,
           "recall_acc_gap": oracle - extracted}
    coverage = quality.get("recall_fact_coverage", quality.get("strict_r"))
    if no_memory is not None and coverage is not None:
        expected = oracle * coverage + no_memory * (1 - coverage)
        out["recall_acc_expected_from_coverage"] = expected
        if abs(oracle - extracted) >= MIN_GAP:
            out["gap_share_explained_by_extraction"] = (oracle - expected) / (oracle - extracted)
    return out


# ---------------------------------------------------------------- metrics

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

    def distance_curves(self) -> dict[str, list[tuple[int, int, float]]]:
        """label -> [(lo, hi, recall_acc)] for every (variant, ablation) with distance rows."""
        curves: dict[tuple[int, str, str], list[tuple[int, int, float]]] = defaultdict(list)
        for (variant, ablation, metric), value in self.values.items():
            m = DISTANCE_METRIC.fullmatch(metric)
            if m and variant in VARIANTS:
                key = (VARIANTS.index(variant), ablation != "none", ablation)
                curves[key].append((int(m.group(1)), int(m.group(2)), value))
        # variants in their usual order, each followed by its ablations
        return {(VARIANTS[v] if ablation == "none" else f"{VARIANTS[v]} ({ablation})"): sorted(points)
                for (v, _, ablation), points in sorted(curves.items())}


def read_metrics(con) -> Metrics:
    # newest row first per key (reruns append); rowid breaks ties within one insert
    return Metrics(con.execute("""
        SELECT variant, ablation, split, metric, value FROM metrics
        QUALIFY row_number() OVER (PARTITION BY variant, ablation, split, metric
                                   ORDER BY recorded_at DESC, rowid DESC) = 1""").fetchall())


def write_extraction_metrics(con, cfg: RunConfig, run_dir: Path) -> dict[str, dict[str, float]]:
    """Score the extractors, add the gap rows, and replace the previous `vs_oracle` rows."""
    quality = extraction_quality(con, cfg, run_dir)
    model_metrics = read_metrics(con)
    for extractor, scores in quality.items():
        scores.update(memory_gap(cfg, model_metrics, extractor, scores))
    rows = [{"variant": ex, "ablation": EXTRACTION_ABLATION, "split": "all", "metric": m,
             "value": v, "step": None} for ex, scores in quality.items() for m, v in scores.items()]
    con.execute("BEGIN")
    con.execute("DELETE FROM metrics WHERE ablation = ?", [EXTRACTION_ABLATION])
    insert_metrics(con, rows)
    con.execute("COMMIT")
    return quality


# ---------------------------------------------------------------- training logs and plots

def read_loss_log(path: Path) -> tuple[list[int], list[float], int]:
    """(steps, losses, unreadable lines) of one train/<variant>.jsonl; a step logged twice
    (training resumed after a kill) keeps its newest value."""
    by_step: dict[int, float] = {}
    bad = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            step, loss = int(rec["step"]), float(rec["loss"])
        except (ValueError, KeyError, TypeError):
            bad += 1  # e.g. the half-written last line of a killed run
            continue
        if math.isfinite(loss):
            by_step[step] = loss
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps], bad


def _save_figure(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def plot_losses(curves: dict[str, tuple[list[int], list[float]]], path: Path) -> Path:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 4))
    ax = fig.add_subplot()
    for variant, (steps, losses) in curves.items():
        ax.plot(steps, losses, label=variant, linewidth=1.2, color=VARIANT_COLORS.get(variant))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("Training loss per variant")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(fig, path)


def plot_recall_by_distance(curves: dict[str, list[tuple[int, int, float]]], reach: int,
                            path: Path) -> Path:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 4))
    ax = fig.add_subplot()
    ablation_colors = iter(f"C{i}" for i in range(4, 100))  # C0-C3 are the variants'
    for label, points in curves.items():
        unablated = label in VARIANT_COLORS
        ax.plot([(lo + hi) / 2 for lo, hi, _ in points], [acc for _, _, acc in points],
                marker="o", label=label, linewidth=1.2, linestyle="-" if unablated else ":",
                color=VARIANT_COLORS[label] if unablated else next(ablation_colors))
    ax.axvline(reach, color="grey", linestyle="--", linewidth=1, label=f"T + M = {reach}")
    ax.set_xlabel("statement -> recall distance (tokens, bucket midpoint)")
    ax.set_ylabel("recall_acc")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Recall accuracy against distance")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(fig, path)


# ---------------------------------------------------------------- markdown

def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def variants_section(cfg: RunConfig, metrics: Metrics) -> list[str]:
    rows = []
    for variant in VARIANTS:
        if not metrics.has_run(variant):
            rows.append([f"`{variant}`", "not run", "", "", "", ""])
            continue
        get = lambda m: metrics.get(variant, "none", m)  # noqa: E731
        rows.append([f"`{variant}`", _fmt(get("bpb")), _fmt(get("recall_bpb")),
                     _fmt(get("recall_acc")), _fmt(get("positions"), 0),
                     _fmt(get("compression"), 1)])
    return ["## Variants", "",
            f"Val split. Window T = {cfg.model.sequence_len} tokens, M = {cfg.model.memory_slots} "
            f"memory slots; `triplet` memory from `{cfg.train.memory_source}`. `positions` is the "
            "attention positions per window; `compression` the evicted tokens per memory slot "
            "used.", "",
            *_table(["variant", "bpb", "recall_bpb", "recall_acc", "positions", "compression"], rows),
            ""]


def ablations_section(cfg: RunConfig, metrics: Metrics) -> list[str]:
    ablations = list(dict.fromkeys(["none", "no_memory", "shuffled", "oracle", "spacy",
                                    *cfg.evaluate.ablations]))
    rows = []
    for ablation in ablations:
        memory = (f"`{cfg.train.memory_source}` (as trained)" if ablation == "none"
                  else ABLATION_MEMORY.get(ablation, ablation))
        evaluated = ablation
        if ablation == cfg.train.memory_source and not metrics.has_run("triplet", ablation):
            evaluated, memory = "none", f"{memory}: as trained, the `none` row"
        if not metrics.has_run("triplet", evaluated):
            rows.append([f"`{ablation}`", memory, "not run", "", ""])
            continue
        values = [metrics.get("triplet", evaluated, m) for m in ("bpb", "recall_bpb", "recall_acc")]
        rows.append([f"`{ablation}`", memory, *map(_fmt, values)])
    return ["## Ablations of `triplet` (evaluation time)", "",
            *_table(["ablation", "memory", "bpb", "recall_bpb", "recall_acc"], rows), ""]


def extraction_section(quality: dict[str, dict[str, float]]) -> list[str]:
    lines = ["## Extraction quality against gold", ""]
    if not quality:
        return lines + ["No gold (oracle) triplets and another extractor on the same documents in "
                        "this run: nothing to score.", ""]
    lines += ["Each extractor against the oracle triplets of the same documents, scored as "
              "`python -m extraction.score` does. Strict: subject, relation, object and polarity "
              "equal after normalization; relaxed: subject and object. `recalled facts` is the "
              "share of gold recall spans whose fact the extractor stated before the recall.", ""]
    rows = [[f"`{ex}`", f"{s['docs']:.0f}", f"{s['gold_triplets']:.0f}",
             f"{s['extracted_triplets']:.0f}", _fmt(s["strict_p"]), _fmt(s["strict_r"]),
             _fmt(s["strict_f1"]), _fmt(s["relaxed_p"]), _fmt(s["relaxed_r"]),
             _fmt(s["relaxed_f1"]), _fmt(s.get("recall_fact_coverage"))]
            for ex, s in quality.items()]
    return lines + _table(["extractor", "docs", "gold", "extracted", "strict P", "strict R",
                           "strict F1", "relaxed P", "relaxed R", "relaxed F1", "recalled facts"],
                          rows) + [""]


def gap_section(quality: dict[str, dict[str, float]]) -> list[str]:
    lines = ["## Oracle vs extracted memory: how much of the gap is extraction", ""]
    any_gap = False
    for ex, s in quality.items():
        if "recall_acc_gap" not in s:
            continue
        any_gap = True
        coverage = s.get("recall_fact_coverage")
        covered = (f"states {_fmt(coverage)} of the recalled facts before their recall"
                   if coverage is not None else f"recovers {_fmt(s['strict_r'])} of gold facts")
        lines.append(
            f"- `{ex}`: `triplet` recall_acc is {_fmt(s['recall_acc_oracle_memory'])} with oracle "
            f"memory and {_fmt(s['recall_acc_extracted_memory'])} with `{ex}` memory, a gap of "
            f"{_fmt(s['recall_acc_gap'])}. The extractor {covered} (strict recall of all gold "
            f"facts {_fmt(s['strict_r'])}, relaxed {_fmt(s['relaxed_r'])}).")
        if "recall_acc_expected_from_coverage" in s:
            share = s.get("gap_share_explained_by_extraction")
            lines.append(
                f"  Using every extracted fact as well as oracle memory, and falling to the "
                f"no-memory level on the rest, would give {_fmt(s['recall_acc_expected_from_coverage'])}"
                + (f": missing facts explain {share:.0%} of the gap; the rest comes from wrong or "
                   "differently phrased triplets and how the model reads them." if share is not None
                   else f"; the gap is under {MIN_GAP}, too small to apportion."))
    if not any_gap:
        lines.append("Needs `triplet` recall_acc with both oracle and extracted memory (train with "
                     "one, list the other in `evaluate.ablations`); not available in this run.")
    return lines + [""]


def distance_table(curves: dict[str, list[tuple[int, int, float]]]) -> list[str]:
    buckets = sorted({(lo, hi) for points in curves.values() for lo, hi, _ in points})
    acc = {(label, lo, hi): a for label, points in curves.items() for lo, hi, a in points}
    rows = [[f"{lo}-{hi}", *(_fmt(acc.get((label, lo, hi))) for label in curves)]
            for lo, hi in buckets]
    return _table(["distance (tokens)", *curves], rows)


def render_report(cfg: RunConfig, metrics: Metrics, quality: dict[str, dict[str, float]],
                  loss_png: Path | None, distance_png: Path | None, run_dir: Path) -> str:
    title = cfg.report.title or f"Triplet Context Compression: run `{cfg.name}`"
    reach = cfg.model.sequence_len + cfg.model.memory_slots
    lines = [f"# {title}", "",
             f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from `{run_dir}`. Every "
             "number below is a row of the warehouse `metrics` table:", "",
             f"    python -m warehouse.sql --run {run_dir} \"SELECT variant, ablation, metric, value "
             "FROM metrics\"", "",
             *variants_section(cfg, metrics), *ablations_section(cfg, metrics),
             *extraction_section(quality), *gap_section(quality),
             "## Training loss", ""]
    lines += ([f"![training loss per variant]({loss_png.name})", ""] if loss_png else
              ["No training logs (`train/<variant>.jsonl`) in this run.", ""])
    lines += ["## Recall accuracy against distance", ""]
    curves = metrics.distance_curves()
    if distance_png:
        lines += [f"Distance from the end of the statement to the recalled value, in tokens; "
                  f"beyond T + M = {reach} neither the window nor `raw`'s extra tokens reach the "
                  "statement.", "", f"![recall_acc against distance]({distance_png.name})", "",
                  *distance_table(curves), ""]
    else:
        lines += ["No per-distance recall rows (`recall_acc@<lo>-<hi>`) in this run.", ""]
    return "\n".join(lines)


def build_report(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The report stage: score extraction into `metrics`, plot, and write report/report.md."""
    run_dir = Path(run_dir)
    out_dir = run_dir / REPORT_DIR
    if not db_path(run_dir).is_file():
        raise FileNotFoundError(f"{db_path(run_dir)}: no warehouse here (run the pipeline first)")
    con = connect(run_dir)
    try:
        quality = write_extraction_metrics(con, cfg, run_dir)
        metrics = read_metrics(con)
    finally:
        con.close()

    bad_lines = 0
    losses = {}
    for variant in dict.fromkeys([*cfg.train.variants, *VARIANTS]):
        log = run_dir / "train" / f"{variant}.jsonl"
        if log.is_file():
            steps, values, bad = read_loss_log(log)
            bad_lines += bad
            if steps:
                losses[variant] = (steps, values)
    curves = metrics.distance_curves()
    reach = cfg.model.sequence_len + cfg.model.memory_slots
    loss_png = plot_losses(losses, out_dir / "loss.png") if losses else None
    distance_png = (plot_recall_by_distance(curves, reach, out_dir / "recall_by_distance.png")
                    if curves else None)
    for name, made in (("loss.png", loss_png), ("recall_by_distance.png", distance_png)):
        if made is None:
            (out_dir / name).unlink(missing_ok=True)  # a plot of an earlier run would mislead

    markdown = render_report(cfg, metrics, quality, loss_png, distance_png, run_dir)
    report_md = write_text_atomically(markdown, out_dir / "report.md")
    outputs = [p.relative_to(run_dir).as_posix() for p in (report_md, loss_png, distance_png) if p]
    return {"outputs": outputs,
            "rows": {"report_chars": len(markdown), "metrics": len(metrics.values),
                     "extractors_scored": len(quality)},
            "counters": {"unreadable_log_lines": bad_lines} if bad_lines else {}}


def main() -> None:
    from configs.schema import load_config_or_exit
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/tiny")
    args = parser.parse_args()
    cfg = load_config_or_exit(args.config)
    result = build_report(cfg, args.run)
    print(f"report: {args.run / result['outputs'][0]}")


if __name__ == "__main__":
    main()
