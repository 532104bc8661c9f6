"""Shared test set-up. The suite runs once per backend: `KERAS_BACKEND=jax pytest`, then
tensorflow, then torch (`make test` does all three); every test runs on the active backend."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # before TensorFlow is first imported

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("KDL_SHARED_DATA", REPO.parent / "shared" / "data"))


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


_PREDICT_SCRIPT = """
import sys, numpy as np, kdl
recipe = kdl.recipes.load(sys.argv[1])
np.save(sys.argv[3], recipe.predict(np.load(sys.argv[2])).probabilities)
"""


@pytest.fixture(scope="session")
def predict_on_backends(tmp_path_factory):
    """predict_on_backends(run_dir, inputs, backends) -> {backend: probabilities}, each
    backend loading the saved run in its own process (a process has one backend)."""
    import subprocess
    import sys

    import numpy as np

    def run(run_dir, inputs, backends):
        folder = tmp_path_factory.mktemp("cross_backend")
        np.save(folder / "inputs.npy", inputs)
        results = {}
        for name in backends:
            out = folder / f"{name}.npy"
            env = dict(os.environ, KERAS_BACKEND=name, TF_CPP_MIN_LOG_LEVEL="2")
            done = subprocess.run([sys.executable, "-c", _PREDICT_SCRIPT, str(run_dir),
                                   str(folder / "inputs.npy"), str(out)],
                                  env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{name} could not load the run:\n{done.stderr[-3000:]}"
            results[name] = np.load(out)
        return results

    return run
