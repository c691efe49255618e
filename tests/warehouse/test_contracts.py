"""The run folder's contracts: one writer per warehouse table, one home per schema."""
import re
from pathlib import Path

from configs.fingerprint import import_closure
from tasks.stage import STAGE_TABLE
from warehouse.contracts import SHARD_KINDS, TABLE_WRITERS

REPO = Path(__file__).resolve().parents[2]
WRITE = re.compile(r"\b(?:INSERT\s+INTO|DELETE\s+FROM|UPDATE|TRUNCATE|DROP\s+TABLE|ALTER\s+TABLE)"
                   r"\s+(\w+)", re.IGNORECASE)


def _closure(stage: str) -> set[str]:
    """The files a stage runs (its entry's import closure)."""
    if stage == "pipeline":  # stage_runs: written around every stage by the stage machinery
        return {"tasks/stage.py"}
    d = next(d for d in STAGE_TABLE if d.name == stage)
    return {p.relative_to(REPO).as_posix()
            for p in import_closure((d.entry.split(":")[0], *d.code))}


def test_every_table_is_written_only_by_its_stage():
    sources = [p for p in REPO.rglob("*.py")
               if not p.relative_to(REPO).parts[0] in (".venv", "tests", "build")]
    writes: dict[str, set[str]] = {}
    for path in sources:
        for table in WRITE.findall(path.read_text(encoding="utf-8")):
            if table in TABLE_WRITERS:
                writes.setdefault(table, set()).add(path.relative_to(REPO).as_posix())
    assert set(writes) == set(TABLE_WRITERS), "a table nobody writes, or a write not found"
    closures = {stage: _closure(stage) for stage in {*TABLE_WRITERS.values(), *(d.name for d in STAGE_TABLE)}}
    for table, files in writes.items():
        writer = TABLE_WRITERS[table]
        assert files <= closures[writer], (table, files)  # the writer runs the code that writes
        for stage, closure in closures.items():
            if stage != writer:
                assert not files & closure, (table, stage, files & closure)  # and nobody else


def test_every_shard_kind_has_a_writer_stage_and_a_view():
    stages = {d.name for d in STAGE_TABLE}
    assert {k.writer for k in SHARD_KINDS.values()} <= stages
    assert len({k.view for k in SHARD_KINDS.values()}) == len(SHARD_KINDS)
