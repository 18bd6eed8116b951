"""Suite-wide settings: quiet TensorFlow and a private qskew cache for the whole test session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Point QSKEW_CACHE_DIR at a temp folder unless the caller set one (CI sets its own)."""
    if "QSKEW_CACHE_DIR" not in os.environ:
        os.environ["QSKEW_CACHE_DIR"] = str(tmp_path_factory.mktemp("qskew-cache"))
    yield
