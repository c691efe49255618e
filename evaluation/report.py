"""The report stage: `report/report.md` and its plots, from the warehouse and the training logs.

Markdown and plots only: every figure in the report is a row of the warehouse `metrics` or
`extraction_scores` table of the current (newest) evaluation, which the evaluate stage records
(evaluation/metrics.py says what the rows are). The report has the variants table (the variants
of model/variants.py, in its order), the evaluation ablations of each variant that has memory,
extraction quality, the oracle-vs-extracted memory gap, training loss curves
(`train/<variant>.jsonl`) in `loss.png` and recall_acc against distance in
`recall_by_distance.png` with its table. Every model figure shows its 95% interval and sample
size (`0.632 [0.605, 0.659] n=1240`); a recall figure from under FEW_SPANS recall spans, and a
distance bucket of under FEW_IN_BUCKET, is marked; recall spans that are not gold (the real-text
heuristic of shards/recall.py) are said to be so. Anything not run shows as "not run"; absent
optional data (no gold, no logs, no distance rows) leaves its section saying so.

    python -m evaluation.report --config configs/tiny.yaml --run runs/tiny
"""
from __future__ import annotations

import argparse
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from configs.schema import RunConfig
from corpora.sources import SOURCES
from evaluation.metrics import (MIN_GAP, EvaluationsOutdated, Figure, Metrics, evaluation_history,
                                read_metrics)
from extraction.registry import BACKENDS
from model.variants import VARIANTS
from warehouse.db import connect, db_path
from warehouse.shard_io import atomic_path, write_text_atomically

REPORT_DIR = "report"
# Below this many recall spans a recall figure says so: its interval is too wide to compare.
FEW_SPANS = 100
# A distance bucket with fewer spans than this is marked (and greyed in the plot).
FEW_IN_BUCKET = 30
ABLATION_MEMORY = {"none": "as trained", "no_memory": "removed", "shuffled": "another document's"}


def ablation_memory(ablation: str) -> str:
    """What memory an evaluation ablation gives the model (a backend: its registry label)."""
    if ablation in BACKENDS:
        return BACKENDS[ablation].label
    return ABLATION_MEMORY.get(ablation, ablation)


def variant_color(variant: str) -> str:
    """One matplotlib color per variant, the same in every plot (by its place in the table)."""
    names = list(VARIANTS)
    return f"C{names.index(variant) % 10}" if variant in names else "C9"


MARKERS = "osD^vP*Xph<>"
MIN_POINT_N = 30  # a recall point over fewer spans is drawn grey: too few to tell variants apart


def variant_marker(variant: str) -> str:
    """One matplotlib marker per variant, so curves differ without color too."""
    names = list(VARIANTS)
    return MARKERS[names.index(variant) % len(MARKERS)] if variant in names else "x"


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def smoothed(values: list[float], span: int) -> list[float]:
    """Exponential moving average over about `span` points, bias-corrected so the start is not
    pulled towards 0."""
    decay = 1 - 2 / (span + 1)
    out, average, weight = [], 0.0, 0.0
    for v in values:
        average = decay * average + (1 - decay) * v
        weight = decay * weight + (1 - decay)
        out.append(average / weight)
    return out


