"""Extraction scoring into the evaluate stage's tables, distance buckets, evaluation history, and
the report stage's markdown and plots from those rows."""
import json
from pathlib import Path

import pyarrow as pa
import pytest

from configs.schema import parse_config
from evaluation.extraction_quality import memory_gap
from evaluation.metrics import Figure, Metrics, distance_bucket, distance_buckets, metric_row, read_metrics
from evaluation.report import build_report, gap_section
from evaluation.stage import record_metrics
from warehouse.db import connect
from warehouse.shard_io import shard_path, write_parquet_atomically

CONFIG = {"name": "rep", "model": {"sequence_len": 64, "memory_slots": 16},
          "train": {"variants": ["window", "triplet", "raw", "full"]},
          "evaluate": {"ablations": ["no_memory", "shuffled", "spacy"]}}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ORACLE = [("a", "Mara Quell", "lives in", "Orvane", 30), ("a", "Mara Quell", "works at", "Tessaly Labs", 60),
          ("b", "Ilsa Brandt", "is a", "baker", 20), ("b", "Ilsa Brandt", "knows", "Mara Quell", 40)]
SPACY = [("a", "mara quell", "lived in", "Orvane.", 30),  # strict match after normalization
         ("a", "mara quell", "lived in", "Orvane.", 30),  # stated twice: one item, two rows
         ("a", "Mara Quell", "employs", "Tessaly Labs", 60),  # relaxed only
         ("b", "Ilsa Brandt", "is a", "baker", 300),  # matches, but stated after the recall
         ("b", "Ilsa Brandt", "likes", "tea", 50),  # wrong
         ("c", "Nobody", "is", "ungraded", 10)]  # no gold for doc c: not scored
RECALLS = [("a", "Mara Quell", "lives in", "Orvane", 500), ("b", "Ilsa Brandt", "is a", "baker", 200)]


def _metric(variant, ablation, metric, value, lo=None, hi=None, n=None, bucket=None):
    return metric_row(variant, ablation, metric, Figure(value, lo, hi, n), 300, bucket)


def _counts(variant, ablation, spans, docs=20, windows=40):
    return [_metric(variant, ablation, "windows", windows), _metric(variant, ablation, "documents", docs),
            _metric(variant, ablation, "recall_spans", spans)]


MODEL_ROWS = [_metric("window", "none", "bpb", 2.1, 2.0, 2.2, 20),
            _metric("window", "none", "recall_bpb", 6.25, 6.0, 6.5, 19),
            _metric("window", "none", "recall_acc", 0.05, 0.02, 0.11, 120),
            *_counts("window", "none", 120), _metric("window", "none", "positions", 64),
            _metric("window", "none", "compression", 0),
            _metric("raw", "none", "bpb", 2.0), _metric("raw", "none", "recall_acc", 0.07),
            _metric("raw", "none", "positions", 80),
            _metric("triplet", "none", "bpb", 1.8), _metric("triplet", "none", "recall_bpb", 1.5),
            _metric("triplet", "none", "recall_acc", 0.9, 0.84, 0.94, 120), *_counts("triplet", "none", 120),
            _metric("triplet", "none", "positions", 80),
            _metric("triplet", "none", "compression", 12.5),
            _metric("triplet", "no_memory", "recall_acc", 0.1, 0.0, 0.5, 35), *_counts("triplet", "no_memory", 35),
            _metric("triplet", "shuffled", "bpb", 2.2), _metric("triplet", "shuffled", "recall_acc", 0.08),
            _metric("triplet", "spacy", "recall_acc", 0.4),
            _metric("window", "none", "recall_acc", 0.1, 0.05, 0.2, 40, (96, 112)),
            _metric("window", "none", "recall_acc", 0.0, 0.0, 0.2, 20, (128, 160)),
            _metric("triplet", "none", "recall_acc", 0.95, 0.9, 0.99, 40, (96, 112)),
            _metric("triplet", "none", "recall_acc", 0.85, 0.6, 0.95, 20, (128, 160))]


