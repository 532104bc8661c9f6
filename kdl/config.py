"""Recipe configs: dataclasses that round-trip to TOML, with `section.field=value` overrides.

A recipe is data. The TOML files in `recipes/`, `kdl.recipes.X(**overrides)` and
`kdl train FILE --set train.epochs=3` all end in one config object of the recipe's class.

>>> from dataclasses import dataclass, field
>>> @dataclass
... class Train:
...     epochs: int = 10
>>> @dataclass
... class Config:
...     seed: int = 0
...     train: Train = field(default_factory=Train)
>>> config = from_dict(Config, {"train": {"epochs": 3}})
>>> config = override(config, "train.epochs=5")
>>> from_toml(Config, to_toml(config)) == config
True
"""

import dataclasses
import difflib
import tomllib
import types
import typing

import tomli_w

from kdl.errors import ConfigError


def to_dict(config):
    """A config as nested plain dicts, without None values (TOML has no null)."""

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(config))


def to_toml(config, header=""):
    """TOML text of a config; `header` lines are written first as comments."""
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + tomli_w.dumps(to_dict(config))


def from_toml(cls, text, where="recipe"):
    """Parse TOML text into a config of class `cls`; `where` names the source in errors."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}") from None
    return from_dict(cls, values, where)


def from_dict(cls, values, where="recipe"):
    """Build config `cls` from nested dicts, checking every key and value type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown setting {key!r}{_suggest(key, fields)}")
        kwargs[key] = _convert(hints[key], value, f"{where}: {key}")
    return cls(**kwargs)


def override(config, assignment, where="--set"):
    """A copy of `config` with one `section.field=value` assignment applied.

    The value is read as TOML (`3`, `1e-3`, `"cnn"`, `[32, 64]`); a bare word is a string.
    """
    path, sep, text = assignment.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"{where}: expected section.field=value, got {assignment!r}")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return replace(config, path.strip().split("."), value, where)


def replace(config, keys, value, where="config", _parents=()):
    """A copy of `config` with the field at `keys` (e.g. ["train", "epochs"]) set to value."""
    fields = {f.name for f in dataclasses.fields(config)}
    key, rest = keys[0], keys[1:]
    full = ".".join([*_parents, *keys])
    if key not in fields:
        raise ConfigError(f"{where}: unknown setting {full!r}{_suggest(key, fields)}")
    current = getattr(config, key)
    if rest and dataclasses.is_dataclass(current):
        updated = replace(current, rest, value, where, (*_parents, key))
        return dataclasses.replace(config, **{key: updated})
    if rest and isinstance(current, dict):
        return dataclasses.replace(config, **{key: _set_in(current, rest, value)})
    if rest:
        raise ConfigError(f"{where}: {key!r} has no sub-settings (got {full!r})")
    hint = typing.get_type_hints(type(config))[key]
    return dataclasses.replace(config, **{key: _convert(hint, value, f"{where}: {full}")})


def _set_in(table, keys, value):
    updated = dict(table)
    updated[keys[0]] = _set_in(table.get(keys[0], {}), keys[1:], value) if keys[1:] else value
    return updated


def _convert(hint, value, where):
    """Check `value` against the type hint; nested dataclasses are built from dicts."""
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        return [_convert(args[0], v, where) for v in value] if args else list(value)
    expected = origin or hint
    if expected is typing.Any or (isinstance(value, expected) and not
                                  (isinstance(value, bool) and expected in (int, float))):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: expected {name}, got {value!r} ({type(value).__name__})")


def _suggest(key, known):
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} Known: {', '.join(sorted(known))}"