def round_ticks(lo: float, hi: float, most: int = 10) -> list[float]:
    """Multiples of the finest round step (0.05, 0.1, 0.2, 0.5, ...) with at most `most` in [lo, hi]."""
    for step in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        ticks = [round(k * step, 2) for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
        if len(ticks) <= most:
            return ticks
    return [lo, hi]


def plot_losses(curves: dict[str, tuple[list[int], list[float]]], path: Path) -> Path:
    """Each variant's loss, smoothed (EMA over ~5% of its steps) over the faint raw curve, on a
    log axis cut to the smoothed curves past the first tenth of the longest run's steps: the
    variants end close together, and the first steps' loss (or a run cut off early) would
    flatten them into one line."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter
    fig = Figure(figsize=(6.4, 4))
    ax = fig.add_subplot()
    shown: list[float] = []
    settled = max((steps[-1] for steps, _ in curves.values() if steps), default=0) / 10
    for variant, (steps, losses) in curves.items():
        color = variant_color(variant)
        smooth = smoothed(losses, max(5, len(losses) // 20))
        ax.plot(steps, losses, linewidth=0.6, alpha=0.2, color=color)
        ax.plot(steps, smooth, label=variant, linewidth=1.6, color=color)
        shown += [v for step, v in zip(steps, smooth) if step >= settled]
    ax.set_yscale("log")
    if shown:
        lo, hi = min(shown) * 0.97, max(shown) * 1.03
        ax.set_ylim(lo, hi)
        # the cut axis spans less than a decade: plain-number ticks, not log's 2x10^0
        ax.yaxis.set_major_locator(FixedLocator(round_ticks(lo, hi)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token, log)")
    ax.set_title("Training loss per variant (EMA; faint: raw)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save_figure(fig, path)


DistancePoint = tuple[int, int, float] | tuple[int, int, float, int]  # (lo, hi, acc[, n])


def plot_recall_by_distance(curves: dict[str, list[DistancePoint]], reach: int, path: Path) -> Path:
    """recall_acc per distance bucket, one marker and color per curve; where a point carries its
    n (spans scored), it is written beside it and a point with n < MIN_POINT_N is grey."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.add_subplot()
    # an ablation: its variant's color, dotted, with hollow markers of its own
    ablation_markers = iter(MARKERS[::-1] * 10)
    for label, points in curves.items():
        unablated = label in VARIANTS
        color = variant_color(label.split(" ")[0])
        marker = variant_marker(label) if unablated else next(ablation_markers)
        xs = [(p[0] + p[1]) / 2 for p in points]
        accs = [p[2] for p in points]
        counts = [p[3] if len(p) > 3 else None for p in points]
        ax.plot(xs, accs, label=label, linewidth=1.2, color=color, marker=marker, markersize=6,
                linestyle="-" if unablated else ":", markerfacecolor=color if unablated else "white")
        for x, acc, n in zip(xs, accs, counts):
            grey = n is not None and n < MIN_POINT_N
            if grey:  # drawn over the curve's own marker
                ax.plot([x], [acc], marker=marker, markersize=6, linestyle="none",
                        color="lightgrey", markeredgecolor="grey")
            if n is not None:
                ax.annotate(f"{n}", (x, acc), textcoords="offset points", xytext=(4, 3),
                            fontsize=6, color="grey" if grey else color)
    ax.axvline(reach, color="grey", linestyle="--", linewidth=1, label=f"T + M = {reach}")
    ax.set_xlabel("statement -> recall distance (tokens, bucket midpoint); small numbers: n")
    ax.set_ylabel("recall_acc")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Recall accuracy against distance (grey: n < {MIN_POINT_N})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save_figure(fig, path)


# ---------------------------------------------------------------- markdown

def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _figure(figure: Figure | None, digits: int = 3) -> str:
    """`0.632 [0.605, 0.659] n=1240`: a figure, its 95% interval and sample size where known."""
    if figure is None:
        return "–"
    text = _fmt(figure.value, digits)
    if figure.lo is not None and figure.hi is not None:
        text += f" [{_fmt(figure.lo, digits)}, {_fmt(figure.hi, digits)}]"
    return text + (f" n={figure.n}" if figure.n is not None else "")


def _recall_figure(metrics: Metrics, variant: str, ablation: str, metric: str) -> str:
    """A figure of `metrics`, marked when it rests on too few recall spans to conclude (its own n
    for recall_acc; the evaluation's recall_spans for recall_bpb)."""
    figure = metrics.figure(variant, ablation, metric)
    if figure is None:
        return _figure(figure)
    if metric.startswith("recall_acc"):
        spans = figure.n
    elif metric == "recall_bpb":
        spans = metrics.get(variant, ablation, "recall_spans")
    else:
        spans = None
    if spans is None or spans >= FEW_SPANS:
        return _figure(figure)
    return f"{_figure(figure)} (n={spans:.0f} spans: too few to conclude)"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def variants_section(cfg: RunConfig, metrics: Metrics) -> list[str]:
    rows = []
    for variant in cfg.train.variants:  # this run's, in its order; not every registered one
        if not metrics.has_run(variant):
            rows.append([f"`{variant}`", "not run", "", "", "", "", ""])
            continue
        get = lambda m: metrics.get(variant, "none", m)  # noqa: E731
        counts = " / ".join("–" if get(m) is None else f"{get(m):.0f}"
                            for m in ("windows", "documents", "recall_spans"))
        rows.append([f"`{variant}`",
                     *(_recall_figure(metrics, variant, "none", m) for m in INTERVAL_METRICS),
                     _fmt(get("positions"), 0), _fmt(get("compression"), 1), counts])
    readers = [v for v in cfg.train.variants if VARIANTS[v].reads_memory_rows]
    source = (f"{', '.join(f'`{v}`' for v in readers)} memory from `{cfg.train.memory_source}`. "
              if readers else "")
    return ["## Variants", "",
            f"Val split. Window T = {cfg.model.sequence_len} tokens, M = {cfg.model.memory_slots} "
            f"memory slots; {source}`positions` is the attention positions per window; "
            "`compression` the evicted tokens per memory slot used. " + INTERVALS_NOTE, "",
            recall_spans_note(cfg, metrics), "",
            *_table(["variant", *INTERVAL_HEADERS, "positions", "compression",
                     "windows / docs / recall spans"], rows),
            ""]


def key_tokens_section(cfg: RunConfig, metrics: Metrics) -> list[str]:
    """Every variant's LongPPL on the key tokens `full` chose (model/key_tokens.py)."""
    lines = ["## Key tokens (LongPPL)", ""]
    scored = [v for v in cfg.train.variants if metrics.figure(v, "none", "longppl") is not None]
    if not scored:
        why = ("`evaluate.key_tokens.enabled` is off" if not cfg.evaluate.key_tokens.enabled
               else "this run trains no `full`, the variant that chooses them")
        return lines + [f"No key-token figures: {why}.", ""]
    first = scored[0]
    count, targets = (metrics.get(first, "none", m) for m in ("key_tokens", "key_targets"))
    share = metrics.get(first, "none", "key_recall_share")
    rule = cfg.evaluate.key_tokens
    lines += [f"The tokens whose loss `full` lowers by at least {rule.min_gain:g} nats with its "
              f"earlier context (up to {cfg.train.full_context_cap} tokens) over the window alone, "
              f"and predicts with a loss of at most {rule.max_loss:g} nats: {count:.0f} of "
              f"{targets:.0f} val targets" +
              (f", {share:.1%} of them recall tokens" if share is not None else "") +
              ". `longppl` is exp(mean loss) on exactly those tokens, each variant with its own "
              "context (lower is better; 95% bootstrap over documents, n = documents with key "
              "tokens). `full` chose them by its own loss, so its figure is favoured; compare the "
              "others with each other and with `window`.", ""]
    rows = [[f"`{v}`", _figure(metrics.figure(v, "none", "longppl")),
             _fmt(metrics.get(v, "none", "key_tokens"), 0)] for v in scored]
    return lines + _table(["variant", "longppl [95%] n docs", "key tokens"], rows) + [""]


INTERVAL_METRICS = ("bpb", "recall_bpb", "recall_acc")
INTERVAL_HEADERS = ["bpb [95%] n docs", "recall_bpb [95%] n docs", "recall_acc [95%] n spans"]
INTERVALS_NOTE = ("Each figure has its 95% interval and sample size: recall_acc Wilson's over its "
                  "recall spans, bpb and recall_bpb a bootstrap over documents (1000 resamples; "
                  "documents with recall tokens for recall_bpb). A recall figure from fewer than "
                  f"{FEW_SPANS} recall spans says it is too few to conclude.")


def recall_spans_note(cfg: RunConfig, metrics: Metrics) -> str:
    """Where the recall spans come from: gold ones, or shards/recall.py's real-text heuristic."""
    spans = {v: metrics.get(v, "none", "recall_spans") for v in VARIANTS}
    counted = ", ".join(f"`{v}` {n:.0f}" for v, n in spans.items() if n is not None)
    if "recall" in SOURCES[cfg.ingest.source].side_kinds:
        return (f"Recall spans: the corpus's gold spans ({counted} evaluated)." if counted
                else "Recall spans: the corpus's gold spans.")
    return ("Recall spans: **not gold**. This corpus has none, so they come from the real-text "
            "heuristic of shards/recall.py (a later mention of a triplet's object beyond the "
            f"window){f' ({counted} evaluated)' if counted else ''}; recall_acc and recall_bpb "
            "measure those mentions, not checked recalls.")


def ablations_section(cfg: RunConfig, metrics: Metrics, variant: str) -> list[str]:
    """The evaluation-time ablations of one variant with memory (its table in model/variants.py)."""
    backends = set(BACKENDS)
    spec = VARIANTS[variant]
    candidates = ["no_memory", "shuffled", *cfg.extract.backends, *cfg.evaluate.ablations]
    ablations = ["none", *dict.fromkeys(a for a in candidates if spec.applies(a, backends))]
    rows = []
    for ablation in ablations:
        memory = (f"`{cfg.train.memory_source}` (as trained)" if ablation == "none"
                  else ablation_memory(ablation))
        evaluated = ablation
        if ablation == cfg.train.memory_source and not metrics.has_run(variant, ablation):
            evaluated, memory = "none", f"{memory}: as trained, the `none` row"
        if not metrics.has_run(variant, evaluated):
            rows.append([f"`{ablation}`", memory, "not run", "", ""])
            continue
        rows.append([f"`{ablation}`", memory,
                     *(_recall_figure(metrics, variant, evaluated, m) for m in INTERVAL_METRICS)])
    return [f"## Ablations of `{variant}` (evaluation time)", "",
            *_table(["ablation", "memory", *INTERVAL_HEADERS], rows), ""]


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


def gap_section(metrics: Metrics, variants: list[str]) -> list[str]:
    """For each memory variant and extractor, the recall_acc gap between oracle and extracted
    memory (the `gap:<extractor>` rows) and how much of it missing facts explain."""
    lines = ["## Oracle vs extracted memory: how much of the gap is extraction", ""]
    any_gap = False
    quality = metrics.extraction_scores()
    for variant in variants:
        for ex, q in quality.items():
            s = metrics.group(variant, f"gap:{ex}")
            if "recall_acc_gap" not in s:
                continue
            any_gap = True
            coverage = q.get("recall_fact_coverage")
            covered = (f"states {_fmt(coverage)} of the recalled facts before their recall"
                       if coverage is not None else f"recovers {_fmt(q.get('strict_r'))} of gold facts")
            oracle, extracted = (_recall_figure(metrics, variant, f"gap:{ex}", f"recall_acc_{m}_memory")
                                 for m in ("oracle", "extracted"))
            lines.append(
                f"- `{ex}`: `{variant}` recall_acc is {oracle} with oracle memory and {extracted} "
                f"with `{ex}` memory, a "
                f"gap of {_fmt(s['recall_acc_gap'])}. The extractor {covered} (strict recall of all "
                f"gold facts {_fmt(q.get('strict_r'))}, relaxed {_fmt(q.get('relaxed_r'))}).")
            if "recall_acc_expected_from_coverage" in s:
                share = s.get("gap_share_explained_by_extraction")
                lines.append(
                    f"  Using every extracted fact as well as oracle memory, and falling to the "
                    f"no-memory level on the rest, would give "
                    f"{_fmt(s['recall_acc_expected_from_coverage'])}"
                    + (f": missing facts explain {share:.0%} of the gap; the rest comes from wrong "
                       "or differently phrased triplets and how the model reads them."
                       if share is not None
                       else f"; the gap is under {MIN_GAP}, too small to apportion."))
    if not any_gap:
        lines.append("Needs a memory variant's recall_acc with both oracle and extracted memory "
                     "(train with one, list the other in `evaluate.ablations`); not available in "
                     "this run.")
    return lines + [""]


def distance_table(curves: dict[str, list[tuple[int, int, float, int]]]) -> list[str]:
    """recall_acc and n per distance bucket and curve; a bucket of under FEW_IN_BUCKET spans is
    marked "(n<30)"."""
    buckets = sorted({(lo, hi) for points in curves.values() for lo, hi, _, _ in points})
    cell = {(label, lo, hi): f"{_fmt(a)} n={n}" + (f" (n<{FEW_IN_BUCKET})" if n < FEW_IN_BUCKET else "")
            for label, points in curves.items() for lo, hi, a, n in points}
    rows = [[f"{lo}-{hi}", *(cell.get((label, lo, hi), "–") for label in curves)]
            for lo, hi in buckets]
    return _table(["distance (tokens)", *curves], rows)


def render_report(cfg: RunConfig, metrics: Metrics, loss_png: Path | None,
                  distance_png: Path | None, run_dir: Path,
                  history: list[dict[str, Any]] | None = None) -> str:
    """The report's markdown; `history`: the run's evaluations, newest (the one shown) first."""
    title = cfg.report.title or f"Triplet Context Compression: run `{cfg.name}`"
    reach = cfg.model.sequence_len + cfg.model.memory_slots
    # variants with evaluation ablations: those trained in this run, or with rows in the table
    with_memory = [v for v in VARIANTS if VARIANTS[v].ablations
                   and (v in cfg.train.variants or metrics.has_run(v))]
    history = history or []
    current = (f"evaluation `{history[0]['evaluation_id']}` (recorded "
               f"{history[0]['recorded_at']:%Y-%m-%d %H:%M} UTC; the run holds {len(history)}, "
               f"`python -m warehouse.sql --run {run_dir} --evaluations` lists them)"
               if history else "no evaluation recorded yet")
    lines = [f"# {title}", "",
             f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from `{run_dir}`, "
             f"{current}. Every number below is a row of the warehouse `metrics` or "
             "`extraction_scores` table of that evaluation:", "",
             f"    python -m warehouse.sql --run {run_dir} \"SELECT variant, ablation, metric, "
             "bucket_lo, value, ci_lo, ci_hi, n FROM metrics WHERE evaluation_id = (SELECT "
             "evaluation_id FROM evaluations ORDER BY recorded_at DESC LIMIT 1)\"", "",
             *variants_section(cfg, metrics),
             *key_tokens_section(cfg, metrics),
             *(line for v in with_memory for line in ablations_section(cfg, metrics, v)),
             *extraction_section(metrics.extraction_scores()),
             *gap_section(metrics, [v for v in VARIANTS if VARIANTS[v].reads_memory_rows]),
             "## Training loss", ""]
    lines += ([f"![training loss per variant]({loss_png.name})", ""] if loss_png else
              ["No training logs (`train/<variant>.jsonl`) in this run.", ""])
    lines += ["## Recall accuracy against distance", ""]
    curves = metrics.distance_curves(list(VARIANTS))
    if distance_png:
        lines += [f"Distance from the end of the statement to the recalled value, in tokens; "
                  f"beyond T + M = {reach} neither the window nor `raw`'s extra tokens reach the "
                  "statement.", "", f"![recall_acc against distance]({distance_png.name})", "",
                  *distance_table(curves), ""]
    else:
        lines += ["No per-distance recall rows (`recall_acc` with a `bucket_lo`) in this run.", ""]
    return "\n".join(lines)


def build_report(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """The report stage: plot, and write report/report.md from the `metrics` table."""
    run_dir = Path(run_dir)
    out_dir = run_dir / REPORT_DIR
    if not db_path(run_dir).is_file():
        raise FileNotFoundError(f"{db_path(run_dir)}: no warehouse here (run the pipeline first)")
    con = connect(run_dir, read_only=True)
    try:
        history = evaluation_history(con)
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
    curves = metrics.distance_curves(list(VARIANTS))
    reach = cfg.model.sequence_len + cfg.model.memory_slots
    loss_png = plot_losses(losses, out_dir / "loss.png") if losses else None
    distance_png = (plot_recall_by_distance(curves, reach, out_dir / "recall_by_distance.png")
                    if curves else None)
    for name, made in (("loss.png", loss_png), ("recall_by_distance.png", distance_png)):
        if made is None:
            (out_dir / name).unlink(missing_ok=True)  # a plot of an earlier run would mislead

    markdown = render_report(cfg, metrics, loss_png, distance_png, run_dir, history)
    report_md = write_text_atomically(markdown, out_dir / "report.md")
    outputs = [p.relative_to(run_dir).as_posix() for p in (report_md, loss_png, distance_png) if p]
    return {"outputs": outputs,
            "rows": {"report_chars": len(markdown), "metrics": len(metrics.values)},
            "counters": {"unreadable_log_lines": bad_lines} if bad_lines else {}}


def main() -> None:
    from configs.schema import load_config_or_exit
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True, type=Path, help="the run folder, e.g. runs/tiny")
    args = parser.parse_args()
    from warehouse.run_lock import RunLocked, run_lock
    cfg = load_config_or_exit(args.config)
    try:
        with run_lock(args.run):
            result = build_report(cfg, args.run)
    except (RunLocked, FileNotFoundError, EvaluationsOutdated) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"report: {args.run / result['outputs'][0]}")


if __name__ == "__main__":
    main()
