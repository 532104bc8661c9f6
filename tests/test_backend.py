"""kdl.backend on the active backend: name, devices, seeding, and the one-backend-per-process rule."""

import os

import keras
import numpy as np
import pytest

from kdl import backend
from kdl.errors import BackendError


def test_name_is_the_backend_keras_was_imported_with():
    assert backend.name() == keras.backend.backend() == os.environ.get("KERAS_BACKEND", backend.name())


def test_devices_include_the_cpu():
    assert "cpu:0" in backend.devices()
    assert backend.accelerator() in ("cpu", "gpu", "tpu", "mps")


def test_set_seed_makes_weight_init_repeatable():
    backend.set_seed(7)
    first = keras.random.normal((3, 4))
    backend.set_seed(7)
    second = keras.random.normal((3, 4))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(second))


def test_asking_for_another_backend_is_a_clear_error():
    other = next(b for b in backend.BACKENDS if b != backend.name())
    message = f"imported with the '{backend.name()}' backend.*KERAS_BACKEND={other}"
    with pytest.raises(BackendError, match=message):
        backend.require(other)
    with pytest.raises(BackendError, match=f"imported with the '{backend.name()}' backend"):
        backend.select(other)
    backend.select(backend.name())  # the active one is fine


def test_unknown_backend_name():
    with pytest.raises(BackendError, match="unknown backend 'jaxx'; choose one of: jax, tensorflow, torch"):
        backend.select("jaxx")


def test_versions_name_the_libraries():
    versions = backend.versions()
    assert versions["keras"] == keras.__version__
    assert {"python", "jax", "tensorflow", "torch"} <= set(versions)

