"""The active Keras backend, its devices, seeding and numeric settings.

The active-backend queries every part of kdl uses; with kdl.distribute (multi-device plans)
the only place that talks to JAX, TensorFlow or PyTorch directly, besides the native training
loops that `kdl compare --baseline` times (kdl.compare.baselines). The backend is chosen
once per process, before Keras is imported (`KERAS_BACKEND`, or `select()`, which the CLI's
`--backend` calls); kdl then uses whatever Keras was imported with.

>>> from kdl import backend
>>> backend.name() in backend.BACKENDS
True
>>> any(d.startswith("cpu") for d in backend.devices())
True
"""

import importlib.metadata
import os
import platform
import sys

import numpy as np

from kdl.errors import BackendError

BACKENDS = ("jax", "tensorflow", "torch")


def _check_known(name):
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def check_environment():
    """Raise BackendError if $KERAS_BACKEND names a backend kdl does not know, before Keras is
    imported (Keras would fail with a bare ValueError)."""
    name = os.environ.get("KERAS_BACKEND")
    if name is not None and "keras" not in sys.modules and name not in BACKENDS:
        raise BackendError(f"the environment sets KERAS_BACKEND={name!r}, which is not a backend kdl "
                           f"knows; set it to one of {', '.join(BACKENDS)}, or pass --backend")


def select(name):
    """Make `name` the backend of this process. Call before Keras is imported.

    Once Keras is imported the backend is fixed: asking for another one is an error.
    """
    _check_known(name)
    if "keras" in sys.modules:
        require(name)
        return
    os.environ["KERAS_BACKEND"] = name
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out


def name():
    """The backend Keras runs on in this process: "jax", "tensorflow" or "torch"."""
    import keras

    return keras.backend.backend()


def require(wanted):
    """Raise BackendError unless Keras was imported with the backend `wanted`."""
    _check_known(wanted)
    active = name()
    if active != wanted:
        raise BackendError(
            f"Keras was imported with the {active!r} backend, so this process cannot run on "
            f"{wanted!r}. Start a new process with KERAS_BACKEND={wanted} (or `kdl ... --backend "
            f"{wanted}`); `kdl compare` runs each backend in its own process."
        )


def devices():
    """The devices the active backend sees, e.g. ["cpu:0"] or ["cpu:0", "gpu:0", "gpu:1"]."""
    backend = name()
    if backend == "jax":
        import jax

        found = {f"{d.platform}:{d.id}" for d in jax.devices()} | {"cpu:0"}
        return sorted(found)
    if backend == "tensorflow":
        import tensorflow as tf

        kinds = [d.device_type.lower() for d in tf.config.list_logical_devices()]
        return [f"{kind}:{kinds[:i].count(kind)}" for i, kind in enumerate(kinds)]
    import torch

    found = ["cpu:0"] + [f"gpu:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps:0")
    return found


def accelerator():
    """"gpu", "tpu" or "cpu": the fastest kind of device the active backend sees."""
    kinds = {d.split(":")[0] for d in devices()}
    return next((kind for kind in ("tpu", "gpu", "mps") if kind in kinds), "cpu")


def steps_per_execution(requested):
    """`requested`, or 1 on PyTorch, whose Keras trainer runs exactly one step per call, and
    under a tf.distribute.(MultiWorker)MirroredStrategy, whose multi-step loop fails in Keras 3
    (keras-team/keras#19246: "You must feed a value for placeholder tensor")."""
    if name() == "tensorflow":
        import tensorflow as tf

        if isinstance(tf.distribute.get_strategy(), (tf.distribute.MirroredStrategy,
                                                     tf.distribute.MultiWorkerMirroredStrategy)):
            return 1
    return 1 if name() == "torch" else int(requested)


COMPILE_CACHE_MIN_SECONDS = 0     # even a 20 ms compile (a zeros initializer) costs more than a read


def compile_cache_dir():
    """The folder where JAX keeps compiled programs between processes: $KDL_COMPILE_CACHE, else
    $XDG_CACHE_HOME/kdl/jax (~/.cache/kdl/jax); None when KDL_COMPILE_CACHE is "off"."""
    chosen = os.environ.get("KDL_COMPILE_CACHE", "").strip()
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.abspath(os.path.join(root, "kdl", "jax"))


