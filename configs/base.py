"""The base of every config section: strict (unknown keys are errors), immutable, finite.

Every float setting must be a finite number: `.inf` or `.nan` in YAML is refused at load (a
learning rate of inf would make the loss NaN from the second step).

Each component owns its section (torchtitan's habit): a corpus source its `ingest.<source>`
block (corpora/), an extraction backend its `extract.<backend>` block (extraction/registry.py);
configs/schema.py assembles them into one `RunConfig`.
"""
import re

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def folder_name(name: str) -> str:
    """`name` when it can name a folder (a run, a sweep grid), else ValueError saying what can."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError("must be a plain folder name (letters, digits, '_', '-', '.')")
    return name