def make_run(tmp_path: Path, cfg=None, model_rows=MODEL_ROWS) -> Path:
    """A run folder as the evaluate stage leaves it: model rows + extraction rows in `metrics`."""
    run = tmp_path / "rep"
    run.mkdir()
    con = connect(run)
    tid = 0
    for extractor, triplets in (("oracle", ORACLE), ("spacy", SPACY)):
        for doc, s, r, o, end in triplets:
            con.execute("INSERT INTO triplets VALUES (?, ?, 0, ?, ?, ?, false, 0, ?, NULL, ?)",
                        [tid, doc, s, r, o, end, extractor])
            tid += 1
    con.close()
    recall = [{"doc_id": d, "char_start": start, "char_end": start + len(v), "subject": s,
               "relation": r, "value": v, "stated_char_end": 10, "distance_words": 100}
              for d, s, r, v, start in RECALLS]
    write_parquet_atomically(pa.Table.from_pylist(recall), shard_path(run, "recall", 0))
    logs = {"window": [(0, 5.0), (10, 4.0), (20, 3.5)], "triplet": [(0, 5.0), (10, 3.0), (10, 2.9)]}
    for variant, points in logs.items():
        lines = [json.dumps({"step": s, "loss": l, "lr": 0.01, "tokens_per_s": 1e4, "seconds": 1.0})
                 for s, l in points]
        (run / "train").mkdir(exist_ok=True)
        (run / "train" / f"{variant}.jsonl").write_text("\n".join(lines) + '\n{"step": 30, "lo')
    # an older evaluation, superseded by the one recorded after it
    record_metrics(cfg or parse_config(CONFIG), run, [_metric("window", "none", "bpb", 9.9)])
    record_metrics(cfg or parse_config(CONFIG), run, model_rows)
    return run


def test_distance_buckets_are_fixed_and_count_hits():
    assert [distance_bucket(d) for d in (0, 15, 16, 63, 64, 79, 80, 127, 128, 159, 300, 1000)] == [
        (0, 16), (0, 16), (16, 32), (48, 64), (64, 80), (64, 80), (80, 96), (112, 128),
        (128, 160), (128, 160), (256, 320), (896, 1024)]
    pairs = [(10, True), (20, False), (70, True), (100, True), (100, False), (130, True), (300, False)]
    assert distance_buckets(pairs) == [(0, 16, 1, 1), (16, 32, 0, 1), (64, 80, 1, 1),
                                       (96, 112, 1, 2), (128, 160, 1, 1), (256, 320, 0, 1)]
    assert distance_buckets([]) == []


