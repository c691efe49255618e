"""Corpus sources on real files: FineWeb's stream code on a local parquet, parquet, Re-DocRED,
and the source table (a throwaway source registered, configured and ingested)."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from pydantic import Field

import corpora.fineweb as fineweb
from configs.base import Section
from configs.schema import ConfigError, parse_config
from corpora.common import CorpusError
from corpora.fineweb import FinewebSource
from corpora.ingest import run_ingest
from corpora.parquet_source import ParquetSource, parquet_records
from corpora.redocred import RedocredSource, detokenize, redocred_records, title_doc_id
from corpora.sources import SOURCES, Source
from warehouse.contracts import Document

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REDOCRED = FIXTURES / "redocred_dev_sample.json"
NO_ORACLE = {"extract": {"backends": ["spacy"]}, "train": {"memory_source": "spacy"},
             "evaluate": {"ablations": ["no_memory"]}}


@pytest.fixture
def fineweb_like(tmp_path) -> Path:
    """A local parquet file with FineWeb's columns."""
    path = tmp_path / "fineweb.parquet"
    pq.write_table(pa.table({
        "text": [f"Document number {i} about soil." if i != 3 else "" for i in range(10)],
        "id": [f"<urn:uuid:{i:04d}>" for i in range(10)],
        "url": [f"https://example.org/{i}" for i in range(10)],
        "score": [3.1] * 10}), path)
    return path


def test_fineweb_rows_from_a_streaming_dataset_become_records(fineweb_like):
    stream = load_dataset("parquet", data_files=str(fineweb_like), split="train", streaming=True)
    records = list(fineweb.records_from_rows(stream, num_docs=4))
    assert [r.doc_id for r in records] == [f"<urn:uuid:{i:04d}>" for i in range(4)]
    assert records[1].url == "https://example.org/1" and records[1].source == "fineweb"
    assert records[2].text == "Document number 2 about soil." and records[3].text == ""


def test_fineweb_ingest_streams_num_docs_shard_by_shard(fineweb_like, tmp_path, monkeypatch):
    # The hub is out of reach here: the same stream code runs on the local parquet file.
    monkeypatch.setattr(fineweb, "open_stream", lambda dataset, name: load_dataset(
        "parquet", data_files=str(fineweb_like), split="train", streaming=True))
    cfg = parse_config({"name": "t", **NO_ORACLE, "ingest": {
        "source": "fineweb", "docs_per_shard": 3, "fineweb": {"num_docs": 8}}})
    result = run_ingest(cfg, tmp_path / "run")
    assert result["rows"]["documents"] == 7 and result["rows"]["shards"] == 3
    assert result["counters"]["empty_doc"] == 1


def test_fineweb_without_the_hub_fails_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CorpusError, match="cannot stream HuggingFaceFW/fineweb-edu .*HF_HUB_OFFLINE"):
        list(fineweb.fineweb_records(FinewebSource(num_docs=1)))


def test_parquet_ids_are_stable_hashes_when_there_is_no_id_column(tmp_path):
    for name in ("a.parquet", "b.parquet"):
        pq.write_table(pa.table({"body": ["one", "two", "one"]}), tmp_path / name)
    cfg = ParquetSource(paths=[str(tmp_path / "*.parquet")], text_column="body")
    first = [(r.doc_id, r.text) for r in parquet_records(cfg)]
    assert [(r.doc_id, r.text) for r in parquet_records(cfg)] == first
    assert len({i for i, _ in first}) == 6  # file name + row: equal texts keep their own ids
    assert [t for _, t in first] == [b"one", b"two", b"one"] * 2  # raw bytes, decoded by ingest


def test_parquet_missing_text_column_names_the_fix(tmp_path):
    pq.write_table(pa.table({"content": ["x"]}), tmp_path / "c.parquet")
    cfg = ParquetSource(paths=[str(tmp_path / "c.parquet")])
    with pytest.raises(CorpusError, match="no column 'text'.*text_column"):
        list(parquet_records(cfg))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(CorpusError, match="bad.parquet: not a readable parquet file"):
        list(parquet_records(ParquetSource(paths=[str(tmp_path / "bad.parquet")])))


def test_detokenize_keeps_exact_token_spans():
    sents = [["Wilfried", '"', "Willi", '"', "Schneider", "(", "born", "1963", "in", "Mediaș", ",",
              "Transylvania", ")", "is", "a", "free", "-", "to", "-", "air", "racer", "."],
             ["He", "won", "the", "men", "'s", "event", "\xa0", "."]]
    text, spans = detokenize(sents)
    assert text == ('Wilfried "Willi" Schneider (born 1963 in Mediaș, Transylvania) is a '
                    "free-to-air racer. He won the men's event.")
    for sent, sent_spans in zip(sents, spans):
        for token, (s, e) in zip(sent, sent_spans):
            assert text[s:e] == token.strip()


def test_title_doc_ids_are_sanitized_and_unique():
    taken: set[str] = set()
    assert title_doc_id("Willi Schneider (skeleton racer)", taken) == "redocred-willi-schneider-skeleton-racer"
    assert title_doc_id("Mediaș", taken) == "redocred-medias"
    assert title_doc_id("Medias", taken) == "redocred-medias-2"
    assert title_doc_id("???", taken) == "redocred-untitled"


