"""Reusing finished stages from another run folder: how a sweep extracts once.

A stage's outputs are a function of its cache key (its settings, its upstream manifests and its
code: tasks/stage.py), so when a stage of one run folder would get the key a stage already has in
another folder, the first can take the second's outputs instead of computing them again.
`adopt_stages` hard-links every output file a manifest lists (copying across file systems) and
copies the manifest; the warehouse, whose tables several stages write, is copied whole, never
linked. Every
writer in a run folder replaces a file by renaming a new one onto it (warehouse/shard_io.py), so
a linked file is never changed through the other folder.

    key = stage_key(cfg, run_dir, spec, plan)          # None while an upstream stage is missing
    source = folder_with_stage(spec, key, other_folders)
    adopt_stages(source, run_dir, [spec])
    stale_stages(cfg, run_dir, plan, names)             # which of `names` must (re)run here
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from configs.schema import RunConfig
from tasks.stage import (MissingUpstream, StageSpec, cache_key, is_current, manifest_path,
                         read_manifest, upstream_fingerprints)
from warehouse.db import DB_NAME
from warehouse.shard_io import atomic_path, write_text_atomically


def stage_key(cfg: RunConfig, run_dir: Path, spec: StageSpec, plan: list[StageSpec]) -> str | None:
    """The cache key `spec` has in `run_dir` now, or None while an upstream stage has not run."""
    try:
        return cache_key(cfg, spec, upstream_fingerprints(run_dir, spec, plan))
    except MissingUpstream:
        return None


def stale_stages(cfg: RunConfig, run_dir: Path, plan: list[StageSpec],
                 names: Iterable[str]) -> list[str]:
    """The stages of `names` (in plan order) that are not current in `run_dir`, with every
    stage downstream of one of them."""
    wanted, stale = set(names), set()
    for spec in plan:
        if spec.name not in wanted:
            continue
        key = None if stale & set(spec.upstream) else stage_key(cfg, run_dir, spec, plan)
        if key is None or not is_current(run_dir, spec, key):
            stale.add(spec.name)
    return [s.name for s in plan if s.name in stale]


def folder_with_stage(spec: StageSpec, key: str, folders: Iterable[Path]) -> Path | None:
    """The first of `folders` where `spec` finished with cache key `key` and its outputs exist."""
    return next((Path(f) for f in folders if is_current(Path(f), spec, key)), None)


def _link(source: Path, target: Path) -> None:
    """`target` becomes a hard link of `source` (a copy across file systems)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def link_tree(source: Path, target: Path) -> None:
    """Hard-link a file, or every file of a folder (which replaces what `target` held)."""
    if source.is_dir():
        if target.exists():
            shutil.rmtree(target)
        for path in sorted(source.rglob("*")):
            if path.is_file():
                _link(path, target / path.relative_to(source))
    else:
        _link(source, target)


def copy_warehouse(source_dir: Path, run_dir: Path) -> None:
    """The warehouse of `source_dir` (with its write-ahead log, if any) as this folder's own."""
    for name in (DB_NAME, f"{DB_NAME}.wal"):
        source, target = Path(source_dir) / name, Path(run_dir) / name
        if source.is_file():
            with atomic_path(target) as tmp:
                shutil.copy2(source, tmp)
        elif target.exists():
            target.unlink()  # a log of the folder's earlier warehouse would corrupt the copy


def adopt_stages(source_dir: Path, run_dir: Path, specs: Iterable[StageSpec],
                 warehouse: bool) -> None:
    """Make the finished `specs` of `source_dir` this folder's: link their outputs and copy their
    manifests; with `warehouse`, copy the warehouse first (the stages that wrote tables to it)."""
    source_dir, run_dir = Path(source_dir), Path(run_dir)
    if warehouse:
        copy_warehouse(source_dir, run_dir)
    for spec in specs:
        manifest = read_manifest(source_dir, spec)
        if manifest is None:
            raise FileNotFoundError(f"{manifest_path(source_dir, spec)}: no manifest to adopt")
        for output in manifest.get("outputs", {}):  # files; "table:<name>" come with the warehouse
            if not output.startswith("table:") and output != DB_NAME:
                link_tree(source_dir / output, run_dir / output)
        write_text_atomically(manifest_path(source_dir, spec).read_text(encoding="utf-8"),
                              manifest_path(run_dir, spec))