def test_report_tables_extraction_scores_and_plots(tmp_path):
    run = make_run(tmp_path)
    result = build_report(parse_config(CONFIG), run)
    md = (run / "report" / "report.md").read_text()
    assert result["outputs"] == ["report/report.md", "report/loss.png", "report/recall_by_distance.png"]
    assert result["rows"]["report_chars"] == len(md)
    assert result["counters"] == {"unreadable_log_lines": 2}
    for png in ("loss.png", "recall_by_distance.png"):
        data = (run / "report" / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
        assert f"]({png})" in md

    # newest evaluation's bpb (not 9.9), each figure with its interval and n
    assert ("| `window` | 2.100 [2.000, 2.200] n=20 | 6.250 [6.000, 6.500] n=19 | "
            "0.050 [0.020, 0.110] n=120 | 64 | 0.0 | 40 / 20 / 120 |") in md
    assert "| `raw` | 2.000 | – | 0.070 | 80 | – | – / – / – |" in md
    assert "| `triplet` | 1.800 | 1.500 | 0.900 [0.840, 0.940] n=120 | 80 | 12.5 | 40 / 20 / 120 |" in md
    assert "| `full` | not run |" in md
    assert "`kv`" not in md  # a registered variant this run does not train is not listed
    assert "| `no_memory` | removed | – | – | 0.100 [0.000, 0.500] n=35 (n=35 spans: too few to conclude) |" in md
    assert "| `shuffled` | another document's | 2.200 | – | 0.080 |" in md
    # trained with oracle memory: the oracle ablation is the unablated row
    assert "| `oracle` | oracle (gold) triplets: as trained, the `none` row | 1.800 | 1.500 | 0.900 [0.840, 0.940] n=120 |" in md
    assert "| `spacy` | spaCy triplets | – | – | 0.400 |" in md
    assert "Recall spans: the corpus's gold spans (`window` 120, `triplet` 120 evaluated)." in md
    # strict 2/4 (lives in, is a); relaxed 3/4; 1 of 2 recalled facts stated before the recall;
    # 5 extracted rows in the scored documents (one fact stated twice is one scored item)
    assert "| `spacy` | 2 | 4 | 5 | 0.500 | 0.500 | 0.500 | 0.750 | 0.750 | 0.750 | 0.500 |" in md
    # gap 0.9 - 0.4; expected 0.9 * 0.5 + 0.1 * 0.5 = 0.5 -> explains 0.4 / 0.5 of the gap
    assert "a gap of 0.500" in md and "would give 0.500" in md and "explain 80% of the gap" in md
    assert "recall_acc is 0.900 [0.840, 0.940] n=120 with oracle memory" in md
    assert "| distance (tokens) | window | triplet |" in md
    assert "| 96-112 | 0.100 n=40 | 0.950 n=40 |" in md
    assert "| 128-160 | 0.000 n=20 (n<30) | 0.850 n=20 (n<30) |" in md

    con = connect(run, read_only=True)
    current, older = [r[0] for r in con.execute(
        "SELECT evaluation_id FROM evaluations ORDER BY recorded_at DESC").fetchall()]
    assert f"evaluation `{current}`" in md and "the run holds 2" in md
    got = dict(con.execute("SELECT metric, value FROM extraction_scores WHERE extractor = 'spacy' "
                           "AND evaluation_id = ?", [current]).fetchall())
    n = dict(con.execute("SELECT metric, n FROM extraction_scores WHERE extractor = 'spacy' "
                         "AND evaluation_id = ?", [current]).fetchall())
    gap = dict(con.execute("SELECT metric, value FROM metrics WHERE variant = 'triplet' "
                           "AND ablation = 'gap:spacy' AND evaluation_id = ?", [current]).fetchall())
    buckets = con.execute("SELECT bucket_lo, bucket_hi, value, n FROM metrics WHERE variant = "
                          "'triplet' AND bucket_lo IS NOT NULL AND evaluation_id = ? "
                          "ORDER BY bucket_lo", [current]).fetchall()
    triplet_rows = con.execute("SELECT count(*) FROM triplets WHERE extractor = 'spacy' AND doc_id IN "
                               "(SELECT doc_id FROM triplets WHERE extractor = 'oracle')").fetchall()
    assert read_metrics(con, older).get("window", "none", "bpb") == 9.9  # history kept
    con.close()
    assert got["strict_f1"] == 0.5 and got["relaxed_r"] == 0.75 and got["recall_fact_coverage"] == 0.5
    assert got["extracted_triplets"] == triplet_rows[0][0] == 5
    assert n["strict_p"] == 4 and n["strict_r"] == 4 and n["recall_fact_coverage"] == 2
    assert gap["recall_acc_gap"] == pytest.approx(0.5)
    assert gap["gap_share_explained_by_extraction"] == pytest.approx(0.8)
    assert buckets == [(96, 112, 0.95, 40), (128, 160, 0.85, 20)]


def test_recording_the_same_evaluation_again_adds_no_rows(tmp_path):
    run = make_run(tmp_path)
    con = connect(run, read_only=True)
    before = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall() for t in
              ("evaluations", "metrics", "extraction_scores")}
    first = con.execute("SELECT evaluation_id FROM evaluations ORDER BY recorded_at").fetchall()
    con.close()
    again = record_metrics(parse_config(CONFIG), run, MODEL_ROWS)  # a cached rerun of the stage
    con = connect(run, read_only=True)
    after = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall() for t in before}
    newest = con.execute("SELECT evaluation_id FROM evaluations ORDER BY recorded_at DESC "
                         "LIMIT 1").fetchall()
    con.close()
    assert after == before and again["evaluation_id"] == first[-1][0] == newest[0][0]
    # the older evaluation recorded again becomes the current one
    older = record_metrics(parse_config(CONFIG), run, [_metric("window", "none", "bpb", 9.9)])
    con = connect(run, read_only=True)
    assert older["evaluation_id"] == first[0][0]
    assert read_metrics(con).get("window", "none", "bpb") == 9.9
    con.close()


