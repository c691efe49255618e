"""One spaCy backend per test session (loading the model takes seconds on a shared CPU)."""
import pytest

from extraction.coref import CorefConfig
from extraction.spacy_backend import SpacyConfig


@pytest.fixture(scope="session")
def spacy_backend():
    from extraction.spacy_backend import SpacyBackend
    return SpacyBackend(SpacyConfig(batch_size=16), CorefConfig())
