"""Reading an LLM's triplet output: accept the schema, repair common damage, never raise.

    >>> items, errors = parse_llm_output('```json\\n{"triplets": [{"subject": "Mara Quell", '
    ...     '"relation": "works at", "object": "Tessaly Labs", "negated": false, "sentence": 1},]}\\n```')
    >>> items[0]["object"], errors
    ('Tessaly Labs', [])

`parse_llm_output(text) -> (items, errors)`. `items` are dicts with `subject`, `relation`,
`object` (non-empty stripped strings), `negated` (bool), `sentence` (int >= 1) and `confidence`
(float in [0, 1] or None). `errors` are one-line strings, one per problem, for the warehouse's
`extraction_errors`; an output with no problem has none.

The expected shape is `{"triplets": [item, ...]}` (prompts.TRIPLETS_JSON_SCHEMA); a bare list of
items is accepted too. Repairs, in order:
  - a Markdown code fence is unwrapped; prose before the first `{` or `[` and after the JSON
    value is ignored;
  - if the strict JSON reader fails, a tolerant reader takes over that also accepts single-quoted
    strings, Python literals (True/False/None), bare-word keys and trailing or doubled commas;
  - where the text is truncated or becomes unreadable, the reader stops there, closes every open
    string, array and object, and keeps the items completed before that point (an item cut in
    the middle is dropped, because its last value may itself be cut short).
Invalid items (not an object, a field missing or of the wrong type, an empty string, a sentence
number that is not a positive integer) are dropped with the reason. `negated` defaults to false
when absent: models often omit a false flag, and a missing flag loses no fact.

Nothing here raises on any string: input is capped at MAX_CHARS, nesting at MAX_DEPTH, and
every string is made encodable as UTF-8 (lone surrogates replaced).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_CHARS = 200_000  # far above max_tokens of any sane extraction call
MAX_DEPTH = 32  # the schema needs 3 levels; deeper input is damage, not data
MAX_FIELD_CHARS = 300  # a subject/relation/object longer than this is not a name
MAX_ERRORS = 20  # per output: a garbage answer must not flood the warehouse
REQUIRED_TEXT_FIELDS = ("subject", "relation", "object")

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_WHITESPACE = re.compile(r"[ \t\r\n]*")
_NUMBER = re.compile(r"-?(?:\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_RUN = {'"': re.compile(r'[^"\\]+'), "'": re.compile(r"[^'\\]+")}
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\",
            '"': '"', "'": "'"}


class _Stop(Exception):
    """The tolerant reader cannot go on; `partial` is what was complete up to here."""

    def __init__(self, reason: str, pos: int):
        super().__init__(reason)
        self.reason, self.pos, self.partial = reason, pos, None


class _TolerantReader:
    """A small recursive-descent JSON reader that accepts the damage listed in the module doc."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def read(self) -> Any:
        return self._value(depth=0)

    def _skip(self) -> None:
        self.pos = _WHITESPACE.match(self.text, self.pos).end()

    def _peek(self) -> str:
        self._skip()
        if self.pos >= len(self.text):
            raise _Stop("output ends early (truncated)", self.pos)
        return self.text[self.pos]

    def _value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _Stop(f"nesting deeper than {MAX_DEPTH} levels", self.pos)
        c = self._peek()
        if c == "{":
            return self._object(depth + 1)
        if c == "[":
            return self._array(depth + 1)
        if c in "\"'":
            return self._string()
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            if self.pos >= len(self.text):  # "12" at the very end may be a cut "123"
                raise _Stop("output ends early (truncated)", self.pos)
            return _to_number(number.group())
        word = _BARE_WORD.match(self.text, self.pos)
        if word and word.group() in _LITERALS:
            self.pos = word.end()
            return _LITERALS[word.group()]
        if word and word.end() == len(self.text):  # "tr" of a cut "true"
            raise _Stop("output ends early (truncated)", self.pos)
        raise _Stop(f"unexpected {c!r}", self.pos)

    def _string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        parts = []
        plain = _PLAIN_RUN[quote]
        while True:
            run = plain.match(self.text, self.pos)
            if run:
                parts.append(run.group())
                self.pos = run.end()
            if self.pos >= len(self.text):
                raise _Stop("output ends early (truncated)", self.pos)
            c = self.text[self.pos]
            if c == quote:
                self.pos += 1
                return "".join(parts)
            # a backslash escape
            esc = self.text[self.pos + 1: self.pos + 2]
            if not esc:
                raise _Stop("output ends early (truncated)", self.pos)
            if esc == "u":
                digits = self.text[self.pos + 2: self.pos + 6]
                if len(digits) == 4 and all(d in "0123456789abcdefABCDEF" for d in digits):
                    parts.append(chr(int(digits, 16)))
                    self.pos += 6
                    continue
                if len(self.text) < self.pos + 6:
                    raise _Stop("output ends early (truncated)", self.pos)
            parts.append(_ESCAPES.get(esc, esc))  # an unknown escape keeps its character
            self.pos += 2

    def _key(self) -> str:
        if self.text[self.pos] in "\"'":
            return self._string()
        word = _BARE_WORD.match(self.text, self.pos)
        if not word:
            raise _Stop(f"unexpected {self.text[self.pos]!r} where a key should be", self.pos)
        self.pos = word.end()
        return word.group()

    def _object(self, depth: int) -> dict[str, Any]:
        self.pos += 1  # "{"
        out: dict[str, Any] = {}
        key = None
        try:
            while True:
                c = self._peek()
                if c == "}":
                    self.pos += 1
                    return out
                if c == ",":  # trailing or doubled comma
                    self.pos += 1
                    continue
                key = self._key()
                if self._peek() != ":":
                    raise _Stop(f"expected ':' after key {key[:40]!r}", self.pos)
                self.pos += 1
                out[key] = self._value(depth)
                key = None
        except _Stop as stop:
            # keep a container cut in the middle (its complete items survive); drop a cut scalar
            if key is not None and isinstance(stop.partial, (list, dict)):
                out[key] = stop.partial
            stop.partial = out
            raise

    def _array(self, depth: int) -> list[Any]:
        self.pos += 1  # "["
        out: list[Any] = []
        try:
            while True:
                c = self._peek()
                if c == "]":
                    self.pos += 1
                    return out
                if c == ",":
                    self.pos += 1
                    continue
                out.append(self._value(depth))
        except _Stop as stop:
            stop.partial = out  # the element being read when it stopped is incomplete: dropped
            raise