def test_gap_when_trained_on_extracted_memory(tmp_path):
    cfg = parse_config({**CONFIG, "train": {"memory_source": "spacy"},
                        "evaluate": {"ablations": ["no_memory", "oracle"]}})
    run = make_run(tmp_path, cfg, MODEL_ROWS + [_metric("triplet", "oracle", "recall_acc", 0.95)])
    md = (run / build_report(cfg, run)["outputs"][0]).read_text()
    # the unablated triplet row now holds spaCy memory (0.9), the oracle ablation 0.95
    assert "| `none` | `spacy` (as trained) | 1.800 | 1.500 | 0.900 [0.840, 0.940] n=120 |" in md
    assert "with oracle memory and 0.900 [0.840, 0.940] n=120 with `spacy` memory, a gap of 0.050" in md
    assert "| `oracle` | oracle (gold) triplets | – | – | 0.950 |" in md


def test_a_gap_under_one_point_is_not_apportioned():
    cfg = parse_config(CONFIG)
    metrics = Metrics([_metric("triplet", "none", "recall_acc", 0.175),
                       _metric("triplet", "spacy", "recall_acc", 0.174),
                       _metric("triplet", "no_memory", "recall_acc", 0.013)])
    gap = memory_gap(cfg, metrics, "triplet", "spacy", {"recall_fact_coverage": 0.99})
    assert gap["recall_acc_gap"] == pytest.approx(0.001)
    assert "gap_share_explained_by_extraction" not in gap  # 0.1% of noise is not a share
    scores = [{"extractor": "spacy", "metric": m, "value": 0.99}
              for m in ("strict_r", "relaxed_r", "recall_fact_coverage")]
    rows = [_metric("triplet", "gap:spacy", m, v) for m, v in gap.items()]
    md = "\n".join(gap_section(Metrics(rows, scores), ["triplet"]))
    assert "too small to apportion" in md and "explain" not in md


