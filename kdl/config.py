"""Recipe configs: dataclasses that round-trip to TOML, with `section.field=value` overrides.

A recipe is data. The TOML files in `recipes/`, `kdl.recipes.X(**overrides)` and
`kdl train FILE --set train.epochs=3` all end in one config object of the recipe's class.
Every task's config has the same sections: `data` (a `DataConfig` the task extends), `model`
(a `ModelConfig`), `train` (`TrainConfig`) and `track` (`TrackConfig`); a field's bounds are kept
with it (`setting`) and checked in one place (`check_ranges`).

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
import math
import tomllib
import types
import typing

import tomli_w

from kdl.errors import ConfigError, warn


def setting(default=None, *, at_least=None, above=None, below=None, pipeline=False, factory=None):
    """A config field with its bounds: `at_least <= value`, `above < value`, `value < below`
    (None and unset bounds are not checked). `pipeline=True` marks a batching/encoding setting that
    the task's data loader does not take (batch size, tokenizer sizes)."""
    metadata = {"at_least": at_least, "above": above, "below": below, "pipeline": pipeline}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class DataConfig:
    """What every task's `[data]` section has; tasks extend it with their own fields."""

    source: str = ""                # a name, path or "tfds:NAME"; "arrays" for in-memory data
    root: str = ""                  # the folder a relative source was found under (kdl writes it)
    batch_size: int = setting(32, at_least=1, pipeline=True)
    validation_split: float = setting(0.1, at_least=0, below=1)   # of train, to watch overfitting
    limit: typing.Optional[int] = setting(None, at_least=1)   # a seeded sample of at most this many per split


@dataclasses.dataclass
class ClassificationDataConfig(DataConfig):
    class_names: typing.Optional[list[str]] = None  # None: the dataset's own names (resolved on load)
    classes: typing.Optional[list[str]] = None      # only these classes, renumbered in this order (2+)
    per_class: typing.Optional[int] = setting(None, at_least=1)   # train + validation labels per class


@dataclasses.dataclass
class ModelConfig:
    """What every task's `[model]` section has: the registered model name and its options."""

    name: str = ""
    options: dict[str, typing.Any] = dataclasses.field(default_factory=dict)  # builder keywords
    backbone: str = ""    # "": a new `name` model; a kdl run directory, "hub:PRESET" or a preset folder


@dataclasses.dataclass
class TrainConfig:
    """How to train: the same `[train]` section in every recipe."""

    epochs: int = setting(10, at_least=0)
    optimizer: str = "adam"         # a keras.optimizers name: adam, adamw, sgd, rmsprop, ...
    learning_rate: float = setting(1e-3, at_least=0)   # 0 keeps the weights (a check)
    schedule: str = "constant"      # "constant", "cosine" (decays to 0 over all epochs) or "warmup_cosine"
    warmup_steps: int = setting(0, at_least=0)   # "warmup_cosine": linear warm-up steps, then cosine
    weight_decay: float = setting(0.0, at_least=0)   # decoupled (AdamW-style) decay x the rate; 0: the
                                                     # optimizer's own (none; adamw's is 0.004)
    ema: float = setting(0.0, at_least=0, below=1)   # keep a moving average of the weights (this momentum,
                                                     # e.g. 0.99) and end with it; 0: off
    early_stopping: int = setting(0, at_least=0)  # patience in epochs on validation loss; 0: off
    steps_per_execution: int = setting(1, at_least=1)  # batches per compiled call (not on torch)
    distribute: str = "single"      # single, auto, data_parallel, model_parallel[:M], tpu (kdl.distribute)
    precision: str = "fp32"         # fp32, bf16 or fp16 (mixed precision; weights stay float32)
    freeze_epochs: int = setting(0, at_least=0)     # first epochs train the head only (backbone frozen)
    backbone_lr_mult: float = setting(1.0, at_least=0)   # then the backbone learns at learning_rate x this


@dataclasses.dataclass
class TrackConfig:
    """Where a run's progress is logged: the same `[track]` section in every recipe (kdl.tracking,
    docs/tracking.md). Not part of what is trained: a resumed run or a study may change it."""

    tensorboard: bool = True        # RUN_DIR/tensorboard/: scalars, the report, hyperparameters
    every_steps: int = setting(50, at_least=0)   # also log the training scalars every N steps; 0: per epoch
    mlflow: bool = False            # log the saved run to MLflow (pip install 'kdl[track]')
    tracking_uri: str = ""          # "": $MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db
    experiment: str = ""            # the MLflow experiment; "": the task's name


