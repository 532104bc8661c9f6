"""Shared test set-up. The suite runs once per backend: `KERAS_BACKEND=jax pytest`, and the
same on tensorflow and torch (`make test` runs the three sessions side by side); every test runs on
the active backend."""

import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # before TensorFlow is first imported

# Hypothesis (tests/test_fuzz_readers.py): "kdl" is quick and the same on every run;
# HYPOTHESIS_PROFILE=long, or the `-m slow` fuzz tests, run many random examples.
FUZZ = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("kdl", max_examples=40, derandomize=True, **FUZZ)
settings.register_profile("long", max_examples=500, print_blob=True, **FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "kdl"))

collect_ignore = ["fixtures"]    # saved runs and the script that made them, not tests

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("KDL_SHARED_DATA", REPO.parent / "shared" / "data"))


def next_backend(name):
    """The backend after `name` in jax -> tensorflow -> torch -> jax. A test that loads a run saved
    here on this one backend covers, over the three sessions of `make test`, every backend loading
    a run another saved, in half the processes of loading it on both others.

    >>> next_backend("torch")
    'jax'
    """
    from kdl.backend import BACKENDS

    return BACKENDS[(BACKENDS.index(name) + 1) % len(BACKENDS)]


def pytest_report_header(config):
    import keras

    return f"kdl tests on backend: {keras.backend.backend()} (keras {keras.__version__})"


@pytest.fixture(scope="session")
def backend():
    """The name of the backend this test session runs on."""
    import keras

    return keras.backend.backend()


@pytest.fixture(scope="session")
def shared_data():
    """The real datasets folder `../shared/data` (CI has it; a user's clone may not)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set KDL_SHARED_DATA)")
    return SHARED_DATA
