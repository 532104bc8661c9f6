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



FIT_ONCE = """
import json, kdl
recipe = kdl.recipes.image_classifier(epochs=1, limit=256, steps_per_execution=4)
print(json.dumps(recipe.fit(verbose=0).history["loss"]))
"""


def _fit_in_a_new_process(env):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FIT_ONCE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1], done.stderr


def test_a_second_process_loads_jax_programs_from_the_compile_cache(tmp_path, backend):
    """The same recipe trained in two processes: on JAX the second loads its train step from
    KDL_COMPILE_CACHE instead of compiling it, and trains to the same losses. TensorFlow's and
    PyTorch's default Keras steps have no persistent cache: there nothing may be written."""
    cache = tmp_path / "cache"
    env = {**os.environ, "KDL_COMPILE_CACHE": str(cache), "JAX_LOG_COMPILES": "1"}
    for name in ("JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
        env.pop(name, None)
    first_losses, first_log = _fit_in_a_new_process(env)
    hit = "Persistent compilation cache hit for 'jit_train_step'"
    if backend != "jax":
        assert not cache.exists()
        return
    assert hit not in first_log and any(cache.iterdir())
    second_losses, second_log = _fit_in_a_new_process(env)
    assert hit in second_log
    assert second_losses == first_losses


def test_the_compile_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KDL_COMPILE_CACHE", "off")
    assert backend.compile_cache_dir() is None
    monkeypatch.setenv("KDL_COMPILE_CACHE", str(tmp_path / "c"))
    assert backend.compile_cache_dir() == str(tmp_path / "c")
    monkeypatch.delenv("KDL_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert backend.compile_cache_dir() == str(tmp_path / "kdl" / "jax")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")    # XDG forbids it; import kdl hung on it
    assert backend.compile_cache_dir() == str(tmp_path / "relative" / "kdl" / "jax")


def test_info_names_the_compile_cache_on_jax():
    expected = backend.compile_cache_dir() if backend.name() == "jax" else None
    if "JAX_COMPILATION_CACHE_DIR" in os.environ and backend.name() == "jax":
        expected = os.environ["JAX_COMPILATION_CACHE_DIR"]    # the user's own setting wins
    assert backend.info()["compile_cache"] == expected


def test_an_unwritable_compile_cache_folder_is_a_clear_warning_not_an_error(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("KDL_COMPILE_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match=f"compile cache is off: {blocker / 'cache'} cannot be written"):
        backend.enable_compile_cache()
