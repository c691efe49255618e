"""Backend name -> constructor, so the stage and the score CLI build backends the same way.

    backend = make_backend("spacy", cfg.extract)

Optional backends are imported inside their constructor, so a missing package (vLLM) fails only
when that backend is asked for, with the install command in the message.
"""
from __future__ import annotations

from typing import Callable

from configs.schema import ExtractConfig
from extraction.base import Backend


def _oracle(cfg: ExtractConfig) -> Backend:
    from extraction.oracle import OracleBackend
    return OracleBackend()


def _spacy(cfg: ExtractConfig) -> Backend:
    from extraction.spacy_backend import SpacyBackend
    return SpacyBackend(cfg.spacy, cfg.coref)


def _vllm(cfg: ExtractConfig) -> Backend:
    from extraction.vllm_backend import VllmBackend
    return VllmBackend(cfg.vllm)


BACKENDS: dict[str, Callable[[ExtractConfig], Backend]] = {
    "oracle": _oracle,
    "spacy": _spacy,
    "vllm": _vllm,
}


def make_backend(name: str, cfg: ExtractConfig) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown extraction backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name](cfg)
