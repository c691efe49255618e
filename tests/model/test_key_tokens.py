"""Key tokens (LongPPL): the selection rule, the token positions it scores, and the figure."""
import json
import math

import numpy as np
import pytest

from configs.schema import load_config
from model.dataloader import load_training_documents
from model.evaluate import evaluate_variant
from model.key_tokens import (TokenLosses, find_key_tokens, longppl, main as key_tokens_main,
                              select_key_tokens, token_losses)

VARIANTS = ("window", "triplet", "full", "text")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_run_builder, toy_trainer):
    """A variant of each context kind (window, memory slots, raw prefix, text prefix), a few steps."""
    config, runs = toy_run_builder(tmp_path_factory.mktemp("keys"), 40, steps=6, checkpoint_every=6)
    toy_trainer(config, runs, VARIANTS)
    return load_config(config), runs / "toy", config


def losses(nats, doc_ids=None, positions=None, recall=None):
    n = len(nats)
    return TokenLosses(np.asarray(doc_ids or ["d"] * n, dtype=object),
                       np.asarray(positions or range(n)), np.zeros(n, dtype=np.int64),
                       np.asarray(nats, dtype=np.float64),
                       np.asarray(recall or [False] * n))


def test_a_key_token_gains_enough_from_the_long_context_and_is_predictable_with_it():
    long = losses([0.5, 0.5, 3.0, 1.0, 2.0])
    short = losses([3.0, 2.0, 6.0, 1.0, 4.0])
    # gains 2.5, 1.5, 3.0 (but loss 3.0 with it), 0, 2.0 (loss exactly at the bound)
    assert select_key_tokens(long, short, 2.0, 2.0).tolist() == [True, False, False, False, True]
    assert select_key_tokens(long, short, 1.0, 3.0).tolist() == [True, True, True, False, True]
    with pytest.raises(ValueError, match="different tokens"):
        select_key_tokens(long, losses([1.0] * 5, positions=[0, 1, 2, 3, 5]), 2.0, 2.0)


def test_longppl_is_exp_mean_nats_over_the_key_tokens_with_a_document_interval():
    scored = losses([1.0, 2.0, 3.0, 0.5], doc_ids=["a", "a", "b", "c"], positions=[4, 5, 4, 9])
    keys = {"documents": {"a": [5], "b": [4], "c": [9]}, "count": 3}
    r = longppl(scored, keys)
    assert r["longppl"] == pytest.approx(math.exp((2.0 + 3.0 + 0.5) / 3))
    assert r["key_tokens"] == 3 and r["key_documents"] == 3
    lo, hi = r["longppl_ci"]
    assert math.exp(0.5) <= lo <= r["longppl"] <= hi <= math.exp(3.0)
    # a key token the variant did not score: its windows are not the evaluator's
    with pytest.raises(ValueError, match="3 key tokens chosen but 2"):
        longppl(scored, {"documents": {"a": [5], "b": [7], "c": [9]}, "count": 3})
    assert longppl(scored, {"documents": {}, "count": 0})["longppl"] is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_scored_position_is_the_token_its_target_is(trained, variant):
    cfg, run_dir, _ = trained
    scored = token_losses(cfg, run_dir, variant)
    docs = {d.doc_id: d for d in load_training_documents(run_dir, "val", None)}
    tokens = np.asarray([docs[d].tokens[p] for d, p in zip(scored.doc_ids, scored.positions)])
    recall = np.asarray([docs[d].recall[p] for d, p in zip(scored.doc_ids, scored.positions)])
    assert np.array_equal(tokens, scored.targets)
    assert np.array_equal(recall, scored.recall) and recall.any()
    # the same targets and losses the evaluation sums
    r = evaluate_variant(cfg, run_dir, variant)
    assert len(scored.nats) == r["tokens"]
    assert scored.nats.mean() == pytest.approx(r["nats_per_token"], rel=1e-5)


def test_with_every_target_a_key_token_longppl_is_the_perplexity(trained):
    cfg, run_dir, _ = trained
    scored = token_losses(cfg, run_dir, "triplet")
    keys = {"documents": {}, "count": len(scored.nats)}
    for d, p in zip(scored.doc_ids, scored.positions):
        keys["documents"].setdefault(d, []).append(int(p))
    r = longppl(scored, keys)
    assert r["longppl"] == pytest.approx(math.exp(evaluate_variant(cfg, run_dir, "triplet")["nats_per_token"]))


def test_full_cut_to_the_window_is_the_short_pass(trained):
    cfg, run_dir, _ = trained
    long = token_losses(cfg, run_dir, "full")
    short = token_losses(cfg, run_dir, "full", {"full_context_cap": 0})
    assert np.array_equal(long.positions, short.positions)
    assert not np.allclose(long.nats, short.nats)  # the second windows see 16 earlier tokens
    keys = find_key_tokens(cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(
        update={"key_tokens": cfg.evaluate.key_tokens.model_copy(
            update={"min_gain": 1e-6, "max_loss": 100.0})})}), run_dir)
    gained = int(((short.nats - long.nats) >= 1e-6).sum())
    assert keys["count"] == gained > 0 and keys["scored"] == len(long.nats)
    assert sum(map(len, keys["documents"].values())) == gained


def test_cli_prints_the_selection_and_each_variant(trained, capsys):
    _, run_dir, config = trained
    key_tokens_main(["--run", str(run_dir), "--config", str(config), "--variant", "window"])
    out = capsys.readouterr().out
    assert out.startswith("key tokens: ") and "window" in out and "longppl" in out


def test_the_evaluate_stage_scores_every_variant_and_reuses_it(trained):
    from evaluation.stage import KEY_TOKENS_FILE, run_evaluate
    cfg, run_dir, _ = trained
    cfg = cfg.model_copy(update={
        "train": cfg.train.model_copy(update={"variants": list(VARIANTS)}),
        "evaluate": cfg.evaluate.model_copy(update={
            "ablations": [], "key_tokens": cfg.evaluate.key_tokens.model_copy(
                update={"min_gain": 0.01, "max_loss": 100.0})})})
    first = run_evaluate(cfg, run_dir)
    selection = json.loads((run_dir / KEY_TOKENS_FILE).read_text())
    assert first["rows"]["key_tokens"] == selection["count"] > 0
    assert first["counters"]["key_token_scorings"] == len(VARIANTS)
    for variant in VARIANTS:
        r = json.loads((run_dir / "eval" / f"{variant}.json").read_text())["none"]
        assert r["key_tokens"] == selection["count"] and math.isfinite(r["longppl"])
    again = run_evaluate(cfg, run_dir)
    assert again["counters"] == {"evaluations_reused": len(VARIANTS), "key_token_scorings": 0}
    # without `full` there is no evaluator: no key tokens, and no stale figures kept
    no_full = cfg.model_copy(update={"train": cfg.train.model_copy(update={"variants": ["window"]})})
    run_evaluate(no_full, run_dir)
    r = json.loads((run_dir / "eval" / "window.json").read_text())["none"]
    assert not any(k.startswith(("longppl", "key_")) for k in r)
