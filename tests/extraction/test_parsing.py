"""parse_llm_output: each repair, each drop reason, and a seeded fuzz run that must never raise."""
import json
import random
import time

from extraction.parsing import MAX_CHARS, MAX_DEPTH, MAX_ERRORS, parse_llm_output

ITEMS = [
    {"subject": "Mara Quell", "relation": "works at", "object": "Tessaly Labs", "negated": False,
     "sentence": 1},
    {"subject": "Mara Quell", "relation": "lives in", "object": "Orvane", "negated": True,
     "sentence": 3},
    {"subject": "Tessaly Labs", "relation": "based in", "object": "Bexley", "negated": False,
     "sentence": 4},
]
VALID = json.dumps({"triplets": ITEMS})


def expected(items):
    return [{**it, "confidence": it.get("confidence")} for it in items]


def test_schema_output_is_read_as_is():
    assert parse_llm_output(VALID) == (expected(ITEMS), [])


def test_confidence_is_kept():
    items, errors = parse_llm_output(json.dumps({"triplets": [{**ITEMS[0], "confidence": 0.5}]}))
    assert errors == [] and items[0]["confidence"] == 0.5


def test_code_fence_and_surrounding_prose_are_removed():
    for text in (f"```json\n{VALID}\n```", f"```\n{VALID}```", f"Sure! Here are the facts:\n{VALID}\n"
                 "Let me know if you need more.", f"```json\n{VALID}"):
        assert parse_llm_output(text) == (expected(ITEMS), []), text


def test_trailing_and_doubled_commas_are_repaired():
    text = VALID.replace("}]", "},]").replace('"sentence": 1', '"sentence": 1,,')
    assert parse_llm_output(text) == (expected(ITEMS), [])


def test_single_quotes_and_python_literals_are_repaired():
    text = str({"triplets": ITEMS})  # Python repr: single quotes, True/False
    assert "'" in text and "False" in text
    assert parse_llm_output(text) == (expected(ITEMS), [])


def test_bare_word_keys_and_escapes():
    text = '{triplets: [{subject: "Jan \\"Jo\\" Kowal\\u0161ki", relation: \'born in\', ' \
           'object: "Ł\\u00f3d\\u017a", negated: false, sentence: 2}]}'
    items, errors = parse_llm_output(text)
    assert errors == []
    assert items[0]["subject"] == 'Jan "Jo" Kowalški' and items[0]["object"] == "Łódź"


def test_bare_list_is_accepted():
    assert parse_llm_output(json.dumps(ITEMS)) == (expected(ITEMS), [])


def test_truncated_output_keeps_complete_items_only():
    cut_in_second_item = VALID[: VALID.index('"Orvane"') + 4]
    items, errors = parse_llm_output(cut_in_second_item)
    assert items == expected(ITEMS[:1])
    assert len(errors) == 1 and "truncated" in errors[0]
    # cut right after the second item's closing brace: two complete items
    end_of_second = VALID.index("}", VALID.index('"Orvane"')) + 1
    items, errors = parse_llm_output(VALID[:end_of_second])
    assert items == expected(ITEMS[:2]) and "truncated" in errors[0]
    # a number at the very end may itself be cut ("1" of "12"): that item is dropped
    items, _ = parse_llm_output(VALID[: VALID.index('"sentence": 1') + len('"sentence": 1')])
    assert items == []


def test_invalid_items_are_dropped_with_the_reason():
    bad = [
        ("not an object", "just a string"),
        ("missing 'object'", {k: v for k, v in ITEMS[0].items() if k != "object"}),
        ("'subject' is not a string", {**ITEMS[0], "subject": 7}),
        ("'relation' is empty", {**ITEMS[0], "relation": "   "}),
        ("'sentence' is not an integer (str)", {**ITEMS[0], "sentence": "2"}),
        ("'sentence' is not an integer (float)", {**ITEMS[0], "sentence": 2.0}),
        ("'sentence' is not an integer (bool)", {**ITEMS[0], "sentence": True}),
        ("numbered from 1", {**ITEMS[0], "sentence": 0}),
        ("missing 'sentence'", {k: v for k, v in ITEMS[0].items() if k != "sentence"}),
        ("'negated' is not true/false", {**ITEMS[0], "negated": "no"}),
        ("'confidence' is not a number", {**ITEMS[0], "confidence": 3}),
        ("longer than", {**ITEMS[0], "object": "x" * 1000}),
    ]
    items, errors = parse_llm_output(json.dumps({"triplets": [ITEMS[1]] + [b for _, b in bad]}))
    assert items == expected([ITEMS[1]])
    assert len(errors) == len(bad)
    for (reason, _), error in zip(bad, errors):
        assert reason in error, (reason, error)


def test_missing_negated_defaults_to_false_and_whitespace_is_normalized():
    item = {"subject": "  Mara\n Quell ", "relation": "works  at", "object": "Tessaly Labs",
            "sentence": 1}
    items, errors = parse_llm_output(json.dumps({"triplets": [item]}))
    assert errors == [] and items[0]["subject"] == "Mara Quell" and items[0]["negated"] is False
    assert items[0]["relation"] == "works at"


def test_outputs_without_triplets():
    assert parse_llm_output("I could not find any facts.") == ([], ["no JSON object in the output"])
    assert parse_llm_output('{"facts": []}')[1] == ["no 'triplets' key in the JSON object"]
    assert parse_llm_output('{"triplets": 5}')[1] == ["'triplets' is not a list (int)"]
    assert parse_llm_output('{"triplets": []}') == ([], [])
    assert parse_llm_output(None)[1] == ["output is not a string (NoneType)"]


