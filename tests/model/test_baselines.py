"""The equal-slot baselines of model/variants.py: exactly which slots / tokens each puts before a
window, the shuffled ablation built from another document, and that each variant's training reads
only the settings its table entry lists."""
import numpy as np
import pytest
import torch

from configs.schema import ConfigError, parse_config
from model.dataloader import TrainingDocument, make_batch
from model.gpt import GPT
from model.memory import memory_rows, text_slot
from model.variants import (VARIANT_SETTINGS, VARIANTS, WindowSpec, gpt_config, triplet_compression,
                            window_spec)

SEPARATOR, NEGATION = (59,), (77, 78)
# four facts: (clause_pos, token_pos, subject, relation, object, negated)
FACTS = [(2, 6, 1, 2, 3, False), (10, 15, 4, 5, 6, False), (20, 24, 7, 8, 9, True),
         (30, 36, 11, 12, 13, False)]


def fact_row(clause_pos, token_pos, s, r, o, negated):
    return {"clause_pos": clause_pos, "token_pos": token_pos, "subject_tokens": [s],
            "relation_tokens": [r], "object_tokens": [o], "subject_id": -1, "relation_id": -1,
            "object_id": -1, "negated": negated, "functional": False}


def document(offset=1000, n=60, facts=FACTS) -> TrainingDocument:
    return TrainingDocument(f"d{offset}", np.arange(offset, offset + n), np.zeros(n, dtype=bool),
                            [], memory_rows(fact_row(*f) for f in facts))


def spec(variant, slots=2, **kwargs) -> WindowSpec:
    return WindowSpec(variant, 8, slots, 16, chunk_tokens=kwargs.pop("chunk_tokens", 5),
                      fact_separator=SEPARATOR, negation=NEGATION, **kwargs)


def batch_at(variant, window_start=32, docs=None, **kwargs):
    docs = docs or [document()]
    return make_batch(docs, np.array([[0, window_start]]), spec(variant, **kwargs))


def slot_parts(memory, row=0):
    """[(subject, relation, object, age)] of a batch row's valid slots, padding dropped."""
    out = []
    for m in range(memory.slots):
        if memory.mask[row, m]:
            parts = [tuple(t for t in getattr(memory, p)[row, m].tolist() if t >= 0)
                     for p in ("subject", "relation", "object")]
            out.append((*parts, int(memory.age[row, m])))
    return out


def test_text_slot_cuts_a_stretch_into_three_consecutive_parts():
    slot = text_slot(range(100, 107), age=3)
    assert (slot.subject, slot.relation, slot.object) == ((100, 101, 102), (103, 104, 105), (106,))
    assert slot.ids == (-1, -1, -1) and not slot.negated and slot.age == 3
    assert text_slot([5], 0)[:3] == ((5,), (), ())


def test_pooled_slots_are_the_newest_chunks_of_the_evicted_tokens():
    b = batch_at("pooled", chunk_tokens=5)
    # window at 32: chunks [27, 32) and [22, 27), newest 2, oldest first; age = 32 - chunk end
    assert slot_parts(b.memory) == [((1022, 1023), (1024, 1025), (1026,), 5),
                                    ((1027, 1028), (1029, 1030), (1031,), 0)]
    assert b.prefix_len.tolist() == [0] and b.inputs[0].tolist() == list(range(1032, 1040))
    # fewer evicted tokens than M chunks: a short first chunk, from the document start
    early = batch_at("pooled", window_start=7, slots=4, chunk_tokens=5)
    assert [p[:3] for p in slot_parts(early.memory)] == [((1000,), (1001,), ()),
                                                         ((1002, 1003), (1004, 1005), (1006,))]
    assert batch_at("pooled", window_start=0).memory.mask.sum() == 0
    with pytest.raises(ValueError, match="needs chunk_tokens"):
        batch_at("pooled", chunk_tokens=0)


def test_sentences_are_the_stating_clauses_of_the_kept_triplets():
    b = batch_at("sentences")  # the policy keeps the facts stated at 15 and 24
    assert slot_parts(b.memory) == [((1010, 1011), (1012, 1013), (1014,), 17),
                                    ((1020, 1021), (1022, 1023), (), 8)]
    triplet = batch_at("triplet")
    assert [p[2] for p in slot_parts(triplet.memory)] == [(6,), (9,)]  # the same two facts
    # a clause stating two kept triplets is one slot
    twice = document(facts=[(10, 15, 4, 5, 6, False), (10, 15, 4, 5, 7, False)])
    assert len(slot_parts(batch_at("sentences", docs=[twice]).memory)) == 1


def test_text_writes_the_kept_facts_newest_first_cut_to_m_tokens():
    facts = [4, 5, 6, *SEPARATOR, 7, *NEGATION, 8, 9, *SEPARATOR]  # oldest to newest
    uncut = batch_at("text", slots=2, text_uncut=True)
    assert uncut.inputs[0].tolist() == facts + list(range(1032, 1040))
    assert uncut.prefix_len.tolist() == [len(facts)] and (uncut.targets[0, :len(facts)] == -1).all()
    assert uncut.memory is None
    cut = batch_at("text", slots=2)
    assert cut.inputs[0, :2].tolist() == [9, *SEPARATOR] and cut.prefix_len.tolist() == [2]
    four = batch_at("text", slots=4, window_start=40)  # M = 4 facts, cut to 4 tokens
    assert four.inputs[0, :4].tolist() == [11, 12, 13, *SEPARATOR]
    assert spec("text", slots=2).context_len == 8 + 2
    assert spec("text", slots=2, text_uncut=True).context_len == 8 + 2 * (3 * 16 + 1 + 2)


