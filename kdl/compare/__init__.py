"""Backend comparison runs: `kdl.compare(recipe, backends=...)` -> Comparison.

`kdl.compare` is this module and is also callable, so `kdl.compare(...)` runs a comparison.
"""

import sys
import types

from kdl.compare.report import Comparison
from kdl.compare.runner import compare

__all__ = ["Comparison", "compare"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
