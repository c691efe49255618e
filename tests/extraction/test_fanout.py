"""Extraction fanned out: shards over worker processes, over a Prefect task runner in a flow,
or as shard ranges; every way writes exactly the shards and tables of one process."""

import pytest

from configs.schema import parse_config
from corpora.ingest import run_ingest
from extraction.stage import ExtractStageError, parse_shard_range, run_extract, worker_devices

CONFIG = {"name": "fan", "ingest": {"source": "synthetic", "docs_per_shard": 3,
                                    "synthetic": {"num_docs": 12, "min_distance": 20,
                                                  "max_distance": 40}},
          "extract": {"backends": ["oracle", "spacy"]}}


def _cfg(**extract):
    return parse_config({**CONFIG, "extract": {**CONFIG["extract"], **extract}})


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    run = tmp_path_factory.mktemp("one")
    run_ingest(_cfg(), run)
    result = run_extract(_cfg(), run)
    return run, result


def test_two_worker_processes_write_what_one_process_writes(one_process, tmp_path, content_of):
    run, first = one_process
    run_ingest(_cfg(workers=2), tmp_path)
    result = run_extract(_cfg(workers=2), tmp_path)
    assert result["rows"] == first["rows"] and result["counters"] == first["counters"]
    assert content_of(tmp_path) == content_of(run)
    # the number of workers is not part of what a shard is: a 1-worker rerun keeps them all
    assert run_extract(_cfg(), tmp_path)["counters"]["shards_extracted"] == 0


def test_shard_ranges_then_a_full_run_that_only_loads_the_warehouse(one_process, tmp_path, content_of):
    run, first = one_process
    run_ingest(_cfg(), tmp_path)
    part = run_extract(_cfg(), tmp_path, shards="0:2")
    assert part["outputs"] == [] and part["counters"]["shards_extracted"] == 2
    assert not (tmp_path / "triplets" / "shard_00002.parquet").exists()
    assert run_extract(_cfg(), tmp_path, shards="2:9")["counters"]["shards_extracted"] == 2
    full = run_extract(_cfg(), tmp_path)
    assert full["counters"]["shards_extracted"] == 0 and full["rows"] == first["rows"]
    assert content_of(tmp_path) == content_of(run)
    for bad in ("2", "3:1", "a:b", "-1:2"):
        with pytest.raises(ExtractStageError, match="shard range"):
            parse_shard_range(bad)


def test_in_a_flow_every_shard_is_a_task_run_on_the_task_runner(one_process, tmp_path,
                                                                 prefect_harness, content_of):
    import yaml
    from prefect.client.orchestration import get_client
    from flows.pipeline import pipeline
    run, _ = one_process
    for name, extract in (("procs", {"workers": 2}),
                          ("threads", {"task_runner": "prefect.task_runners:ThreadPoolTaskRunner",
                                       "task_runner_options": {"max_workers": 2}})):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({**CONFIG, "name": name,
                                          "extract": {**CONFIG["extract"], **extract}}))
        pipeline(config=str(config), runs_dir=str(tmp_path / "runs"), stages=["ingest", "extract"])
        assert content_of(tmp_path / "runs" / name) == content_of(run), name
    with get_client(sync_client=True) as client:
        names = [t.name for t in client.read_task_runs()]
    assert sorted(n for n in names if n.startswith("extract-shard-")) == sorted(
        f"extract-shard-{k}" for k in range(4) for _ in range(2))


def test_each_worker_gets_its_own_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert [worker_devices(w, 2, 2) for w in range(2)] == ["0,1", "2,3"]
    assert [worker_devices(w, 4, 1) for w in range(4)] == ["0", "1", "2", "3"]
    with pytest.raises(ExtractStageError, match="3 workers x 2 GPUs each need 6 GPUs, 4 are visible"):
        worker_devices(0, 3, 2)
