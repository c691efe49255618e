"""Stage code versions come from import closures: right in both directions, shown on a copy of
the repository (a finished run's manifests, an edit, then the plan's statuses)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from configs.fingerprint import import_closure

REPO = Path(__file__).resolve().parents[2]

# Writes a manifest with the current key for every stage (a finished run), or prints the plan.
SCRIPT = """
import json, sys
from pathlib import Path
from configs.schema import parse_config
from tasks.stage import cache_key, plan_stages, upstream_fingerprints, write_manifest
cfg = parse_config({"name": "copy"})
run = Path(sys.argv[2])
plan = plan_stages(cfg)
if sys.argv[1] == "finish":
    from warehouse.db import connect
    run.mkdir(parents=True)
    connect(run).close()  # an (empty) warehouse for the stages' tables
    for spec in plan:
        up = upstream_fingerprints(run, spec, plan)
        write_manifest(run, spec, cache_key(cfg, spec, up), up, {"outputs": [], "rows": {}}, 0.0)
else:
    from flows.pipeline import dry_run
    print(json.dumps({r["stage"]: r["status"] for r in dry_run(cfg, "c.yaml", run.parent, None, None)}))
"""


def _copy_repo(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    (dest / "plan.py").write_text(SCRIPT)
    return dest


def _run(copy: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "plan.py", *args], cwd=copy, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(copy)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


@pytest.fixture
def finished_copy(tmp_path):
    copy = _copy_repo(tmp_path / "repo")
    run = tmp_path / "runs" / "copy"
    _run(copy, "finish", str(run))
    return copy, run


def test_an_edit_no_stage_imports_leaves_every_stage_current(finished_copy):
    copy, run = finished_copy
    for module in ("corpora/conll04.py", "research/bench_memory.py", "extraction/score.py"):
        _edit(copy / module)
    statuses = json.loads(_run(copy, "plan", str(run)))
    assert set(statuses.values()) == {"cached"}, statuses


def test_an_edit_of_the_parser_makes_extract_and_downstream_stale(finished_copy):
    copy, run = finished_copy
    _edit(copy / "extraction" / "parsing.py")  # the vLLM backend's, reached through the registry
    statuses = json.loads(_run(copy, "plan", str(run)))
    assert statuses["ingest"] == statuses["tokenizer"] == "cached"
    assert statuses["extract"] == "will run"
    downstream = {"canonicalize", "shards", "train-window", "train-triplet", "train-raw",
                  "train-full", "evaluate", "report"}
    assert {statuses[s] for s in downstream} == {"after upstream"}, statuses


def test_closures_follow_lazy_imports_and_skip_configs():
    closure = {p.relative_to(REPO).as_posix() for p in import_closure(("extraction.stage",))}
    assert {"extraction/parsing.py", "extraction/oracle.py", "warehouse/db.py",
            "warehouse/schema.sql"} <= closure  # the oracle is imported inside a function
    assert not any(p.startswith(("configs/", "corpora/", "model/")) for p in closure)
    ingest = {p.relative_to(REPO).as_posix() for p in import_closure(("corpora.ingest",))}
    assert "corpora/synthetic.py" in ingest and "corpora/conll04.py" not in ingest
