"""Config validation: one line naming the file and the field, exit status 2, nothing written."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from configs.schema import (ConfigError, dump_config, load_config, parse_config, stage_section)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.mark.parametrize("name", ["tiny", "study", "redocred", "fineweb-d12", "fineweb-d20"])
def test_shipped_configs_validate(name, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    if name == "redocred":  # it reads data/ (python -m corpora.fetch redocred): the fixtures stand in
        (tmp_path / "data").mkdir()
        shutil.copy(FIXTURES / "redocred_dev_sample.json", tmp_path / "data" / "redocred_dev.json")
        shutil.copy(FIXTURES / "docred_rel_info.json", tmp_path / "data" / "docred_rel_info.json")
        monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.name == name
    if name == "redocred":
        assert cfg.ingest.redocred.path == tmp_path.resolve() / "data" / "redocred_dev.json"
    # the resolved config round-trips through YAML to the same run config
    assert parse_config(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize("data, expected", [
    ({"name": "x", "ingest": {"synthetik": {}}}, "f.yaml: ingest.synthetik: unknown key"),
    ({"name": "x", "bogus": 1}, "f.yaml: bogus: unknown key"),
    ({"name": "x", "train": {"steps": "many"}}, "f.yaml: train.steps: Input should be a valid integer"),
    ({"ingest": {}}, "f.yaml: name: required field is missing"),
    ({"name": "x", "ingest": {"source": "parquet"}}, "f.yaml: ingest: source is 'parquet' but the 'parquet' section is missing"),
    ({"name": "x", "ingest": {"source": "redocred", "redocred": {"path": "/nope.json"}}},
     "f.yaml: ingest.redocred.path: file not found: /nope.json (`python -m corpora.fetch redocred`"),
    ({"name": "x", "train": {"memory_source": "spacy"}, "extract": {"backends": ["oracle"]}},
     "f.yaml: (top level): train.memory_source is 'spacy' but extract.backends"),
    ({"name": "a/b"}, "f.yaml: name: must be a plain folder name"),
    # model shapes and batches are checked at load, for every variant's model
    ({"name": "x", "model": {"n_embd": 128, "n_head": 3}},
     "f.yaml: model.n_head: n_embd (128) must be divisible by n_head (3): set n_head to a divisor"),
    ({"name": "x", "model": {"n_embd": 96, "n_head": 32}},
     "f.yaml: model.n_head: head_dim = n_embd / n_head = 3 must be even"),
    ({"name": "x", "model": {"memory_slots": 0}},
     "f.yaml: model.memory_slots: variant 'triplet' needs memory slots (> 0)"),
    # every float finite, every size bounded; what passes the bounds must fit the machine's memory
    ({"name": "x", "train": {"matrix_lr": float("inf")}}, "f.yaml: train.matrix_lr: Input should be a finite number"),
    ({"name": "x", "train": {"warmdown_frac": float("nan")}}, "f.yaml: train.warmdown_frac: Input should be a finite number"),
    ({"name": "x", "tokenizer": {"vocab_size": 10**12}},
     "f.yaml: tokenizer.vocab_size: Input should be less than or equal to 1048576"),
    ({"name": "x", "model": {"n_embd": 10**9}}, "f.yaml: model.n_embd: Input should be less than or equal to 32768"),
    ({"name": "x", "model": {"sequence_len": 10**9}},
     "f.yaml: model.sequence_len: Input should be less than or equal to 1048576"),
    ({"name": "x", "model": {"sequence_len": 2**20}},
     "f.yaml: model: training 'window' needs about "),
    ({"name": "x", "model": {"depth": 64, "n_embd": 16384, "n_head": 128}},
     "f.yaml: model: training 'window' needs about "),
    ({"name": "x", "model": {"sequence_len": 64}, "train": {"device_batch_size": 16, "total_batch_size": 1000}},
     "f.yaml: train.total_batch_size: 1000 must be a multiple of device_batch_size x "
     "model.sequence_len x nproc_per_node (1024)"),
])
def test_bad_configs_name_the_field(data, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "f.yaml")
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_flash_without_flash_attn_fails_at_load(tmp_path):
    import importlib.util
    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here; the refusal only applies without it")
    bad = tmp_path / "flash.yaml"
    bad.write_text("name: f\nmodel:\n  attn_backend: flash\n")
    proc = subprocess.run([sys.executable, "-m", "flows.pipeline", "--config", str(bad),
                           "--dry-run"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (f"config error: {bad}: model.attn_backend: attn_backend 'flash' "
                                   "needs flash-attn: pip install -e '.[gpu]' (or set attn_backend: auto)")


def test_vllm_backend_needs_the_extra():
    import importlib.util
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; the refusal only applies without it")
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[vllm\]'"):
        parse_config({"name": "x", "extract": {"backends": ["vllm"]},
                      "train": {"memory_source": "vllm"},
                      "evaluate": {"ablations": ["no_memory"]}}, "f.yaml")


def test_stage_sections_are_independent():
    a = parse_config({"name": "x"})
    b = parse_config({"name": "x", "train": {"steps": 7}})
    assert stage_section(a, "train", "window") != stage_section(b, "train", "window")
    for stage in ("ingest", "tokenizer", "extract", "canonicalize", "shards", "evaluate", "report"):
        assert stage_section(a, stage) == stage_section(b, stage)


def test_each_variant_trains_on_the_settings_it_reads():
    base = parse_config({"name": "x", "train": {"variants": ["window", "triplet", "full"]}})
    more_memory = parse_config({"name": "x", "model": {"memory_slots": 8}})
    longer_cap = parse_config({"name": "x", "train": {"full_context_cap": 64}})
    fewer_variants = parse_config({"name": "x", "train": {"variants": ["full"]}})

    def same(other, variant):
        return stage_section(base, "train", variant) == stage_section(other, "train", variant)
    assert same(more_memory, "window") and same(more_memory, "full")
    assert not same(more_memory, "triplet") and not same(more_memory, "raw")
    assert same(longer_cap, "triplet") and not same(longer_cap, "full")
    assert all(same(fewer_variants, v) for v in ("window", "triplet", "full"))
    with pytest.raises(KeyError, match="per variant"):
        stage_section(base, "train")


def test_shards_depend_on_the_memory_reach_only_without_gold_recall_spans():
    def shards(source, slots):
        section = {"redocred": {"path": str(FIXTURES / "redocred_dev_sample.json")}} \
            if source == "redocred" else {}
        return stage_section(parse_config({
            "name": "x", "ingest": {"source": source, **section}, "model": {"memory_slots": slots},
            "extract": {"backends": ["oracle"]}, "evaluate": {"ablations": ["no_memory"]}}),
            "shards")
    assert shards("synthetic", 4) == shards("synthetic", 16)  # gold recall spans
    assert shards("redocred", 4) != shards("redocred", 16)  # the heuristic reaches T + M back


def test_cli_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ningest:\n  sorce: synthetic\n")
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "flows.pipeline", "--config", str(bad),
                           "--runs-dir", str(runs)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"config error: {bad}: ingest.sorce: unknown key"
    assert not runs.exists()


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)
