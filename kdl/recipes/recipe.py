"""The Recipe base: config -> data -> model -> compile/fit -> evaluate/predict -> save/load.

Each task (image classifier, ...) subclasses it and supplies its config class, data
loading, model building and scoring; this file holds what every task does the same way.

>>> import kdl
>>> recipe = kdl.recipes.image_classifier(epochs=1)    # doctest: +SKIP
>>> history = recipe.fit()                             # doctest: +SKIP
"""

import dataclasses
import json
import os
import pathlib
import tomllib

import keras

from kdl import backend, config as configs
from kdl.errors import ConfigError, DataError
from kdl.models.registry import check_options

RECIPES = {}  # task name -> Recipe subclass, filled by subclasses' `task`
MODEL_FILE, CONFIG_FILE, REPORT_FILE = "model.keras", "recipe.toml", "report.json"


@dataclasses.dataclass
class TrainConfig:
    """How to train: the same section in every recipe."""

    epochs: int = 10
    optimizer: str = "adam"         # a keras.optimizers name: adam, adamw, sgd, rmsprop, ...
    learning_rate: float = 1e-3
    schedule: str = "constant"      # "constant" or "cosine" (decays to 0 over all epochs)
    early_stopping: int = 0         # patience in epochs on validation loss; 0 turns it off
    steps_per_execution: int = 1    # batches per compiled call (not on torch): >1 speeds up small models


class Recipe:
    """A task recipe. Subclasses set `task`, `Config`, and the hooks below."""

    task = None
    Config = None
    jit_compile = "auto"    # passed to model.compile: True asks torch for torch.compile

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.task:
            RECIPES[cls.task] = cls

    def __init__(self, config=None, *, data_root=None, arrays=None, model=None):
        self.config = config or self.Config()
        self.data_root = data_root
        self.arrays = arrays    # in-memory data, for config.data.source == "arrays"
        self._data = None
        self.model = model
        self.history = None
        self.report = None

    # -- hooks each task supplies ------------------------------------------------------
    def load_data(self):
        """The task's dataset (kdl.data) from `self.config.data`."""
        raise NotImplementedError

    def build_model(self):
        """A new, untrained keras.Model for `self.data`."""
        raise NotImplementedError

    def compile_arguments(self):
        """The task's `model.compile` arguments: loss and progress metrics."""
        raise NotImplementedError

    def score(self, split):
        """A kdl.evaluation Report of the model on one split."""
        raise NotImplementedError

    def save_assets(self, path):
        """Write what the model needs besides its weights (a vocabulary) into the run directory."""

    def load_assets(self, path):
        """Read back what `save_assets` wrote."""

    # -- shared behaviour --------------------------------------------------------------
    @property
    def data(self):
        """The dataset, loaded on first use."""
        if self._data is None:
            self._data = self.load_data()
        return self._data

    def fit(self, epochs=None, *, out=None, verbose="auto", callbacks=(), steps_per_epoch=None):
        """Train (or keep training) the model; returns the Keras History.

        `out`: a run directory that receives `history.csv` and a per-epoch checkpoint.
        `steps_per_epoch`: stop each epoch after this many batches (default: the whole split).
        """
        train = self.config.train
        epochs = train.epochs if epochs is None else epochs
        backend.set_seed(self.config.seed)
        backend.use_exact_float32()
        if self.model is None:
            self.model = self.build_model()
        train_batches = self.batches("train", shuffle=True)
        if not getattr(self.model, "compiled", False):
            steps = steps_per_epoch or len(train_batches)
            self.compile_model(self.make_optimizer(epochs * steps))
        validation = self.batches("validation") if "validation" in self.data.splits else None
        self.history = self.model.fit(train_batches, validation_data=validation, epochs=epochs,
                                      callbacks=self._callbacks(out, validation) + list(callbacks),
                                      steps_per_epoch=steps_per_epoch, shuffle=False,  # tf.data shuffles
                                      verbose=verbose)
        return self.history

    def evaluate(self, split="test"):
        """Score the model on `split` with kdl.evaluation; returns (and keeps) the Report."""
        self._require_model("evaluate")
        if split not in self.data.splits:
            raise DataError(f"no split {split!r} in {self.data.info.source!r}; "
                            f"it has: {', '.join(self.data.splits)}")
        report = self.score(split)
        report.meta.update(task=self.task, split=split, source=self.data.info.source,
                           backend=backend.name())
        self.report = report
        return report

    def batches(self, split, shuffle=False):
        """The batched pipeline of one split."""
        from kdl.data import batches

        return batches(self.data.splits[split], self.config.data.batch_size, shuffle=shuffle,
                       seed=self.config.seed)

    def save(self, path):
        """Write the run directory: model.keras, recipe.toml, the task's assets, and report.json
        when evaluated."""
        self._require_model("save")
        path = pathlib.Path(path)
        if (path / CONFIG_FILE).exists():
            task = _read_toml(path / CONFIG_FILE).get("task")
            if task != self.task:
                raise ConfigError(f"{path} holds a {task!r} run; refusing to overwrite it "
                                  f"with a {self.task!r} run. Choose another directory.")
        path.mkdir(parents=True, exist_ok=True)
        _write_atomic(path / MODEL_FILE, self.model.save)
        header = f"Resolved config of a run saved by kdl on the {backend.name()} backend."
        _write_atomic(path / CONFIG_FILE,
                      lambda tmp: pathlib.Path(tmp).write_text(configs.to_toml(self.config, header)))
        self.save_assets(path)
        if self.report is not None:
            _write_atomic(path / REPORT_FILE, self.report.to_json)
            self.save_report_extras(path)
        return path

    def save_report_extras(self, path):
        """Extra report files (plots) a task writes beside report.json."""

    def _require_model(self, action):
        if self.model is None:
            raise ConfigError(f"cannot {action}: this recipe has no model yet; call fit() first "
                              f"or load a trained run with kdl.recipes.load(run_dir)")

    def compile_model(self, optimizer, **settings):
        """`model.compile` with the task's loss and metrics and the recipe's jit_compile and
        steps_per_execution; `settings` override those (a plain-fit baseline uses Keras' defaults)."""
        settings = {"jit_compile": self.jit_compile, "steps_per_execution":
                    backend.steps_per_execution(self.config.train.steps_per_execution), **settings}
        self.model.compile(optimizer=optimizer, **self.compile_arguments(), **settings)

    def make_optimizer(self, total_steps):
        """The optimizer `train` describes, its schedule spanning `total_steps`."""
        train = self.config.train
        rate = train.learning_rate
        if train.schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(total_steps, 1))
        elif train.schedule != "constant":
            raise ConfigError(f"train.schedule must be 'constant' or 'cosine', got {train.schedule!r}")
        try:
            return keras.optimizers.get({"class_name": train.optimizer,
                                         "config": {"learning_rate": rate}})
        except ValueError:
            raise ConfigError(f"train.optimizer: unknown Keras optimizer {train.optimizer!r} "
                              "(try adam, adamw, sgd, rmsprop)") from None

    def _callbacks(self, out, validation):
        callbacks = [keras.callbacks.TerminateOnNaN()]
        patience = self.config.train.early_stopping
        if patience:
            monitor = "val_loss" if validation is not None else "loss"
            callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=patience,
                                                           restore_best_weights=True))
        if out is not None:
            out = pathlib.Path(out)
            out.mkdir(parents=True, exist_ok=True)
            callbacks += [keras.callbacks.CSVLogger(str(out / "history.csv")),
                          keras.callbacks.ModelCheckpoint(str(out / "checkpoint.keras"))]
        return callbacks

    def __repr__(self):
        state = "trained" if self.history else ("loaded" if self.model else "new")
        return f"<{type(self).__name__} {self.config.data.source!r} model={self.config.model.name!r} ({state})>"


