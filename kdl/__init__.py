"""kdl: task recipes written once in Keras 3 that run on JAX, TensorFlow or PyTorch.

Public surface only. Sub-modules load on first use, so `import kdl` does not import Keras
and the backend can still be chosen (`kdl.backend.select("torch")`) after it.

>>> import kdl
>>> clf = kdl.recipes.image_classifier(epochs=1)   # doctest: +SKIP
"""

import importlib

from kdl.backend import enable_compile_cache

__version__ = "0.1.0"
__all__ = ["backend", "compare", "config", "data", "errors", "evaluation", "models", "recipes"]

enable_compile_cache()    # JAX's persistent compilation cache, ~/.cache/kdl/jax (kdl.backend)


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"kdl.{name}")
    raise AttributeError(f"module 'kdl' has no attribute {name!r}")
