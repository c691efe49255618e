"""A named table of components (corpus sources, extraction backends, training variants).

    VARIANTS = Table("training variant")
    VARIANTS.add(Variant("window", ...))       # a name may be added once
    VARIANTS.lookup("window")                  # ValueError naming the known entries otherwise

Config validation reads these tables, so adding a component is one `add` beside its own code.
"""
from __future__ import annotations

from typing import Generic, TypeVar

Entry = TypeVar("Entry")


class Table(dict[str, Entry], Generic[Entry]):
    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def add(self, entry: Entry) -> Entry:
        name = entry.name  # type: ignore[attr-defined]
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered already")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> Entry:
        if name not in self:
            raise ValueError(f"unknown {self.what} {name!r}; known: {', '.join(self)}")
        return self[name]