def _assert_gold_uses_the_stating_sentences(path: Path, limit: int | None = None) -> list:
    """Per label one gold triplet: the P-id (no rel_info), the surfaces of mentions in the span,
    and the span is one evidence sentence stating both or covers all of the evidence."""
    docs = json.loads(path.read_text())[:limit]
    records = list(redocred_records(RedocredSource(path=path, limit=limit)))
    assert [len(r.gold) for r in records] == [len(d["labels"]) for d in docs]
    assert len({r.doc_id for r in records}) == len(docs) and records[0].recalls == []
    kinds = []
    for rec, doc in zip(records, docs):
        _, spans = detokenize(doc["sents"])
        starts = [s[0][0] for s in spans]
        for t, label in zip(rec.gold, doc["labels"]):
            assert t.relation == label["r"]
            span = rec.text[t.char_start:t.char_end]
            assert t.subject in span and t.object in span
            covered = [sent for sent in label["evidence"] if t.char_start <= starts[sent] < t.char_end]
            if label["evidence"]:
                assert len(covered) == 1 or covered == label["evidence"]
            kinds.append("none" if not label["evidence"] else "one" if len(covered) == 1 else "all")
    return records, kinds


def test_redocred_gold_uses_mentions_in_the_stating_sentences():
    records, kinds = _assert_gold_uses_the_stating_sentences(REDOCRED)
    assert [r.doc_id for r in records] == [
        "redocred-ellerbusch-site", "redocred-anthony-steel-actor", "redocred-ramada-shelter",
        "redocred-mociny-metro-station", "redocred-energy-and-environmental-security-initiative",
        "redocred-schizoanalysis", "redocred-ko-joo-yeon"]
    assert records[1].url == "https://en.wikipedia.org/wiki/Anthony_Steel_(actor)"
    # every rule is exercised: labels without evidence, one stating sentence, several sentences
    assert (kinds.count("none"), kinds.count("one"), kinds.count("all")) == (27, 40, 19)
    ramada = records[2]
    first = ramada.gold[0]  # evidence [0, 6], no sentence mentions both: the span covers 0..6
    assert (first.subject, first.relation, first.object) == ("United States", "P150", "Arizona")
    assert (first.char_start, first.char_end) == (0, len(ramada.text))
    third = ramada.gold[2]  # evidence [6] states both: that sentence alone
    assert ramada.text[third.char_start:third.char_end] == (
        "An example of a large modern-day ramada can be seen at the Casa Grande Ruins National "
        "Monument in Arizona, where it is used to protect ancient ruins.")
    steel = records[1]
    assert steel.text.startswith("Anthony Maitland Steel (21 May 1920 – 21 March 2001) was an English")
    assert 'He was described as "a glorious throwback' in steel.text
    assert [(t.subject, t.relation, t.object) for t in records[6].gold[:2]] == [
        ("Ko Joo-yeon", "P569", "February 22, 1994"), ("Ko Joo-yeon", "P19", "South Korean")]
    assert [r.doc_id for r in redocred_records(RedocredSource(path=REDOCRED, limit=2))] == [
        "redocred-ellerbusch-site", "redocred-anthony-steel-actor"]


@pytest.mark.benchmark_data
def test_full_redocred_dev_gold_uses_mentions_in_the_stating_sentences(benchmark_file):
    records, _ = _assert_gold_uses_the_stating_sentences(benchmark_file("redocred_dev.json"))
    assert len(records) == 500


def test_malformed_redocred_file_fails_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"title": "x", "sents": [["a"]]}]')
    with pytest.raises(CorpusError, match="document 0 is not in DocRED format"):
        list(redocred_records(RedocredSource(path=bad)))
    bad.write_text("{not json")
    with pytest.raises(CorpusError, match="bad.json: cannot read"):
        list(redocred_records(RedocredSource(path=bad)))


# ---------------------------------------------------------------- the source table

class CountingSource(Section):
    """A throwaway source: `n` documents "line <i> of <n>"."""
    n: int = Field(3, ge=1)
    prefix: str = "line"


def counting_documents(section: CountingSource, seed: int):
    for i in range(section.n):
        yield Document(f"count-{seed}-{i}", f"{section.prefix} {i} of {section.n}", "counting")


@pytest.fixture
def counting():
    source = SOURCES.add(Source("counting", CountingSource, counting_documents,
                                    total=lambda s: s.n))
    yield source
    del SOURCES[source.name]


def test_a_registered_source_is_ingested(tmp_path, counting):
    cfg = parse_config({"name": "c", "seed": 7, "ingest": {"source": "counting",
                                                           "counting": {"n": 5, "prefix": "row"}},
                        "extract": {"backends": ["spacy"]}, "train": {"memory_source": "spacy"},
                        "evaluate": {"ablations": ["no_memory"]}})
    result = run_ingest(cfg, tmp_path)
    assert result["rows"]["documents"] == 5 and result["rows"]["gold_triplets"] == 0
    texts = pq.read_table(tmp_path / "docs" / "shard_00000.parquet").column("text").to_pylist()
    assert texts == [f"row {i} of 5" for i in range(5)]
    assert not (tmp_path / "gold").exists()  # no side kinds declared
    with pytest.raises(ConfigError, match=r"ingest.counting.n: Input should be greater"):
        parse_config({"name": "c", "ingest": {"source": "counting", "counting": {"n": 0}}})
    with pytest.raises(ConfigError, match=r"has 'oracle' but source 'counting' has no gold"):
        parse_config({"name": "c", "ingest": {"source": "counting"}})


def test_unknown_source_names_the_table():
    with pytest.raises(ConfigError, match=r"ingest: .*source 'countin' is not a corpus source; "
                                          r"choose one of synthetic, fineweb, parquet, redocred"):
        parse_config({"name": "c", "ingest": {"source": "countin"}})