def test_hostile_inputs_do_not_raise():
    deep = "[" * 100_000 + "]" * 100_000  # the strict reader hits RecursionError here
    items, errors = parse_llm_output(deep)
    assert items == [] and f"deeper than {MAX_DEPTH}" in errors[0]
    huge = '{"triplets": [' + ",".join([json.dumps(ITEMS[0])] * 20_000) + "]}"
    items, errors = parse_llm_output(huge)
    assert f"longer than {MAX_CHARS}" in errors[0] and 0 < len(items) < 20_000
    items, errors = parse_llm_output('{"triplets": [' + ",".join(["1"] * 500) + "]}")
    assert items == [] and len(errors) == MAX_ERRORS and "more problems" in errors[-1]
    items, errors = parse_llm_output('{"triplets": [{"sentence": ' + "9" * 10_000 + "}]}")
    assert items == [] and errors
    lone = '{"triplets": [{"subject": "\\ud800x", "relation": "r", "object": "o", "sentence": 1}]}'
    items, _ = parse_llm_output(lone)
    items[0]["subject"].encode("utf-8")  # a lone surrogate would make this raise


# ---------------------------------------------------------------- fuzz

WORDS = ["Mara", "Quell", "Tessaly", "Labs", "Łódź", "O'Brien", 'say "hi"', "back\\slash", "日本",
         "tab\there", "emoji 😀", "ñ", "a,b", "{x}", "[y]", "works at", "is a", "None", "true"]
JSON_PIECES = ['{', '}', '[', ']', '"', "'", ',', ':', '\\', 'true', 'False', 'None', '```', '\n',
               '"triplets"', '"sentence": ', '1', '-', '.', 'e', '\\u', '\\ud83d']


def random_item(rng):
    item = {"subject": " ".join(rng.sample(WORDS, rng.randint(1, 3))),
            "relation": rng.choice(WORDS), "object": " ".join(rng.sample(WORDS, rng.randint(1, 2))),
            "negated": rng.random() < 0.3, "sentence": rng.randint(1, 40)}
    if rng.random() < 0.3:
        item["confidence"] = round(rng.random(), 3)
    return {k: " ".join(v.split()) if isinstance(v, str) else v for k, v in item.items()}


def random_valid(rng):
    items = [random_item(rng) for _ in range(rng.randint(0, 6))]
    return items, json.dumps({"triplets": items}, ensure_ascii=rng.random() < 0.5,
                             indent=rng.choice([None, 2]))


def damage(rng, text):
    kind = rng.randrange(4)
    if kind == 0:
        return f"```json\n{text}\n```"
    if kind == 1:
        return "Here is the JSON: " + text.replace("}", "},", rng.randint(1, 3))
    if kind == 2:
        return text.replace('"', "'").replace("false", "False").replace("true", "True")
    return text + "\nHope this helps."


def mutate(rng, text):
    chars = list(text)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randint(0, len(chars))
        op = rng.randrange(3)
        if op == 0:
            chars.insert(pos, rng.choice(JSON_PIECES))
        elif op == 1 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif chars:
            chars[min(pos, len(chars) - 1)] = rng.choice(JSON_PIECES)
    return "".join(chars)


def random_nesting(rng, depth=0):
    if depth > rng.randint(0, 40) or rng.random() < 0.2:
        return rng.choice([1, -2.5, "s", None, True, [], {}])
    if rng.random() < 0.5:
        return [random_nesting(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    return {rng.choice(["triplets", "subject", "x", "sentence"]): random_nesting(rng, depth + 1)}


def fuzz_inputs(rng, n):
    """(text, items it must parse to exactly, or a list the result must be a prefix of, or None)."""
    for i in range(n):
        kind = i % 6
        if kind == 0:
            raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
            yield raw.decode("utf-8", errors="replace"), None
        elif kind == 1:
            items, text = random_valid(rng)
            yield text, ("exact", items)
        elif kind == 2:
            items, text = random_valid(rng)
            yield text[: rng.randint(0, len(text))], ("prefix", items)
        elif kind == 3:
            items, text = random_valid(rng)
            text = damage(rng, text)
            yield text[: rng.randint(0, len(text))] if rng.random() < 0.5 else text, None
        elif kind == 4:
            yield mutate(rng, random_valid(rng)[1]), None
        else:
            text = json.dumps(random_nesting(rng))
            yield text[: rng.randint(0, len(text))] if rng.random() < 0.3 else text, None


def assert_well_typed(items, errors):
    assert isinstance(items, list) and isinstance(errors, list)
    assert all(isinstance(e, str) and e for e in errors)
    for it in items:
        assert set(it) == {"subject", "relation", "object", "negated", "sentence", "confidence"}
        for name in ("subject", "relation", "object"):
            assert isinstance(it[name], str) and it[name].strip() == it[name] != ""
            it[name].encode("utf-8")
        assert type(it["negated"]) is bool
        assert type(it["sentence"]) is int and it["sentence"] >= 1
        assert it["confidence"] is None or (type(it["confidence"]) is float and 0 <= it["confidence"] <= 1)


def test_fuzz_never_raises_and_keeps_only_complete_items():
    rng = random.Random(20261124)
    start, n, checked = time.perf_counter(), 12_000, 0
    for text, want in fuzz_inputs(rng, n):
        items, errors = parse_llm_output(text)
        assert_well_typed(items, errors)
        if want is not None:
            mode, gold = want
            gold = expected(gold)
            if mode == "exact":
                assert (items, errors) == (gold, []), text
            else:  # a truncated valid output yields a prefix of its items, never an invented one
                assert items == gold[: len(items)], text
            checked += 1
    assert checked == 2 * n // 6
    assert time.perf_counter() - start < 60  # a few seconds normally; generous on a busy machine
