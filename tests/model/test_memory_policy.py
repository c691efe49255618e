"""The memory policy (DESIGN §4): evicted only, dedupe, upsert, polarity, newest M, age; collation."""
import torch

from model.memory import build_window_memory, collate_memory, memory_rows

# relation ids: 0 = "lives in" (functional), 1 = "knows" (many-valued)
LIVES, KNOWS = 0, 1


def row(pos, s, r, o, negated=False, functional=None, ids=True):
    functional = (r == LIVES) if functional is None else functional
    return {"token_pos": pos, "clause_pos": pos, "subject_tokens": [100 + s], "relation_tokens": [200 + r],
            "object_tokens": [300 + o],
            "subject_id": s if ids else -1, "relation_id": r if ids else -1,
            "object_id": o if ids else -1, "negated": negated, "functional": functional}


def facts(slots):
    return [(s.subject[0] - 100, s.relation[0] - 200, s.object[0] - 300, s.negated) for s in slots]


def test_only_evicted_triplets_with_their_age():
    rows = memory_rows([row(10, 1, KNOWS, 2), row(20, 1, KNOWS, 3), row(21, 1, KNOWS, 4)])
    slots = build_window_memory(rows, window_start=20, slots=8)
    assert facts(slots) == [(1, KNOWS, 2, False), (1, KNOWS, 3, False)]
    assert [s.age for s in slots] == [10, 0]
    assert build_window_memory(rows, window_start=9, slots=8) == []


def test_identical_triplets_are_deduplicated_keeping_the_newest():
    rows = memory_rows([row(5, 1, KNOWS, 2), row(15, 1, KNOWS, 2), row(10, 1, KNOWS, 3)])
    slots = build_window_memory(rows, window_start=30, slots=8)
    assert facts(slots) == [(1, KNOWS, 3, False), (1, KNOWS, 2, False)]
    assert [s.age for s in slots] == [20, 15]  # the copy stated at 15 survives


def test_functional_relation_upserts_but_many_valued_does_not():
    rows = memory_rows([row(5, 1, LIVES, 2), row(9, 1, KNOWS, 7), row(12, 1, LIVES, 3),
                        row(14, 1, KNOWS, 8), row(16, 4, LIVES, 2)])
    slots = build_window_memory(rows, window_start=20, slots=8)
    # person 1 moved from 2 to 3; both "knows" stay; person 4's home is separate
    assert facts(slots) == [(1, KNOWS, 7, False), (1, LIVES, 3, False), (1, KNOWS, 8, False),
                            (4, LIVES, 2, False)]
    # before the move the old value is the memory
    assert facts(build_window_memory(rows, window_start=11, slots=8)) == [
        (1, LIVES, 2, False), (1, KNOWS, 7, False)]


def test_negated_triplets_keep_their_polarity_and_replace_nothing():
    rows = memory_rows([row(5, 1, LIVES, 2), row(8, 1, LIVES, 3, negated=True)])
    assert facts(build_window_memory(rows, 10, 8)) == [(1, LIVES, 2, False), (1, LIVES, 3, True)]
    # a later negation of the same fact wins over the earlier statement of it
    rows = memory_rows([row(5, 1, LIVES, 2), row(8, 1, LIVES, 2, negated=True)])
    assert facts(build_window_memory(rows, 10, 8)) == [(1, LIVES, 2, True)]


def test_identity_falls_back_to_tokens_without_canonical_ids():
    rows = memory_rows([row(5, 1, LIVES, 2, ids=False), row(8, 1, LIVES, 3, ids=False),
                        row(9, 5, LIVES, 3, ids=False)])
    assert facts(build_window_memory(rows, 10, 8)) == [(1, LIVES, 3, False), (5, LIVES, 3, False)]


def test_newest_m_slots_in_chronological_order():
    rows = memory_rows([row(pos, 1, KNOWS, pos) for pos in (30, 10, 20, 40, 50)])
    slots = build_window_memory(rows, window_start=45, slots=2)
    assert facts(slots) == [(1, KNOWS, 30, False), (1, KNOWS, 40, False)]
    assert [s.age for s in slots] == [15, 5]
    assert build_window_memory(rows, window_start=45, slots=0) == []


def test_collate_pads_with_minus_one_and_masks_empty_slots():
    rows = memory_rows([{**row(3, 1, KNOWS, 2), "object_tokens": [7, 8, 9]},
                        row(4, 1, LIVES, 2, negated=True)])
    windows = [build_window_memory(rows, 10, 3), [], build_window_memory(rows, 3, 3)]
    mem = collate_memory(windows, slots=3, max_surface_len=2)
    assert mem.subject.shape == (3, 3, 2) and mem.ids.shape == (3, 3, 3)
    assert mem.mask.tolist() == [[True, True, False], [False] * 3, [True, False, False]]
    assert mem.object[0, 0].tolist() == [7, 8]  # cut to max_surface_len
    assert mem.object[0, 1].tolist() == [302, -1]
    assert (mem.subject[1] == -1).all() and (mem.ids[1] == -1).all()
    assert mem.negated[0].tolist() == [False, True, False]
    assert mem.age[0].tolist() == [7, 6, 0] and mem.age.dtype == torch.long
    assert mem.ids[0, 1].tolist() == [1, LIVES, 2]
