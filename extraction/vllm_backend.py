"""The vLLM backend: an instruction-tuned LLM writes triplets as schema-constrained JSON (GPU).

    backend = VllmBackend(cfg.extract.vllm)        # needs: pip install -e '.[vllm]' and a GPU
    triplets, errors = backend.extract(docs)       # one batched generate() per batch_size docs

Each document becomes prompt chunks (extraction.prompts: instructions and few-shot first, the
numbered sentences last, so vLLM's prefix cache serves the shared part). The offline engine
decodes every chunk of a batch in ONE `generate` call under
`StructuredOutputsParams(json=TRIPLETS_JSON_SCHEMA)`. Each answer is read by
`extraction.parsing.parse_llm_output` (repairs what structured decoding cannot prevent, such as
an answer cut at max_tokens) and each sentence number maps to that sentence's exact char span.
Problems become `ExtractionError`s with the first 200 characters of the raw answer; model output
never raises. A prompt longer than the engine's context is skipped with an error instead of
failing the whole batch.

The engine-free parts (`triplets_from_output`, `fits_context`) are tested on real strings in
tests/extraction/test_vllm_backend.py; the engine itself runs only where vLLM, a GPU and a local
model are present.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from configs.base import Section
from warehouse.contracts import Document, ExtractionError, Triplet
from extraction.parsing import parse_llm_output
from extraction.prompts import (TRIPLETS_JSON_SCHEMA, PromptChunk, build_chunks, chat_messages,
                                plain_prompt)

RAW_PREFIX_CHARS = 200
INSTALL_HINT = "backend 'vllm' needs vLLM: pip install -e '.[vllm]'"


class VllmConfig(Section):
    """The `extract.vllm` section."""
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    batch_size: int = Field(256, ge=1, le=1_000_000)  # documents per generate() call
    max_tokens: int = Field(1024, ge=16, le=2**20)
    max_model_len: int = Field(8192, ge=512, le=2**24)
    chunk_sentences: int = Field(24, ge=1, le=10_000)  # long documents are split into chunks of sentences
    temperature: float = Field(0.0, ge=0, le=100)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)


def triplets_from_output(chunk: PromptChunk, text: str,
                         extractor: str) -> tuple[list[Triplet], list[ExtractionError]]:
    """The triplets of one chunk's raw answer, each with its sentence's char span."""
    items, problems = parse_llm_output(text)
    triplets, seen, repeated = [], set(), 0
    for item in items:
        span = chunk.spans.get(item["sentence"])
        if span is None:
            problems.append(f"sentence {item['sentence']} is not in this chunk "
                            f"(sentences {min(chunk.spans)}-{max(chunk.spans)})")
            continue
        key = (item["subject"], item["relation"], item["object"], item["negated"], item["sentence"])
        if key in seen:  # a model stuck repeating itself: keep one copy
            repeated += 1
            continue
        seen.add(key)
        triplets.append(Triplet(
            doc_id=chunk.doc_id, subject=item["subject"], relation=item["relation"],
            object=item["object"], negated=item["negated"], char_start=span[0], char_end=span[1],
            confidence=item["confidence"], extractor=extractor))
    if repeated:
        problems.append(f"{repeated} repeated items dropped")
    errors = [ExtractionError(chunk.doc_id, f"chunk {chunk.index}: {p}", text[:RAW_PREFIX_CHARS])
              for p in problems]
    return triplets, errors


def fits_context(prompt_tokens: int, cfg: VllmConfig) -> bool:
    """Whether a prompt leaves room for a full answer within the engine's context length."""
    return prompt_tokens + cfg.max_tokens <= cfg.max_model_len


class VllmBackend:
    """Offline vLLM engine + prompts + parsing; constructed once per extract stage."""

    def __init__(self, cfg: VllmConfig):
        try:
            import vllm
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as err:
            raise ImportError(f"{INSTALL_HINT} ({err})") from None
        self.cfg = cfg
        self.name = f"vllm:{cfg.model}"
        self.llm = vllm.LLM(model=cfg.model, tensor_parallel_size=cfg.tensor_parallel_size,
                            max_model_len=cfg.max_model_len,
                            gpu_memory_utilization=cfg.gpu_memory_utilization,
                            enable_prefix_caching=True)
        self.params = vllm.SamplingParams(
            temperature=cfg.temperature, max_tokens=cfg.max_tokens,
            structured_outputs=StructuredOutputsParams(json=TRIPLETS_JSON_SCHEMA))
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, chunk: PromptChunk) -> str:
        messages = chat_messages(chunk)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
        return plain_prompt(messages)  # a base model without a chat template

    def extract(self, docs: list[Document]) -> tuple[list[Triplet], list[ExtractionError]]:
        triplets: list[Triplet] = []
        errors: list[ExtractionError] = []
        for lo in range(0, len(docs), self.cfg.batch_size):
            t, e = self._extract_batch(docs[lo: lo + self.cfg.batch_size])
            triplets += t
            errors += e
        return triplets, errors

    def _extract_batch(self, docs: list[Document]) -> tuple[list[Triplet], list[ExtractionError]]:
        chunks, prompts, errors = [], [], []
        for doc in docs:
            for chunk in build_chunks(doc.doc_id, doc.text, self.cfg.chunk_sentences):
                prompt = self.render(chunk)
                n_tokens = len(self.tokenizer.encode(prompt))
                if not fits_context(n_tokens, self.cfg):
                    errors.append(ExtractionError(
                        doc.doc_id, f"chunk {chunk.index}: prompt of {n_tokens} tokens + max_tokens "
                        f"{self.cfg.max_tokens} exceeds max_model_len {self.cfg.max_model_len}; "
                        "lower extract.vllm.chunk_sentences", ""))
                    continue
                chunks.append(chunk)
                prompts.append(prompt)
        triplets: list[Triplet] = []
        if prompts:
            outputs: list[Any] = self.llm.generate(prompts, self.params, use_tqdm=False)
            for chunk, out in zip(chunks, outputs):
                t, e = triplets_from_output(chunk, out.outputs[0].text, self.name)
                triplets += t
                errors += e
        return triplets, errors