def create(task, overrides=(), data_root=None):
    """A new recipe of `task` with default config and `section.field=value` overrides."""
    cls = recipe_class(task)
    return cls(_apply(cls.Config(), overrides), data_root=data_root)


def load(path, overrides=(), data_root=None):
    """A recipe from a recipe TOML file (untrained) or a run directory (trained model).

    `overrides` are `section.field=value` strings applied to the config.
    """
    path = pathlib.Path(path)
    toml_path = path / CONFIG_FILE if path.is_dir() else path
    if not toml_path.is_file():
        what = "run directory without recipe.toml" if path.is_dir() else "no such file"
        raise ConfigError(f"cannot load {str(path)!r}: {what}; expected a recipe .toml file "
                          "or a run directory written by recipe.save()")
    values = _read_toml(toml_path)
    cls = recipe_class(values.get("task"), where=str(toml_path))
    config = _apply(configs.from_dict(cls.Config, values, where=str(toml_path)), overrides)
    model = None
    if path.is_dir():
        model_path = path / MODEL_FILE
        if not model_path.is_file():
            raise ConfigError(f"run directory {str(path)!r} has no {MODEL_FILE}")
        model = keras.saving.load_model(model_path, compile=False)  # fit() compiles for this backend
    recipe = cls(config, data_root=data_root, model=model)
    if path.is_dir():
        recipe.load_assets(path)
    return recipe


def recipe_class(task, where="recipe"):
    """The Recipe subclass registered for `task`."""
    if task not in RECIPES:
        raise ConfigError(f"{where}: unknown task {task!r}; known tasks: {', '.join(sorted(RECIPES))}")
    return RECIPES[task]


def configure(config, overrides, options_of=None):
    """Apply keyword overrides by field name, searching the top level, then each section.

    A name that no section has goes to `model.options` when the model builder
    `options_of` takes it as a keyword; anything else is a ConfigError.
    """
    sections = [f.name for f in dataclasses.fields(config)
                if dataclasses.is_dataclass(getattr(config, f.name))]
    for key, value in overrides.items():
        path = [key] if hasattr(config, key) and key not in sections else next(
            ([section, key] for section in sections if hasattr(getattr(config, section), key)),
            None)
        if path is None and options_of is not None:
            check_options(options_of, {key: value})
            path = ["model", "options", key]
        if path is None:
            raise ConfigError(f"unknown option {key!r}; known: "
                              + ", ".join(_field_names(config, sections)))
        config = configs.replace(config, path, value, where="option")
    return config


def _field_names(config, sections):
    names = [f.name for f in dataclasses.fields(config) if f.name not in sections]
    for section in sections:
        names += [f.name for f in dataclasses.fields(getattr(config, section))]
    return sorted(set(names))


def _apply(config, overrides):
    for assignment in overrides:
        config = configs.override(config, assignment)
    return config


def _read_toml(path):
    try:
        return tomllib.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not a valid TOML recipe: {error}") from None


def _write_atomic(path, write):
    """Call write(tmp_path), then move the file into place: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(str(tmp))
    os.replace(tmp, path)
