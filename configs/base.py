"""The base of every config section: strict (unknown keys are errors) and immutable.

Each component owns its section (torchtitan's habit): a corpus source its `ingest.<source>`
block (corpora/), an extraction backend its `extract.<backend>` block (extraction/registry.py);
configs/schema.py assembles them into one `RunConfig`.
"""
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
