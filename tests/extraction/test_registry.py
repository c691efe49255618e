"""The backend table: a backend is one entry plus its own code; the config, the extract stage,
evaluate and the report take it from the table.

A throwaway backend (`first_last`: one triplet per document, its first word -> its last word,
with its own config section) is registered for the test only."""
import duckdb
import pytest
from pydantic import Field

from configs.base import Section
from configs.schema import ConfigError, parse_config
from corpora.ingest import run_ingest
from evaluation.report import ablation_memory
from evaluation.stage import evaluation_jobs
from extraction.registry import BACKENDS, BackendSpec, make_backend
from extraction.stage import run_extract
from warehouse.contracts import Triplet


class FirstLastConfig(Section):
    relation: str = "opens with"
    max_docs: int = Field(1000, ge=1)


class FirstLastBackend:
    def __init__(self, cfg: FirstLastConfig):
        self.cfg, self.name = cfg, "first_last"

    def extract(self, docs):
        triplets = []
        for d in docs[:self.cfg.max_docs]:
            words = d.text.split()
            triplets.append(Triplet(d.doc_id, words[-1].strip("."), self.cfg.relation, words[0],
                                    False, 0, len(d.text), None, self.name))
        return triplets, []


@pytest.fixture
def first_last():
    spec = BACKENDS.add(BackendSpec("first_last", "first/last-word triplets",
                                        lambda cfg: FirstLastBackend(cfg.section("first_last")),
                                        FirstLastConfig))
    yield spec
    del BACKENDS[spec.name]


CONFIG = {"name": "reg", "ingest": {"source": "synthetic", "docs_per_shard": 5,
                                    "synthetic": {"num_docs": 10, "min_distance": 20,
                                                  "max_distance": 40}},
          "extract": {"backends": ["oracle", "first_last"], "first_last": {"relation": "begins"}},
          "train": {"memory_source": "first_last"},
          "evaluate": {"ablations": ["no_memory", "oracle"]}}


def test_a_registered_backend_runs_in_the_extract_stage(tmp_path, first_last):
    cfg = parse_config(CONFIG)
    assert cfg.extract.section("first_last") == FirstLastConfig(relation="begins")
    assert make_backend("first_last", cfg.extract).cfg.relation == "begins"
    run_ingest(cfg, tmp_path)
    result = run_extract(cfg, tmp_path)
    assert result["rows"]["triplets_first_last"] == 10  # one per document
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    rows = con.execute("SELECT DISTINCT relation FROM triplets WHERE extractor = 'first_last'").fetchall()
    con.close()
    assert rows == [("begins",)]
    # evaluate and the report read the same table
    assert ("triplet", "oracle") in evaluation_jobs(cfg)
    assert ablation_memory("first_last") == "first/last-word triplets"


def test_its_section_is_validated_with_full_paths(first_last):
    with pytest.raises(ConfigError, match=r"extract.first_last.relatoin: unknown key"):
        parse_config({**CONFIG, "extract": {"backends": ["oracle"], "first_last": {"relatoin": "x"}}})
    with pytest.raises(ConfigError, match=r"extract.first_last.max_docs: Input should be greater"):
        parse_config({**CONFIG, "extract": {"backends": ["oracle"], "first_last": {"max_docs": 0}}})


def test_unknown_backend_names_the_table():
    with pytest.raises(ConfigError, match=r"extract.backends: 'first_last' is not an extraction "
                                          r"backend; choose from oracle, spacy, vllm"):
        parse_config({"name": "x", "extract": {"backends": ["oracle", "first_last"]}})
    with pytest.raises(ConfigError, match=r"extract.first_last: unknown key"):
        parse_config({"name": "x", "extract": {"first_last": {}}})
