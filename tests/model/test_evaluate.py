"""Evaluation of tiny trained checkpoints: finite metrics per variant, ablations, clear errors."""
import json
import math

import pytest

from configs.schema import load_config
from model.evaluate import evaluate_variant, main as evaluate_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_run_builder, toy_trainer):
    """Every variant trained for a few steps on the toy run (in-process, one process)."""
    config, runs = toy_run_builder(tmp_path_factory.mktemp("eval"), 40, steps=6, checkpoint_every=3)
    toy_trainer(config, runs, ("window", "triplet", "raw", "full"))
    return load_config(config), runs / "toy", config


def test_every_variant_gets_finite_metrics(trained):
    cfg, run_dir, _ = trained
    results = {v: evaluate_variant(cfg, run_dir, v) for v in ("window", "triplet", "raw", "full")}
    for variant, r in results.items():
        assert r["step"] == 6 and r["checkpoint"] == f"checkpoints/{variant}/step_000006"
        for key in ("bpb", "recall_bpb", "nats_per_token", "recall_acc", "positions"):
            assert math.isfinite(r[key]), (variant, key)
        assert r["windows"] == 16 and r["recall_tokens"] == 8 and r["recall_spans"] == 8
        assert all(d == 22 for d, _ in r["recall_acc_by_distance"])  # value at 27, stated at 5
        # 40 docs, 20% val: 8 documents of 2 windows, one recall span each
        assert r["documents"] == r["recall_documents"] == 8
        lo, hi = r["recall_acc_ci"]
        assert lo <= r["recall_acc"] <= hi and hi - lo > 0.2  # 8 spans: a wide Wilson interval
        for key in ("bpb", "recall_bpb"):
            lo, hi = r[f"{key}_ci"]
            assert lo <= r[key] <= hi and lo < hi, (variant, key)
    # same targets for every variant; the context differs
    assert len({r["tokens"] for r in results.values()}) == 1
    assert results["window"]["positions"] == 16
    assert results["raw"]["positions"] == 16 + 4 / 2  # the second window of each document
    assert results["full"]["positions"] == 16 + 16 / 2
    assert results["triplet"]["positions"] == 16 + 1 / 2  # one fact in memory there
    assert results["triplet"]["compression"] == 16.0  # 16 evicted tokens per slot
    assert results["window"]["compression"] is None


def test_intervals_come_from_the_evaluated_spans_and_documents(trained):
    from evaluation.intervals import wilson
    from model.evaluate import Totals
    cfg, run_dir, _ = trained
    r = evaluate_variant(cfg, run_dir, "triplet")
    hits = sum(ok for _, ok in r["recall_acc_by_distance"])
    assert r["recall_acc"] == hits / r["recall_spans"]
    assert r["recall_acc_ci"] == list(wilson(hits, r["recall_spans"]))
    assert evaluate_variant(cfg, run_dir, "triplet")["bpb_ci"] == r["bpb_ci"]  # fixed seed
    empty = Totals().result()
    assert empty["documents"] == 0 and empty["bpb"] is None and empty["bpb_ci"] is None
    assert empty["recall_acc_ci"] is None


def test_memory_ablations_change_the_triplet_results(trained):
    cfg, run_dir, _ = trained
    base = evaluate_variant(cfg, run_dir, "triplet")
    for memory in ("shuffled", "none", "spacy"):
        r = evaluate_variant(cfg, run_dir, "triplet", memory=memory)
        assert r["memory"] == memory and r["tokens"] == base["tokens"]
        assert r["bpb"] != base["bpb"], memory
    assert evaluate_variant(cfg, run_dir, "triplet", memory="oracle")["bpb"] == base["bpb"]
    assert evaluate_variant(cfg, run_dir, "triplet", memory="none")["compression"] is None
    assert evaluate_variant(cfg, run_dir, "triplet", step=3)["step"] == 3


def test_cli_errors_are_one_line(trained, capsys):
    _, run_dir, config = trained
    args = ["--config", str(config), "--runs-dir", str(run_dir.parent)]
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(args + ["--variant", "window", "--memory", "shuffled"])
    assert exit_info.value.code == 1
    assert "--memory shuffled does not apply to variant 'window'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_main(args + ["--variant", "window", "--step", "5"])
    assert "no step 5 of variant 'window' (run the train stage first)" in capsys.readouterr().err


def test_cli_prints_a_summary_and_pairs_on_request(trained, capsys):
    _, run_dir, config = trained
    evaluate_main(["--run", str(run_dir), "--config", str(config), "--variant", "triplet"])
    out = capsys.readouterr()
    assert out.err == ""  # a folder named by --run is not announced
    lines = out.out.splitlines()
    assert lines[0] == "triplet, memory as_trained: checkpoints/triplet/step_000006"
    assert any(line.split() == ["recall_spans", "8"] for line in lines)
    assert lines[-1].strip().startswith("recall_acc_by_distance: 8 (distance, correct) pairs")
    assert len(lines) < 20
    evaluate_main(["--run", str(run_dir), "--config", str(config), "--variant", "triplet", "--pairs"])
    pairs = json.loads(capsys.readouterr().out)["recall_acc_by_distance"]
    assert len(pairs) == 8 and all(distance == 22 for distance, _ in pairs)
