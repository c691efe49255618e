"""The Prefect spine end to end on real stages: caching, reruns, --force, --dry-run, the CLI."""
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

SMALL = {
    "name": "small",
    "ingest": {"source": "synthetic", "docs_per_shard": 20,
               "synthetic": {"num_docs": 60, "min_distance": 20, "max_distance": 40}},
    "tokenizer": {"vocab_size": 320},
}


def _write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _statuses(summary):
    return {k: v["status"] for k, v in summary.items()}


def test_second_run_is_cached_and_settings_rerun_downstream(tmp_path, prefect_harness):
    from flows.pipeline import pipeline
    config = _write(tmp_path / "small.yaml", SMALL)
    runs = str(tmp_path / "runs")
    first = pipeline(config=config, runs_dir=runs, stages=["ingest", "tokenizer"])
    assert _statuses(first) == {"ingest": "ran", "tokenizer": "ran"}
    run_dir = tmp_path / "runs" / "small"
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "ingest" / "manifest.json").is_file()
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()

    again = pipeline(config=config, runs_dir=runs, stages=["ingest", "tokenizer"])
    assert _statuses(again) == {"ingest": "cached", "tokenizer": "cached"}

    # a tokenizer setting reruns the tokenizer only
    bigger = {**SMALL, "tokenizer": {"vocab_size": 400}}
    config2 = _write(tmp_path / "small2.yaml", bigger)
    changed = pipeline(config=config2, runs_dir=runs, stages=["ingest", "tokenizer"])
    assert _statuses(changed) == {"ingest": "cached", "tokenizer": "ran"}

    # --force reruns ingest; its output is identical, so the tokenizer stays cached
    forced = pipeline(config=config2, runs_dir=runs, stages=["ingest", "tokenizer"], force=["ingest"])
    assert _statuses(forced) == {"ingest": "ran", "tokenizer": "cached"}

    # an output deleted from disk is rebuilt even though Prefect's cache has the key
    (run_dir / "tokenizer" / "tokenizer.json").unlink()
    rebuilt = pipeline(config=config2, runs_dir=runs, stages=["tokenizer"])
    assert _statuses(rebuilt) == {"tokenizer": "ran"}
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()

    from warehouse.db import connect
    con = connect(run_dir, read_only=True)
    runs_logged = con.execute("SELECT stage, count(*) FROM stage_runs GROUP BY 1 ORDER BY 1").fetchall()
    con.close()
    assert runs_logged == [("ingest", 2), ("tokenizer", 3)]


def _cli(*args, cwd=REPO):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows.pipeline", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    return proc, time.perf_counter() - t0


def test_cli_rerun_is_cached_and_fast(tmp_path):
    config = _write(tmp_path / "small.yaml", SMALL)
    runs = str(tmp_path / "runs")
    proc, _ = _cli("--config", config, "--runs-dir", runs, "--stages", "ingest,tokenizer")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, seconds = _cli("--config", config, "--runs-dir", runs, "--stages", "ingest,tokenizer")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {ln.split()[0]: ln.split()[1] for ln in proc.stdout.splitlines()
             if ln.split() and ln.split()[0] in ("ingest", "tokenizer")}
    assert lines == {"ingest": "cached", "tokenizer": "cached"}
    assert seconds < 30, f"cached rerun took {seconds:.1f} s"

    dry, _ = _cli("--config", config, "--runs-dir", runs, "--dry-run")
    table = dry.stdout.split("\n\n")[0].splitlines()[1:]  # the stage table; the training plan follows
    status = {ln.split()[0]: " ".join(ln.split()[1:3]) for ln in table}
    assert status["ingest"].startswith("cached") and status["tokenizer"].startswith("cached")
    assert status["extract"] == "will run"
    assert "model.train" in dry.stdout


def test_cli_refuses_stage_without_upstream(tmp_path):
    config = _write(tmp_path / "small.yaml", SMALL)
    proc, _ = _cli("--config", config, "--runs-dir", str(tmp_path / "runs"), "--stages", "tokenizer")
    assert proc.returncode == 2
    assert "stage 'tokenizer' needs stage 'ingest'" in proc.stderr
    proc, _ = _cli("--config", config, "--stages", "tokenise", "--dry-run")
    assert proc.returncode == 2 and "unknown stage 'tokenise'" in proc.stderr


def test_shard_ranges_share_a_run_folder_and_a_whole_run_loads_the_warehouse(tmp_path):
    config = _write(tmp_path / "small.yaml", {**SMALL, "extract": {"backends": ["oracle"]},
                                              "ingest": {**SMALL["ingest"], "docs_per_shard": 10}})
    runs = str(tmp_path / "runs")
    proc, _ = _cli("--config", config, "--runs-dir", runs, "--stages", "ingest")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranges = [subprocess.Popen([sys.executable, "-m", "flows.pipeline", "--config", config,
                                "--runs-dir", runs, "--stages", "extract", "--shards", r],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for r in ("0:3", "3:6")]  # at the same time: the shared lock lets both in
    outs = [p.communicate(timeout=600) for p in ranges]
    assert [p.returncode for p in ranges] == [0, 0], [e[-2000:] for _, e in outs]
    assert all("ran shards" in o for o, _ in outs)
    shards = sorted(p.name for p in (tmp_path / "runs" / "small" / "triplets").glob("shard_*"))
    assert shards == [f"shard_{k:05d}.parquet" for k in range(6)]
    proc, _ = _cli("--config", config, "--runs-dir", runs, "--stages", "extract")
    assert proc.returncode == 0 and re.search(r"^extract\s+ran\b.*'triplets': 1\d\d\d", proc.stdout, re.M)
    bad, _ = _cli("--config", config, "--runs-dir", runs, "--shards", "0:2")
    assert bad.returncode == 2 and "--shards goes with --stages extract alone" in bad.stderr