@dataclasses.dataclass
class CardConfig:
    """What the run's model card (RUN/README.md, kdl.card) says that the run's own data cannot:
    the same `[card]` section in every recipe."""

    license: str = ""               # the model's license, e.g. an SPDX id "Apache-2.0"; "": none set


SEED_BOUNDS = {"at_least": 0, "below": 2**32}   # a `seed` field: what NumPy and scikit-learn take


def check_ranges(config, _prefix=""):
    """Raise ConfigError for a field outside the bounds its `setting` declares (a field named
    `seed`: 0 to 2**32 - 1; any int: int64; any float: finite), or for a data section whose
    `limit` leaves no training example once `validation_split` is held out of it.

    >>> check_ranges(TrainConfig(epochs=-1))
    Traceback (most recent call last):
    ...
    kdl.errors.ConfigError: epochs must be at least 0; got -1
    >>> check_ranges(DataConfig(limit=1, validation_split=0.1))     # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kdl.errors.ConfigError: limit = 1 leaves no training example: validation_split = 0.1 holds out ...
    """
    for field in dataclasses.fields(config):
        value, name = getattr(config, field.name), _prefix + field.name
        if dataclasses.is_dataclass(value):
            check_ranges(value, name + ".")
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _number(float if isinstance(value, float) else int, value, name)   # int64, finite
        _check_bounds(field, value, name)
    if isinstance(config, DataConfig):
        _check_limit(config, _prefix)


def _check_limit(data, prefix):
    """`limit` must leave a training example after the validation hold-out of ceil(limit x split)."""
    limit, fraction = data.limit, data.validation_split
    if not (isinstance(limit, int) and 0 < limit and isinstance(fraction, (int, float)) and 0 < fraction < 1):
        return
    if math.ceil(limit * fraction) >= limit:
        least = max(2, math.ceil(1 / (1 - fraction)))
        while math.ceil(least * fraction) >= least:
            least += 1
        raise ConfigError(f"{prefix}limit = {limit} leaves no training example: {prefix}validation_split = "
                          f"{fraction} holds out ceil({limit} x {fraction}) = {math.ceil(limit * fraction)} "
                          f"of them; set {prefix}limit to at least {least}, or {prefix}validation_split = 0")


def check_schedule(train, total_steps):
    """Raise ConfigError when the learning-rate schedule of `train` (a TrainConfig) does not fit a
    run of `total_steps` optimizer steps: a `warmup_steps` longer than the whole run would never
    reach the learning rate. Warn (KdlWarning) when `ema` averages over more steps than the run
    has, so that the weights it ends on are still more than 5% those of the first step. Checked
    when the optimizer is made (`Recipe.make_optimizer`), not with the other bounds, because the
    number of steps (epochs x batches per epoch) is known only once the data is loaded.

    >>> check_schedule(TrainConfig(schedule="warmup_cosine", warmup_steps=400), total_steps=90)
    Traceback (most recent call last):
    ...
    kdl.errors.ConfigError: train.warmup_steps = 400 is longer than the whole run: 90 steps ...
    """
    if train.schedule == "warmup_cosine" and train.warmup_steps > total_steps:
        raise ConfigError(
            f"train.warmup_steps = {train.warmup_steps} is longer than the whole run: {total_steps} steps "
            f"(epochs x batches per epoch); the learning rate would never reach train.learning_rate = "
            f"{train.learning_rate:g}. Set train.warmup_steps to at most {total_steps} (a tenth of the "
            f"run, {max(total_steps // 10, 1)}, is common), or train for more epochs")
    early = train.ema ** max(total_steps - 1, 0)     # the first step's share of the final average
    if train.ema and early > 0.05:
        fitting = math.floor(100 * 0.05 ** (1 / max(total_steps - 1, 1))) / 100
        warn(f"train.ema = {train.ema:g} averages over about {1 / (1 - train.ema):.0f} steps, but the run "
             f"takes {total_steps}: the weights it ends on are still {early:.0%} those of its first step. "
             f"Lower train.ema (at most {fitting:g} for this run) or train for more epochs")


