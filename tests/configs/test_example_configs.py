"""configs/own-corpus.example.yaml (README "Bringing your own corpus") loads once its parquet
files exist, and names the file in one line while they do not."""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from configs.schema import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "own-corpus.example.yaml"


def test_own_corpus_example_loads_with_its_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths are relative to where the pipeline runs
    with pytest.raises(ConfigError, match="data/own_corpus/\\*.parquet"):
        load_config(EXAMPLE)
    (tmp_path / "data" / "own_corpus").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["Mara Quell lives in Orvane."]}),
                   tmp_path / "data" / "own_corpus" / "part-0.parquet")
    cfg = load_config(EXAMPLE)
    assert cfg.ingest.source == "parquet"
    assert cfg.ingest.parquet.paths == [str(tmp_path / "data" / "own_corpus" / "*.parquet")]
    assert cfg.extract.backends == ["spacy"] and cfg.train.memory_source == "spacy"
