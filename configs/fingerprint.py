"""Fingerprints that key stages and shards: of a config value, and of a stage's code.

A stage's code version is the hash of every repository module its entry module imports,
directly or through other repository modules (its import closure), read statically from the
source: `import x.y` and `from x import y`, at module level or inside functions, so an import
made lazily in a function counts. Editing a module a stage does not import never changes its
version; editing one it does always does. A data file beside the modules (`*.sql`) counts when a
module of the closure names it (warehouse/db.py reads schema.sql).

The `configs` package is not followed: what a stage takes from the config is its resolved
section (`configs.schema.stage_section`), which is keyed by value, and configs/schema.py imports
every component's section class (corpora, extraction, model), which would otherwise make every
stage depend on every component.

    code_version(("extraction.stage",))        # -> '3f1c9a...' (16 hex digits)
    import_closure(("extraction.stage",))      # -> [Path('extraction/stage.py'), ...]
"""
from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
NOT_FOLLOWED = ("configs",)
DATA_SUFFIXES = (".sql",)


def config_fingerprint(obj: Any) -> str:
    """A short stable hash of any JSON-able value (a config section, a manifest)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@lru_cache(maxsize=4096)
def file_content_hash(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file's bytes, computed once per (path, size, modification time) per process."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def module_file(name: str, root: Path = REPO_ROOT) -> Path | None:
    """The repository file of module `name` (a package's __init__.py), or None outside the repo."""
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _imported_names(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """Every absolute module name a file imports (and `from m import x` as m and m.x)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return tuple(names)


def _imports(path: Path) -> tuple[str, ...]:
    stat = path.stat()
    return _imported_names(str(path), stat.st_mtime_ns, stat.st_size)


def import_closure(modules: tuple[str, ...], root: Path = REPO_ROOT) -> list[Path]:
    """The repository files `modules` import, transitively, themselves included (sorted)."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name.split(".")[0] in NOT_FOLLOWED:
            continue
        parts = name.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py too
        for i in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:i]), root)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imports(path))
    data = {f for path in seen for f in path.parent.iterdir()
            if f.suffix in DATA_SUFFIXES and f.name in path.read_text(encoding="utf-8")}
    return sorted(seen | data)


def code_version(modules: tuple[str, ...], root: Path = REPO_ROOT) -> str:
    """Hash of the import closure of `modules` (paths and contents)."""
    h = hashlib.sha256()
    for path in import_closure(modules, root):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
