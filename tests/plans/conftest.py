"""Enforcement tests run the pipeline on every backend (tests/pipeline/conftest.py)."""

from tests.pipeline.conftest import log, second  # noqa: F401
from tests.storage.conftest import open_storage, storage  # noqa: F401