def _to_number(s: str) -> int | float:
    try:
        return int(s) if s.lstrip("-").isdigit() else float(s)
    except (ValueError, OverflowError):  # more digits than int() accepts
        return math.nan


def _json_region(text: str) -> str:
    """The text inside the first code fence if any, from the first '{' or '[' on."""
    fence = _FENCE.search(text)
    if fence and fence.group(1).strip():
        text = fence.group(1)
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    return text[min(starts):] if starts else ""


def _read_value(region: str) -> tuple[Any, list[str]]:
    """The JSON value at the start of `region`: strict reader first, tolerant reader second."""
    try:
        value, _ = json.JSONDecoder().raw_decode(region)  # trailing prose is ignored
        return value, []
    except (ValueError, RecursionError):
        pass
    try:
        return _TolerantReader(region).read(), []
    except _Stop as stop:
        return stop.partial, [f"{stop.reason} at char {stop.pos}; kept the items completed before it"]
    except RecursionError:  # unreachable with MAX_DEPTH, kept as the never-raise guarantee
        return None, ["nesting too deep to read"]


def _clean_text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    # a surrogate pair becomes its character; a lone surrogate (from a \ud800 escape) cannot be
    # written as UTF-8 and becomes U+FFFD
    value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    value = value.replace("\x00", "")
    return " ".join(value.split())


def _validate_item(i: int, item: Any) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(item, dict):
        return None, f"item {i}: not an object ({type(item).__name__})"
    out: dict[str, Any] = {}
    for name in REQUIRED_TEXT_FIELDS:
        if name not in item:
            return None, f"item {i}: missing {name!r}"
        text = _clean_text(item[name])
        if text is None:
            return None, f"item {i}: {name!r} is not a string ({type(item[name]).__name__})"
        if not text:
            return None, f"item {i}: {name!r} is empty"
        if len(text) > MAX_FIELD_CHARS:
            return None, f"item {i}: {name!r} is longer than {MAX_FIELD_CHARS} characters"
        out[name] = text
    negated = item.get("negated", False)
    if not isinstance(negated, bool):
        return None, f"item {i}: 'negated' is not true/false ({type(negated).__name__})"
    out["negated"] = negated
    if "sentence" not in item:
        return None, f"item {i}: missing 'sentence'"
    sentence = item["sentence"]
    if isinstance(sentence, bool) or not isinstance(sentence, int):
        return None, f"item {i}: 'sentence' is not an integer ({type(sentence).__name__})"
    if sentence < 1:
        return None, f"item {i}: 'sentence' is {sentence}, sentences are numbered from 1"
    out["sentence"] = sentence
    confidence = item.get("confidence")
    valid_confidence = (isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
                        and math.isfinite(confidence) and 0 <= confidence <= 1)
    if confidence is not None and not valid_confidence:
        return None, f"item {i}: 'confidence' is not a number in [0, 1]"
    out["confidence"] = float(confidence) if confidence is not None else None
    return out, None


def parse_llm_output(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Triplet items of one model output and the problems met reading it; never raises."""
    if not isinstance(text, str):
        return [], [f"output is not a string ({type(text).__name__})"]
    errors: list[str] = []
    if len(text) > MAX_CHARS:
        errors.append(f"output longer than {MAX_CHARS} characters; read the first {MAX_CHARS}")
        text = text[:MAX_CHARS]
    region = _json_region(text)
    if not region:
        return [], errors + ["no JSON object in the output"]
    value, read_errors = _read_value(region)
    errors += read_errors
    if isinstance(value, dict):
        if "triplets" not in value:
            return [], errors + ["no 'triplets' key in the JSON object"]
        value = value["triplets"]
    if not isinstance(value, list):
        return [], errors + [f"'triplets' is not a list ({type(value).__name__})"]
    items = []
    for i, raw in enumerate(value):
        item, problem = _validate_item(i, raw)
        if item is not None:
            items.append(item)
        else:
            errors.append(problem)
    if len(errors) > MAX_ERRORS:
        errors = errors[:MAX_ERRORS - 1] + [f"... and {len(errors) - MAX_ERRORS + 1} more problems"]
    return items, errors
