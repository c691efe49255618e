"""How good each extractor's memory is: scores against the oracle, and the memory gap it causes.

- `extraction_quality`: per non-oracle extractor, `extraction.quality.score` against the oracle
  (gold) triplets of the documents that have them (strict keys include polarity; per sentence for
  sources with sentence-level gold, per document with Re-DocRED's aliases), plus
  `recall_fact_coverage`: the share of gold recall spans (synthetic runs) whose fact the
  extractor stated, positively, before the recall (strict and relaxed keys). `docs`,
  `gold_triplets` and `extracted_triplets` count rows of `triplets` (of the documents with
  gold), so they agree with any SQL count over that table.
- `memory_gap`: recall_acc of a memory variant with oracle vs this extractor's memory, and the
  part of the gap that missing facts explain: with every extracted fact used as well as oracle
  memory and the rest at the no-memory level, extracted memory would score
  expected = oracle_acc * coverage + no_memory_acc * (1 - coverage).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from configs.schema import RunConfig
from corpora.sources import SOURCES
from evaluation.metrics import MIN_GAP, Figure, Metrics, metric_row
from extraction.normalize import canonical_relation, normalize_entity
from extraction.quality import Dataset, DatasetError, load_redocred, score
from warehouse.contracts import Document, Triplet, extractor_backend
from warehouse.shard_io import list_shards

log = logging.getLogger(__name__)

@lru_cache(maxsize=1 << 16)  # surface strings repeat across triplets and extractors
def _fact_keys(subject: str, relation: str, obj: str) -> tuple[tuple, tuple]:
    """(strict key, relaxed key) of a fact: normalized (subject, relation, object), (subject, object)."""
    s, o = normalize_entity(subject), normalize_entity(obj)
    return (s, canonical_relation(relation), o), (s, o)


def _gold_dataset(cfg: RunConfig, oracle: list[Triplet]) -> Dataset:
    """The oracle triplets as `extraction.quality.score`'s gold, matched per sentence, or per
    document with the aliases of a Re-DocRED source."""
    by_doc: dict[str, list[Triplet]] = defaultdict(list)
    for t in oracle:
        by_doc[t.doc_id].append(t)
    docs = [Document(doc_id, "", gold=gold) for doc_id, gold in by_doc.items()]
    if cfg.ingest.source != "redocred":
        return Dataset(cfg.ingest.source, docs, per_sentence=True)
    try:
        src = cfg.ingest.section("redocred")
        aliases = load_redocred(src.path, src.limit, src.rel_info).aliases
    except DatasetError as err:
        log.warning("evaluate: Re-DocRED aliases unavailable (%s); scoring without them", err)
        aliases = {}
    return Dataset("redocred", docs, per_sentence=False, aliases=aliases)


def extraction_quality(con, cfg: RunConfig, run_dir: Path) -> dict[str, dict[str, Figure]]:
    """extractor -> its scores against the oracle (see the module docstring), each with what it
    is a share of (`n`: distinct predicted items for precision, gold items for recall, gold
    recall spans for the coverage)."""
    rows = con.execute("""
        SELECT doc_id, subject, relation, object, negated, char_start, char_end, confidence,
               extractor FROM triplets
        WHERE doc_id IN (SELECT doc_id FROM triplets WHERE extractor = 'oracle')
        ORDER BY triplet_id""").fetchall()
    by_extractor: dict[str, list[Triplet]] = defaultdict(list)
    for row in rows:
        by_extractor[row[-1]].append(Triplet(*row))
    if "oracle" not in by_extractor:
        return {}
    oracle = by_extractor.pop("oracle")
    gold = _gold_dataset(cfg, oracle)
    recalls = _gold_recalls(run_dir, {d.doc_id for d in gold.docs}) \
        if "recall" in SOURCES[cfg.ingest.source].side_kinds else []
    out = {}
    for extractor, triplets in sorted(by_extractor.items()):
        s = score(triplets, gold)
        # row counts, so they agree with `triplets`: score's own counts are of distinct
        # (fact, clause) items, and an extractor that states a fact twice in a clause has one item
        scores = {"docs": Figure(len(gold.docs)), "gold_triplets": Figure(len(oracle)),
                  "extracted_triplets": Figure(len(triplets))}
        for kind in ("strict", "relaxed"):
            scores[f"{kind}_p"] = Figure(s[f"{kind}_p"], n=s[f"{kind}_predicted"])
            scores[f"{kind}_r"] = Figure(s[f"{kind}_r"], n=s[f"{kind}_gold"])
            scores[f"{kind}_f1"] = Figure(s[f"{kind}_f1"])
        if recalls:
            scores.update(_recall_coverage(triplets, recalls))
        out[extractor] = scores
    return out


def _recall_coverage(triplets: list[Triplet], recalls: list[tuple[str, tuple, int]]) -> dict[str, Figure]:
    stated: dict[str, list[tuple[tuple, tuple, int]]] = defaultdict(list)
    for t in triplets:
        if not t.negated:
            stated[t.doc_id].append((*_fact_keys(t.subject, t.relation, t.object), t.char_end))
    out = {}
    for i, name in ((0, "recall_fact_coverage"), (1, "recall_fact_coverage_relaxed")):
        covered = sum(any(keys[i] == recalled[i] and end <= start for *keys, end in stated[doc_id])
                      for doc_id, recalled, start in recalls)
        out[name] = Figure(covered / len(recalls), n=len(recalls))
    return out


def _gold_recalls(run_dir: Path, docs: set[str]) -> list[tuple[str, tuple, int]]:
    """(doc_id, fact keys, char_start) of every gold recall span (an unreadable recall shard is
    left out with a warning: the coverage is optional)."""
    out = []
    for path in list_shards(run_dir, "recall"):
        try:
            table = pq.read_table(path, columns=["doc_id", "subject", "relation", "value",
                                                 "char_start"])
        except (OSError, pa.ArrowException) as err:
            log.warning("evaluate: %s unreadable (%s); recall coverage leaves it out", path, err)
            continue
        for r in table.to_pylist():
            if r["doc_id"] in docs:
                strict_key, relaxed_key = _fact_keys(r["subject"], r["relation"], r["value"])
                out.append((r["doc_id"], (strict_key, relaxed_key), r["char_start"]))
    return out


def evaluated_with(cfg: RunConfig, memory: str) -> str:
    """The ablation that evaluated a memory variant with `memory` (an extractor's backend, or
    no_memory): "none" for the memory it was trained with."""
    return "none" if memory == cfg.train.memory_source else memory


def memory_gap(cfg: RunConfig, metrics: Metrics, variant: str, extractor: str,
               quality: dict[str, float]) -> dict[str, float]:
    """`variant`'s recall_acc gap between oracle and `extractor` memory (module docstring); {}
    when one of the two was not evaluated."""
    backend = extractor_backend(extractor)
    acc = {a: metrics.get(variant, evaluated_with(cfg, a), "recall_acc")
           for a in ("oracle", backend, "no_memory")}
    oracle, extracted, no_memory = acc.get("oracle"), acc.get(backend), acc.get("no_memory")
    if oracle is None or extracted is None:
        return {}
    out = {"recall_acc_oracle_memory": oracle, "recall_acc_extracted_memory": extracted,
           "recall_acc_gap": oracle - extracted}
    coverage = quality.get("recall_fact_coverage", quality.get("strict_r"))
    if no_memory is not None and coverage is not None:
        expected = oracle * coverage + no_memory * (1 - coverage)
        out["recall_acc_expected_from_coverage"] = expected
        if abs(oracle - extracted) >= MIN_GAP:
            out["gap_share_explained_by_extraction"] = (oracle - expected) / (oracle - extracted)
    return out


def score_rows(quality: dict[str, dict[str, Figure]]) -> list[dict[str, Any]]:
    """extraction_scores rows: each extractor's scores against the oracle."""
    return [{"extractor": ex, "metric": m, "value": f.value, "n": f.n}
            for ex, scores in quality.items() for m, f in scores.items()]


def gap_rows(cfg: RunConfig, metrics: Metrics, quality: dict[str, dict[str, Figure]],
             memory_variants: list[str]) -> list[dict[str, Any]]:
    """Metrics rows of the gap of each memory variant (variant = the model variant, ablation
    "gap:<extractor>"); its two recall_acc rows keep their evaluation's interval and n."""
    rows = []
    for variant in memory_variants:
        for ex, scores in quality.items():
            gap = memory_gap(cfg, metrics, variant, ex, {m: f.value for m, f in scores.items()})
            figures = {f"recall_acc_{kind}_memory": metrics.figure(
                variant, evaluated_with(cfg, memory), "recall_acc")
                for kind, memory in (("oracle", "oracle"), ("extracted", extractor_backend(ex)))}
            rows += [metric_row(variant, f"gap:{ex}", m, figures.get(m) or Figure(v))
                     for m, v in gap.items()]
    return rows