def test_report_on_an_empty_warehouse_says_not_run(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    connect(run).close()
    result = build_report(parse_config(CONFIG), run)
    md = (run / "report" / "report.md").read_text()
    assert result["outputs"] == ["report/report.md"]
    assert md.count("not run") == len(CONFIG["train"]["variants"]) + 5  # each variant and ablation
    assert "nothing to score" in md and "No training logs" in md
    assert not (run / "report" / "loss.png").exists()


def test_report_without_a_warehouse_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the pipeline first"):
        build_report(parse_config(CONFIG), tmp_path / "nothing")


def test_recall_spans_of_the_real_text_heuristic_are_said_not_to_be_gold():
    from evaluation.report import variants_section
    metrics = Metrics([_metric("triplet", "none", "recall_acc", 0.4, 0.3, 0.5, 80),
                       *_counts("triplet", "none", 80)])
    real_text = parse_config({**CONFIG, "ingest": {"source": "fineweb"}, "extract": {"backends": ["spacy"]},
                              "train": {"memory_source": "spacy"}})
    real = "\n".join(variants_section(real_text, metrics))
    assert "Recall spans: **not gold**" in real and "real-text heuristic of shards/recall.py" in real
    assert "(`triplet` 80 evaluated)" in real
    assert "0.400 [0.300, 0.500] n=80 (n=80 spans: too few to conclude)" in real
    gold = "\n".join(variants_section(parse_config(CONFIG), metrics))
    assert "the corpus's gold spans" in gold and "not gold" not in gold


def test_model_rows_carry_intervals_sample_sizes_and_bucket_columns():
    from evaluation.intervals import wilson
    from evaluation.metrics import model_rows
    result = {"step": 7, "bpb": 2.0, "bpb_ci": [1.9, 2.1], "recall_acc": 2 / 3,
              "recall_acc_ci": list(wilson(2, 3)), "documents": 5, "recall_spans": 3, "windows": 9,
              "recall_acc_by_distance": [[70, True], [75, False], [10, True]]}
    rows = {(r["metric"], r["bucket_lo"]): r for r in model_rows("triplet", "none", result)}
    assert rows[("bpb", None)]["n"] == 5 and rows[("bpb", None)]["ci_lo"] == 1.9
    assert rows[("recall_acc", None)]["n"] == 3 and rows[("recall_acc", None)]["bucket_hi"] is None
    assert rows[("windows", None)]["value"] == 9 and rows[("windows", None)]["n"] is None
    bucket = rows[("recall_acc", 64)]
    assert (bucket["bucket_hi"], bucket["value"], bucket["n"]) == (80, 0.5, 2)
    assert (bucket["ci_lo"], bucket["ci_hi"]) == wilson(1, 2)
    assert Metrics(rows.values()).distance_curves(["triplet"]) == {
        "triplet": [(0, 16, 1.0, 1), (64, 80, 0.5, 2)]}


def _captured_figure(monkeypatch, plot, *args):
    """The matplotlib figure `plot` draws (instead of writing the PNG)."""
    import evaluation.report as report
    figures = []
    monkeypatch.setattr(report, "_save_figure", lambda fig, path: figures.append(fig) or path)
    plot(*args)
    (fig,) = figures
    return fig


def test_recall_plot_marks_each_variant_and_greys_small_points(monkeypatch, tmp_path):
    from evaluation.report import MIN_POINT_N, plot_recall_by_distance, variant_color, variant_marker
    curves = {"window": [(0, 16, 0.2, 500), (16, 32, 0.1, MIN_POINT_N - 1)],
              "triplet": [(0, 16, 0.9), (16, 32, 0.8)]}  # no n: drawn as measured
    fig = _captured_figure(monkeypatch, plot_recall_by_distance, curves, 80, tmp_path / "r.png")
    drawn = {}
    for line in fig.axes[0].lines:
        drawn.setdefault(line.get_marker(), []).append((line.get_color(), list(line.get_xdata())))
    assert variant_marker("window") != variant_marker("triplet")
    # the curve with its marker, then the point with n < MIN_POINT_N drawn grey over it
    assert drawn[variant_marker("window")] == [(variant_color("window"), [8, 24]), ("lightgrey", [24])]
    assert drawn[variant_marker("triplet")] == [(variant_color("triplet"), [8, 24])]
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["500", str(MIN_POINT_N - 1)]  # n beside each point that has one


def test_loss_plot_smooths_over_the_raw_curve_on_a_log_axis(monkeypatch, tmp_path):
    from evaluation.report import plot_losses, smoothed
    assert smoothed([2.0] * 5, 3) == pytest.approx([2.0] * 5)  # bias-corrected from the start
    noisy = [3.0 + (0.5 if i % 2 else -0.5) for i in range(200)]
    assert max(smoothed(noisy, 10)[50:]) - min(smoothed(noisy, 10)[50:]) < 0.2
    steps = list(range(200))
    curves = {"window": (steps, [10.0] + noisy[1:]), "triplet": (steps, [x - 1 for x in noisy])}
    ax = _captured_figure(monkeypatch, plot_losses, curves, tmp_path / "l.png").axes[0]
    assert ax.get_yscale() == "log"
    raw, smooth = ax.lines[0], ax.lines[1]
    assert raw.get_alpha() < 0.5 and smooth.get_alpha() is None
    # the first step's 10.0 does not set the axis: the smoothed curves past their first tenth do
    assert ax.get_ylim()[1] < 4


def test_key_tokens_section_gives_each_variants_longppl_and_the_selection():
    from evaluation.metrics import model_rows
    from evaluation.report import key_tokens_section
    rows = []
    for variant, ppl in (("window", 9.5), ("triplet", 2.25), ("full", 1.5)):
        rows += model_rows(variant, "none", {
            "longppl": ppl, "longppl_ci": [ppl - 0.5, ppl + 0.5], "key_tokens": 412,
            "key_documents": 37, "key_targets": 9000, "key_recall_share": 0.75})
    text = "\n".join(key_tokens_section(parse_config(CONFIG), Metrics(rows)))
    assert "412 of 9000 val targets, 75.0% of them recall tokens" in text
    assert "| `triplet` | 2.250 [1.750, 2.750] n=37 | 412 |" in text
    assert "`raw`" not in text  # not scored: not listed
    assert "its figure is favoured" in text
    none = "\n".join(key_tokens_section(parse_config({**CONFIG, "train": {"variants": ["window"]}}),
                                        Metrics([])))
    assert "this run trains no `full`" in none
