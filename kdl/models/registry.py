"""Model builders looked up by name: `register(kind, name)` adds one, `get(kind, name)` finds it.

A builder is a plain function over Keras tensors; its keyword arguments are the options a
recipe config may set (`[model.options]`), checked here so a typo is a clear error.

>>> from kdl.models import registry
>>> "cnn" in registry.names("image_backbone")
True
"""

import difflib
import inspect

from kdl.errors import ConfigError

_BUILDERS = {}


def register(kind, name):
    """Decorator: make `fn` the builder called `name` among the `kind` builders."""

    def add(fn):
        _BUILDERS.setdefault(kind, {})[name] = fn
        return fn

    return add


def names(kind):
    """The registered builder names of one kind, sorted."""
    return sorted(_BUILDERS.get(kind, {}))


def get(kind, name):
    """The builder `name` of `kind`; ConfigError listing the known names otherwise."""
    known = _BUILDERS.get(kind, {})
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} Known {kind} models: {', '.join(names(kind))}")
    return known[name]


def check_options(builder, options, skip=1):
    """Raise ConfigError if `options` holds a keyword the builder does not take.

    `skip` leading positional parameters (the input tensor) are not options.
    """
    accepted = list(inspect.signature(builder).parameters.values())[skip:]
    allowed = {p.name: p.default for p in accepted}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in allowed.items())
        raise ConfigError(f"model {builder.__name__!r} has no option {unknown[0]!r}; "
                          f"its options (with defaults) are: {listed}")
