"""vLLM backend: answer -> triplets mapping on real strings; the engine where vLLM and a model exist.

The engine test needs vLLM, a GPU and a local model folder named by TCC_VLLM_TEST_MODEL (never
downloaded); it is skipped, with that reason shown, everywhere else (this CPU container included).
"""
import importlib.util
import itertools
import json
import os
from pathlib import Path

import pytest

from configs.schema import ConfigError, ExtractConfig, parse_config
from corpora.synthetic import SyntheticSource
from extraction.vllm_backend import VllmConfig
from corpora.synthetic import generate_documents
from warehouse.contracts import Document
from extraction.normalize import canonical_relation, normalize_entity
from extraction.prompts import build_chunks, split_sentences
from extraction.registry import make_backend
from extraction.vllm_backend import RAW_PREFIX_CHARS, VllmBackend, fits_context, triplets_from_output

HAS_VLLM = importlib.util.find_spec("vllm") is not None
LOCAL_MODEL = os.environ.get("TCC_VLLM_TEST_MODEL", "")

TEXT = " ".join(f"Person{i} Alder lives in Town{i}." for i in range(1, 31))


def item(subject, relation, obj, sentence, negated=False):
    return {"subject": subject, "relation": relation, "object": obj, "negated": negated,
            "sentence": sentence}


def test_sentence_numbers_map_to_exact_spans_of_the_document():
    chunk = build_chunks("d7", TEXT, chunk_sentences=10)[1]  # sentences 11..20
    spans = split_sentences(TEXT)
    answer = "```json\n" + json.dumps({"triplets": [
        item("Person12 Alder", "lives in", "Town12", 12),
        item("Person20 Alder", "lives in", "Town3", 20, negated=True),
        item("Person12 Alder", "lives in", "Town12", 12),  # repeated
        item("Person25 Alder", "lives in", "Town25", 25),  # another chunk's sentence
    ]}) + "\n```"
    triplets, errors = triplets_from_output(chunk, answer, "vllm:test-model")
    assert [(t.subject, t.object, t.negated) for t in triplets] == [
        ("Person12 Alder", "Town12", False), ("Person20 Alder", "Town3", True)]
    assert [(t.char_start, t.char_end) for t in triplets] == [spans[11], spans[19]]
    assert TEXT[triplets[0].char_start:triplets[0].char_end] == "Person12 Alder lives in Town12."
    assert {t.extractor for t in triplets} == {"vllm:test-model"} and {t.doc_id for t in triplets} == {"d7"}
    assert [e.error for e in errors] == [
        "chunk 1: sentence 25 is not in this chunk (sentences 11-20)",
        "chunk 1: 1 repeated items dropped"]
    assert all(e.doc_id == "d7" and e.raw_prefix == answer[:RAW_PREFIX_CHARS] for e in errors)


def test_truncated_and_garbage_answers_become_errors_not_exceptions():
    chunk = build_chunks("d8", TEXT, chunk_sentences=10)[0]
    full = json.dumps({"triplets": [item("Person1 Alder", "lives in", "Town1", 1),
                                    item("Person2 Alder", "lives in", "Town2", 2)]})
    triplets, errors = triplets_from_output(chunk, full[:-30], "vllm:m")
    assert [t.subject for t in triplets] == ["Person1 Alder"]
    assert len(errors) == 1 and "truncated" in errors[0].error
    for garbage in ("", "I cannot help with that.", "\x00\ufffd{[" * 500, '{"triplets": "none"}'):
        triplets, errors = triplets_from_output(chunk, garbage, "vllm:m")
        assert triplets == [] and errors
        assert all(e.raw_prefix == garbage[:RAW_PREFIX_CHARS] for e in errors)


def test_context_budget():
    cfg = VllmConfig(max_model_len=2048, max_tokens=512)
    assert fits_context(1536, cfg) and not fits_context(1537, cfg)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here; this checks the message without it")
def test_missing_vllm_names_the_install_command():
    with pytest.raises(ImportError, match=r"pip install -e '\.\[vllm\]'"):
        VllmBackend(VllmConfig())
    with pytest.raises(ImportError, match=r"pip install -e '\.\[vllm\]'"):
        make_backend("vllm", ExtractConfig())
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[vllm\]'"):
        parse_config({"name": "x", "extract": {"backends": ["oracle", "vllm"]}})


@pytest.mark.skipif(not HAS_VLLM or not Path(LOCAL_MODEL).is_dir(),
                    reason="needs vLLM (pip install -e '.[vllm]'), a GPU and a local instruct model "
                           "folder in TCC_VLLM_TEST_MODEL; none here (CPU container)")
def test_vllm_extracts_synthetic_facts_with_exact_spans():
    docs = list(itertools.islice(generate_documents(SyntheticSource(num_docs=8), seed=1), 8))
    backend = VllmBackend(VllmConfig(model=LOCAL_MODEL, max_model_len=4096, max_tokens=1024,
                                     chunk_sentences=12, batch_size=8, gpu_memory_utilization=0.8))
    triplets, errors = backend.extract([Document(d.doc_id, d.text) for d in docs])
    assert triplets and len(errors) < len(docs)
    texts = {d.doc_id: d.text for d in docs}
    for t in triplets:
        assert t.extractor == f"vllm:{LOCAL_MODEL}"
        assert (t.char_start, t.char_end) in set(split_sentences(texts[t.doc_id]))

    def key(t):
        return (t.doc_id, normalize_entity(t.subject), canonical_relation(t.relation),
                normalize_entity(t.object), t.negated)
    gold = {key(t) for d in docs for t in d.gold}
    found = {key(t) for t in triplets}
    assert len(gold & found) / len(gold) > 0.5  # an instruct model states most clean facts
