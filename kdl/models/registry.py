"""Backbones looked up by kind and name: `register(kind, name)` adds one, `get(kind, name)` finds it.

Every kind is a backbone kind; the task model builders (`image_classifier`, ...) put the inputs
and the head around one. The registry knows which module defines each kind's backbones
(`MODULES`) and imports it on the first lookup of that kind, so nothing is imported just to
register builders. A builder's parameters without a default are its inputs (tensors, sizes);
those with one are the options a recipe config may set (`[model.options]`), checked here so
that a typo is a clear error.

>>> from kdl.models import registry
>>> "cnn" in registry.names("image_backbone")
True
>>> registry.get("image_backbone", "resnt")
Traceback (most recent call last):
kdl.errors.ConfigError: unknown model 'resnt'; did you mean 'resnet'? Known image_backbone models: cnn, resnet
"""

import difflib
import importlib
import inspect

from kdl.errors import ConfigError

MODULES = {                        # kind -> the module whose import registers its builders
    "image_backbone": "kdl.models.image.backbones",
    "text_backbone": "kdl.models.text.backbones",
    "translation_backbone": "kdl.models.text.translator",
    "audio_backbone": "kdl.models.audio.backbones",
    "speech_encoder": "kdl.models.audio.backbones",
    "masked_lm_backbone": "kdl.models.text.language_model",
}

_BUILDERS = {kind: {} for kind in MODULES}


def register(kind, name):
    """Decorator: make `fn` the builder called `name` among the `kind` builders."""
    _check_kind(kind)

    def add(fn):
        _BUILDERS[kind][name] = fn
        return fn

    return add


def names(kind):
    """The registered builder names of one kind, sorted."""
    return sorted(_builders(kind))


def get(kind, name):
    """The builder `name` of `kind`; ConfigError listing the known names otherwise."""
    known = _builders(kind)
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ConfigError(f"unknown model {name!r}{hint} Known {kind} models: {', '.join(sorted(known))}")
    return known[name]


def check_options(builder, options, skip=None):
    """Raise ConfigError if `options` holds a keyword the builder does not take.

    The builder's first `skip` parameters are not options; by default, those without a default
    value (its inputs: tensors, vocabulary sizes, ...).
    """
    parameters = list(inspect.signature(builder).parameters.values())
    if skip is None:
        skip = sum(p.default is inspect.Parameter.empty for p in parameters)
    allowed = {p.name: p.default for p in parameters[skip:]}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in allowed.items())
        raise ConfigError(f"model {builder.__name__!r} has no option {unknown[0]!r}; "
                          f"its options (with defaults) are: {listed}")


def _check_kind(kind):
    if kind not in MODULES:
        raise ConfigError(f"unknown model kind {kind!r}; known kinds: {', '.join(MODULES)}")


def _builders(kind):
    """The `kind` builders, after importing the module that registers them (once; Python caches it)."""
    _check_kind(kind)
    importlib.import_module(MODULES[kind])
    return _BUILDERS[kind]