def test_selected_raw_is_the_clause_tokens_of_the_kept_triplets_newest_first():
    b = batch_at("selected_raw", slots=2)
    assert b.inputs[0, :2].tolist() == [1022, 1023] and b.prefix_len.tolist() == [2]
    eight = batch_at("selected_raw", slots=8, window_start=40)  # keeps 15, 24, 36; 8 newest tokens
    assert eight.inputs[0, :8].tolist() == [1022, 1023, 1030, 1031, 1032, 1033, 1034, 1035]
    raw = batch_at("raw", slots=2)
    assert raw.inputs[0, :2].tolist() == [1030, 1031]  # the last M tokens, not the best M
    assert batch_at("selected_raw", window_start=5).prefix_len.tolist() == [0]


def test_kv_reads_the_triplet_memory_and_injects_it_as_keys():
    kv, triplet = batch_at("kv"), batch_at("triplet")
    assert slot_parts(kv.memory) == slot_parts(triplet.memory)
    cfg = parse_config({"name": "x", "train": {"variants": ["kv"]},
                        "model": {"depth": 4, "n_embd": 64, "n_head": 2, "kv_layer_stride": 3}})
    model_cfg = gpt_config(cfg, "kv", 300)
    assert model_cfg.memory_injection == "kv" and model_cfg.memory_key_layers == (0, 3)
    assert model_cfg.sequence_len == cfg.model.sequence_len  # no positions before the window
    assert gpt_config(cfg, "triplet", 300).memory_injection == "positions"


@pytest.mark.parametrize("variant", ["triplet", "pooled", "sentences", "text", "selected_raw", "kv"])
def test_shuffled_builds_the_context_from_another_document(variant):
    own, other = document(1000), document(2000, facts=[(f[0], f[1], 100 + f[2], 100 + f[3],
                                                        100 + f[4], f[5]) for f in FACTS])
    shuffled = TrainingDocument(own.doc_id, own.tokens, own.recall, [], own.memory,
                                memory_donor=other)
    b = batch_at(variant, docs=[shuffled])
    donor = batch_at(variant, docs=[other])
    assert b.inputs[0, b.prefix_len[0]:].tolist() == list(range(1032, 1040))  # its own window
    assert b.inputs[0, :b.prefix_len[0]].tolist() == donor.inputs[0, :donor.prefix_len[0]].tolist()
    if b.memory is not None:
        assert slot_parts(b.memory) == slot_parts(donor.memory) != slot_parts(batch_at(variant).memory)


def test_triplet_compression_is_evicted_tokens_per_kept_slot():
    # windows at 0, 8, ..., 56 (224 evicted tokens in all) keep 0, 1, 2, 3, 3, 4, 4, 4 slots
    assert triplet_compression([document()], 8, 4) == pytest.approx(224 / 21)
    assert triplet_compression([document(facts=[])], 8, 4) == 0.0


def test_baseline_settings_are_validated_at_config_load():
    with pytest.raises(ConfigError, match=r"train.chunk_tokens: at most 48"):
        parse_config({"name": "x", "train": {"chunk_tokens": 49}})
    with pytest.raises(ConfigError, match=r"model.triplet_encoder: the pooled and sentences"):
        parse_config({"name": "x", "train": {"variants": ["pooled"]},
                      "model": {"triplet_encoder": "vocab"}})
    with pytest.raises(ConfigError, match=r"model.kv_layer_stride"):
        parse_config({"name": "x", "model": {"kv_layer_stride": 0}})


# the alternative value of every setting only some variants read
CHANGED = {"model.memory_slots": 3, "model.triplet_encoder": "vocab", "model.id_buckets": 7,
           "model.memory_rope": "fixed", "model.kv_layer_stride": 2, "train.memory_source": "spacy",
           "train.full_context_cap": 12, "train.chunk_tokens": 6, "train.text_uncut": True}
BASE = {"model": {"depth": 2, "n_embd": 32, "n_head": 2, "sequence_len": 8, "memory_slots": 2,
                  "kv_layer_stride": 1, "attn_backend": "sdpa"},
        "train": {"full_context_cap": 16, "chunk_tokens": 5}}


def run_config(variant, change=None):
    data = {"name": "x", "model": dict(BASE["model"]), "train": {**BASE["train"], "variants": [variant]}}
    if change:
        section, name = change.split(".")
        data[section][name] = CHANGED[change]
    return parse_config(data)


def context_and_logits(cfg, variant):
    """What the variant's model computes on one window: its batch and its logits."""
    windows = np.array([[0, 32], [0, 40]])
    s = window_spec(cfg, variant)
    batch = make_batch([document()], windows, WindowSpec(**{**s.__dict__, "fact_separator": SEPARATOR,
                                                            "negation": NEGATION}))
    torch.manual_seed(0)
    model = GPT(gpt_config(cfg, variant, 2100))
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised projections would hide every change
            p.normal_(0.0, 0.3)
        return batch, model(batch.inputs, memory=batch.memory)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_variant_is_unchanged_by_the_settings_it_does_not_list(variant):
    """The settings a variant does not list leave its batches and its model's logits as they
    are, so leaving them out of its train stage's cache key (training_settings) is right. (Which
    extractor's rows are loaded, train.memory_source, happens before the batch: the loader.)"""
    base_batch, base_logits = context_and_logits(run_config(variant), variant)
    for setting in VARIANT_SETTINGS:
        if setting in VARIANTS[variant].settings:
            continue
        batch, logits = context_and_logits(run_config(variant, setting), variant)
        assert torch.equal(batch.inputs, base_batch.inputs), setting
        torch.testing.assert_close(logits, base_logits, atol=0, rtol=0, msg=setting)