def _check_bounds(field, value, name):
    """Raise ConfigError, naming the setting `name`, for a number outside `field`'s bounds."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    bounds = SEED_BOUNDS if field.name == "seed" and not field.metadata else field.metadata
    if bounds.get("at_least") is not None and not value >= bounds["at_least"]:
        raise ConfigError(f"{name} must be at least {bounds['at_least']}; got {value!r}")
    if bounds.get("above") is not None and not value > bounds["above"]:
        raise ConfigError(f"{name} must be more than {bounds['above']}; got {value!r}")
    if bounds.get("below") is not None and not value < bounds["below"]:
        raise ConfigError(f"{name} must be less than {bounds['below']}; got {value!r}")


def loader_options(data):
    """The fields of a `[data]` section that the task's data loader takes: all but `source`,
    `root` and the `pipeline` settings."""
    return {field.name: getattr(data, field.name) for field in dataclasses.fields(data)
            if field.name not in ("source", "root") and not field.metadata.get("pipeline")}


def to_dict(config):
    """A config as nested plain dicts, without None values (TOML has no null)."""

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(config))


def differences(before, after, _prefix=""):
    """What changed between two configs as plain dicts (to_dict, or a parsed recipe.toml):
    ["train.epochs: 4 -> 6", ...] in field order.

    >>> differences({"train": {"epochs": 4}}, {"train": {"epochs": 6}})
    ['train.epochs: 4 -> 6']
    """
    changed = []
    for key in [*before, *(key for key in after if key not in before)]:
        old, new, name = before.get(key), after.get(key), f"{_prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            changed += differences(old, new, f"{name}.")
        elif old != new:
            changed.append(f"{name}: {'(unset)' if old is None else repr(old)} -> "
                           f"{'(unset)' if new is None else repr(new)}")
    return changed


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
    """Build config `cls` from nested dicts, checking every key, value type and bound."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown setting {key!r}{_suggest(key, fields)}")
        kwargs[key] = _convert(hints[key], value, f"{where}: {key}")
        _check_bounds(fields[key], kwargs[key], f"{where}: {key}")
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
    if hint in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(hint, value, where)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        return [_convert(args[0], v, where) for v in value] if args else list(value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {key: _convert(args[1], v, f"{where}.{key}") for key, v in value.items()}
    expected = origin or hint
    if expected is typing.Any or (isinstance(value, expected) and not
                                  (isinstance(value, bool) and expected in (int, float))):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: expected {name}, got {value!r} ({type(value).__name__})")


def _number(hint, value, where):
    """An int or float setting, checked: an int fits int64 (what every backend takes), a float is
    finite; an int is accepted as a float."""
    if isinstance(value, int) and not -2**63 <= value < 2**63:
        raise ConfigError(f"{where}: expected {hint.__name__} from -2**63 to 2**63 - 1, got an int of "
                          f"{value.bit_length()} bits")
    if hint is int and isinstance(value, float):
        raise ConfigError(f"{where}: expected int, got {value!r} (float)")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return hint(value)


def _suggest(key, known):
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} Known: {', '.join(sorted(known))}"


def configure(config, keywords, check_model_option=None):
    """A copy of `config` with keyword overrides (`kdl.recipes.X(epochs=3, ...)`) applied by name.

    A name is a top-level field (`seed`), a whole section given as a dict (`decode={"beam_size": 2}`),
    or a field of exactly one section (`epochs` -> train.epochs); a field that two sections have
    is an error naming both. Any other name is a model option (`model.options`) when
    `check_model_option({name: value})` accepts it (it raises ConfigError otherwise).

    >>> @dataclasses.dataclass
    ... class Config:
    ...     seed: int = 0
    ...     train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    >>> configure(Config(), {"epochs": 3, "seed": 1}).train.epochs
    3
    """
    sections = [f.name for f in dataclasses.fields(config)
                if dataclasses.is_dataclass(getattr(config, f.name))]
    for key, value in keywords.items():
        if key in sections and isinstance(value, dict):
            for field, item in value.items():
                config = replace(config, [key, field], item, where="option")
            continue
        owners = [section for section in sections if hasattr(getattr(config, section), key)]
        if hasattr(config, key) and key not in sections:
            path = [key]
        elif len(owners) > 1:
            both = " and ".join(f"{section}.{key}" for section in owners)
            raise ConfigError(f"option {key!r} is ambiguous: {both} both have it; pass the section as "
                              f"a dict instead, e.g. {owners[-1]}={{{key!r}: {value!r}}}")
        elif owners:
            path = [owners[0], key]
        elif check_model_option is not None:
            try:
                check_model_option({key: value})
            except ConfigError as error:
                known = _field_names(config, sections)
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown option {key!r}{hint}: it is not a setting of this recipe "
                                  f"({', '.join(known)}), and {error}") from None
            path = ["model", "options", key]
        else:
            raise ConfigError(f"unknown option {key!r}; known: " + ", ".join(_field_names(config, sections)))
        config = replace(config, path, value, where="option")
    return config


def _field_names(config, sections):
    names = [f.name for f in dataclasses.fields(config) if f.name not in sections]
    for section in sections:
        names += [f.name for f in dataclasses.fields(getattr(config, section))]
    return sorted(set(names))
