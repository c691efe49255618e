"""The recall probe: every span classified once, and the kinds mean what they say."""
import pytest

from configs.schema import load_config
from model.evaluate import evaluate_variant
from model.memory import Slot
from research.probe_recall import KINDS, classify, format_table, probe
from model.train import main as train_main


def slot(subject, relation, obj, negated=False) -> Slot:
    return Slot((subject,), (relation,), tuple(obj), (-1, -1, -1), negated, 10)


SLOTS = [slot(1, 50, [150, 151]), slot(1, 51, [160]), slot(2, 50, [170]), slot(3, 52, [180]),
         slot(2, 51, [190], negated=True)]


def test_classify_names_what_the_first_guessed_token_points_at():
    value = (150, 151)
    assert classify(SLOTS, value, True, 150) == ("correct", SLOTS[0])
    assert classify(SLOTS, value, False, 150)[0] == "first_token_only"
    assert classify(SLOTS, value, False, 170)[0] == "same_relation_other_subject"
    assert classify(SLOTS, value, False, 160)[0] == "same_subject_other_relation"
    assert classify(SLOTS, value, False, 180)[0] == "other_slot"
    assert classify(SLOTS, value, False, 999)[0] == "not_a_memory_value"
    assert classify(SLOTS, (190,), True, 190) == ("fact_not_in_memory", None)  # negated only
    assert classify(SLOTS, (7,), False, 7) == ("fact_not_in_memory", None)


@pytest.mark.parametrize("variant", ["triplet", "window"])
def test_probe_classifies_every_span_that_evaluate_counts(toy_run, variant):
    config, runs = toy_run(num_docs=60, facts=2)
    train_main(["--config", str(config), "--runs-dir", str(runs), "--variant", variant])
    result = probe(runs / "toy", variant)
    counts = result["kinds"]
    assert set(counts) <= set(KINDS)
    evaluated = evaluate_variant(load_config(config), runs / "toy", variant)
    assert sum(counts.values()) == evaluated["recall_spans"] > 0
    assert counts.get("correct", 0) == round(evaluated["recall_acc"] * evaluated["recall_spans"])
    # every toy fact is in its window's memory, and stated before its recall
    assert counts.get("fact_not_in_memory", 0) == 0
    assert sum(sum(c.values()) for c in result["by_relation"].values()) == sum(counts.values())
    table = format_table(result)
    assert table.splitlines()[-1].startswith(f"all | {sum(counts.values())} |")
