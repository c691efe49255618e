"""All eight stages on a very small config, through the real flow: shards, torchrun training,
evaluation with ablations, the report, and a second run that is cached throughout."""
import json

import yaml

from warehouse.db import connect

VERY_SMALL = {
    "name": "e2e",
    "ingest": {"source": "synthetic", "docs_per_shard": 30,
               "synthetic": {"num_docs": 60, "min_distance": 40, "max_distance": 80}},
    "tokenizer": {"vocab_size": 320},
    "extract": {"backends": ["oracle", "spacy"]},
    "model": {"depth": 1, "n_embd": 32, "n_head": 2, "sequence_len": 32, "memory_slots": 8},
    "train": {"variants": ["window", "triplet", "raw", "full"], "memory_source": "oracle",
              "steps": 4, "device_batch_size": 4, "checkpoint_every": 2, "full_context_cap": 64},
    "evaluate": {"ablations": ["no_memory", "shuffled", "spacy"], "max_windows": 64},
}


def test_all_stages_then_everything_cached(tmp_path, prefect_harness):
    from flows.pipeline import pipeline
    config = tmp_path / "e2e.yaml"
    config.write_text(yaml.safe_dump(VERY_SMALL))
    runs = tmp_path / "runs"
    summary = pipeline(config=str(config), runs_dir=str(runs))
    stages = ["ingest", "tokenizer", "extract", "canonicalize", "shards", "train-window",
              "train-triplet", "train-raw", "train-full", "evaluate", "report"]
    assert list(summary) == stages
    assert {v["status"] for v in summary.values()} == {"ran"}

    run = runs / "e2e"
    for kind in ("docs", "triplets", "tokens", "memory"):
        assert sorted(p.name for p in (run / kind).glob("shard_*.parquet")) == [
            "shard_00000.parquet", "shard_00001.parquet"], kind
    for variant in ("window", "triplet", "raw", "full"):
        assert (run / "checkpoints" / variant / "step_000004" / "model.safetensors").is_file()
        assert len((run / "train" / f"{variant}.jsonl").read_text().splitlines()) == 4
    evals = json.loads((run / "eval" / "triplet.json").read_text())
    assert set(evals) == {"none", "no_memory", "shuffled", "spacy"}

    con = connect(run, read_only=True)
    rows = con.execute("SELECT variant, ablation, metric, value FROM metrics "
                       "WHERE metric IN ('bpb', 'recall_acc')").fetchall()
    extraction = con.execute("SELECT metric FROM extraction_scores WHERE extractor = 'spacy'"
                             ).fetchall()
    assert con.execute("SELECT count(*) FROM evaluations").fetchall() == [(1,)]
    con.close()
    got = {(v, a, m) for v, a, m, _ in rows}
    for variant in ("window", "triplet", "raw", "full"):
        assert (variant, "none", "bpb") in got and (variant, "none", "recall_acc") in got
    for ablation in ("no_memory", "shuffled", "spacy"):
        assert ("triplet", ablation, "recall_acc") in got
    assert all(0 <= value < 50 for _, _, _, value in rows)
    assert "strict_f1" in {m for (m,) in extraction}

    report = (run / "report" / "report.md").read_text()
    assert "![" in report and (run / "report" / "loss.png").is_file()
    bpb_window = next(v for var, a, m, v in rows if (var, a, m) == ("window", "none", "bpb"))
    assert f"{bpb_window:.3f}" in report  # the report shows the warehouse's figures

    again = pipeline(config=str(config), runs_dir=str(runs))
    assert {v["status"] for v in again.values()} == {"cached"}