def enable_compile_cache():
    """Turn on JAX's persistent compilation cache (compile_cache_dir()), so a second run of the
    same recipe loads its train, evaluation and predict programs instead of compiling them again
    (digits CNN, 3 epochs: fit 6.9 s -> 1.9 s; docs/benchmarks.md). Called by `import kdl`.

    JAX keys every entry by the program's HLO, the compile options and flags, the jax/jaxlib
    versions and the device kind, so a cached program is only reused where it is the same
    program for the same machine. No size limit is set: with one, JAX lists and reads the whole
    folder under a file lock on every write to find the least recently used entries (about
    8,500 files by the end of the JAX test session, 63 MB). The folder may be deleted at any
    time. A JAX setting the user made (JAX_COMPILATION_CACHE_DIR, jax.config) is left as it is.
    TensorFlow's and PyTorch's default (non-XLA, non-compiled) Keras steps have no such cache.
    """
    folder = compile_cache_dir()
    if folder is None:
        return
    existing = folder
    while not os.path.exists(existing):            # the folder, or where it would be created
        existing = os.path.dirname(existing)
    if not (os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)):
        import warnings

        warnings.warn(f"kdl: JAX's compile cache is off: {folder} cannot be written ({existing} is "
                      "not a writable folder); set KDL_COMPILE_CACHE to a writable folder, or to off",
                      stacklevel=2)
        return
    settings = {"jax_compilation_cache_dir": folder,
                "jax_persistent_cache_min_compile_time_secs": COMPILE_CACHE_MIN_SECONDS}
    if "jax" not in sys.modules:       # read by JAX when it is imported
        for setting, value in settings.items():
            os.environ.setdefault(setting.upper(), str(value))
        return
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        for setting, value in settings.items():
            jax.config.update(setting, value)


def set_seed(seed):
    """Seed Python, NumPy and the backend's random generators (weights init, dropout, shuffles)."""
    import keras

    keras.utils.set_random_seed(int(seed))


def use_exact_float32():
    """Turn off TF32 matrix maths so float32 results agree across backends on GPUs.

    No effect on CPUs. Called by every recipe before training (the comparisons need it).
    """
    backend = name()
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    else:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def sync_training_state(model):
    """Bring the trainer's state back into `model`'s variables, to read them between steps of an
    epoch: Keras' JAX trainer keeps it outside them until the epoch ends (a no-op elsewhere)."""
    if name() == "jax":
        model.jax_state_sync()


def unshare_averaged_weights(model):
    """After a fit with `train.ema`: give `model`'s weights buffers of their own. On JAX, Keras
    ends fit by assigning the optimizer's moving-average arrays to the model's variables, so both
    hold one buffer, and the next evaluate or predict donates it to XLA: saving the optimizer then
    reads a deleted array. A copy per weight (a no-op elsewhere, whose assign copies)."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)     # under loss scaling
    if name() == "jax" and getattr(optimizer, "use_ema", False):
        import jax.numpy as jnp

        for weight in model.trainable_weights:
            weight.assign(jnp.array(weight.value, copy=True))


def gradient(function, x):
    """(values, gradients) as NumPy: `function` maps a batch `x` to one value per example (B,), and
    gradients[i] = d values[i] / d x[i] (the gradient of their sum: examples do not interact in
    inference mode). The one place kdl.explain differentiates a model.

    >>> import keras, numpy as np
    >>> values, grads = gradient(lambda x: keras.ops.sum(x ** 2, axis=1), np.array([[1.0, 2.0]], "float32"))
    >>> values.tolist(), grads.tolist()
    ([5.0], [[2.0, 4.0]])
    """
    backend = name()
    x = np.asarray(x)
    if backend == "jax":
        import jax

        def total(x):
            values = function(x)
            return jax.numpy.sum(values), values

        (_, values), grads = jax.value_and_grad(total, has_aux=True)(jax.numpy.asarray(x))
        return np.asarray(values), np.asarray(grads)
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            values = function(x)
        return values.numpy(), tape.gradient(values, x).numpy()
    import keras

    x = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)    # on the backend's device
    values = function(x)
    grads, = __import__("torch").autograd.grad(values.sum(), x)
    return values.detach().cpu().numpy(), grads.detach().cpu().numpy()


def peak_device_memory():
    """Peak bytes the active backend has allocated on its first accelerator, None on CPU."""
    if accelerator() == "cpu":
        return None
    backend = name()
    if backend == "jax":
        import jax

        return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"]
    import torch

    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None


def versions():
    """Installed versions of Python, kdl and the libraries it runs on (None when absent)."""
    packages = ("kdl", "keras", "jax", "jaxlib", "tensorflow", "torch", "tensorflow-datasets",
                "scikit-learn", "numpy")
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def info():
    """Backend, devices, the compile cache (JAX) and versions in one dict (what `kdl info` prints)."""
    cache = None
    if name() == "jax":
        import jax

        cache = jax.config.jax_compilation_cache_dir
    return {"backend": name(), "devices": devices(), "accelerator": accelerator(),
            "compile_cache": cache, "versions": versions()}
