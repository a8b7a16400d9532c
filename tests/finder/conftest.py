"""The finder's tests use the pipeline's backends and `Log` (tests/pipeline/conftest.py)."""

from tests.pipeline.conftest import log, second  # noqa: F401
from tests.storage.conftest import open_storage, storage  # noqa: F401
