"""The Recipe base: config -> data -> model -> compile/fit -> evaluate/predict -> save/load.

Each task (image classifier, ...) subclasses it and supplies its config class, data
loading, model building and scoring; this file holds what every task does the same way.

>>> import kdl
>>> recipe = kdl.recipes.image_classifier(epochs=1)    # doctest: +SKIP
>>> history = recipe.fit()                             # doctest: +SKIP
"""

import dataclasses
import difflib
import functools
import pathlib
import tomllib

import keras

from kdl import backend, config as configs, distribute, runs
from kdl.callbacks import DivergenceStop
from kdl.errors import ConfigError, DataError, KdlError
from kdl.models.registry import check_options

RECIPES = {}  # task name -> Recipe subclass, filled by subclasses' `task`
MODEL_FILE, CONFIG_FILE, REPORT_FILE = "model.keras", "recipe.toml", "report.json"
CHECKPOINT_FILE = "checkpoint.keras"    # written by fit(out=...) after each epoch


@dataclasses.dataclass
class TrainConfig:
    """How to train: the same section in every recipe."""

    epochs: int = 10
    optimizer: str = "adam"         # a keras.optimizers name: adam, adamw, sgd, rmsprop, ...
    learning_rate: float = 1e-3
    schedule: str = "constant"      # "constant", "cosine" (decays to 0 over all epochs) or "warmup_cosine"
    warmup_steps: int = 0           # "warmup_cosine": steps of linear warm-up to learning_rate, then cosine
    early_stopping: int = 0         # patience in epochs on validation loss; 0 turns it off
    steps_per_execution: int = 1    # batches per compiled call (not on torch): >1 speeds up small models
    distribute: str = "single"      # single, auto, data_parallel, model_parallel[:M], tpu (kdl.distribute)
    precision: str = "fp32"         # fp32, bf16 or fp16 (mixed precision; weights stay float32)


class Recipe:
    """A task recipe. Subclasses set `task`, `Config`, and the hooks below."""

    task = None
    Config = None
    jit_compile = "auto"    # passed to model.compile: True asks torch for torch.compile

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.task:
            RECIPES[cls.task] = cls
        if "build_model" in cls.__dict__:   # a bad model option: a ConfigError, not a Keras traceback
            cls.build_model = _clear_build_errors(cls.__dict__["build_model"])

    def __init__(self, config=None, *, data_root=None, arrays=None, model=None):
        self.config = config or self.Config()
        check_ranges(self.config)
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
        with distribute.scope(train.distribute, train.precision) as plan:   # no-op for single/fp32
            self.model = plan.model(self.model, self.build_model)
            train_batches = self.batches("train", shuffle=True)
            if not getattr(self.model, "compiled", False):
                steps = steps_per_epoch or len(train_batches)
                self.compile_model(self.make_optimizer(epochs * steps))
            validation = self.batches("validation") if "validation" in self.data.splits else None
            validation = None if validation is None else plan.dataset(validation)
            self.history = self.model.fit(
                plan.dataset(train_batches), validation_data=validation, epochs=epochs,
                callbacks=self._callbacks(plan.run_dir(out), validation) + list(callbacks),
                steps_per_epoch=steps_per_epoch, shuffle=False,  # tf.data shuffles
                verbose=verbose)
        self._divergence.raise_if_diverged()     # TrainingDiverged: names epoch, step, checkpoint
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
        when evaluated.

        The whole directory is replaced atomically (kdl.runs.write_directory): a kill during
        save leaves the old or the new complete run. Files written by `fit(out=path)`
        (history.csv, checkpoint.keras) are kept.
        """
        self._require_model("save")
        path = pathlib.Path(path)
        runs.recover(path)
        if (path / CONFIG_FILE).exists():
            task = _read_toml(path / CONFIG_FILE).get("task")
            if task != self.task:
                raise ConfigError(f"{path} holds a {task!r} run; refusing to overwrite it "
                                  f"with a {self.task!r} run. Choose another directory.")
        elif path.is_dir() and (path / MODEL_FILE).exists():
            raise ConfigError(f"{path} holds a {MODEL_FILE} without {CONFIG_FILE}, not a kdl run "
                              "of this task; refusing to overwrite it. Choose another directory.")

        def fill(tmp):
            self.model.save(tmp / MODEL_FILE)
            header = f"Resolved config of a run saved by kdl on the {backend.name()} backend."
            (tmp / CONFIG_FILE).write_text(configs.to_toml(self.config, header), encoding="utf-8")
            self.save_assets(tmp)
            if self.report is not None:
                self.report.to_json(tmp / REPORT_FILE)
                self.save_report_extras(tmp)

        runs.write_directory(path, fill, replaces=(MODEL_FILE, CONFIG_FILE, REPORT_FILE))
        return path

    def save_report_extras(self, path):
        """Extra report files (plots) a task writes beside report.json."""

    def export(self, path, format="keras"):
        """Export the model for serving into the folder `path`: "keras" (model.keras),
        "saved_model" (TensorFlow SavedModel) or "onnx" (model.onnx), with signature.json and
        the task's assets (a text run's vocabulary). The export is checked against the Keras
        model before it is kept. See kdl.export and docs/export.md for what each backend can
        produce; a format the active backend cannot produce is a BackendError.
        """
        from kdl import export

        self._require_model("export")
        export.check_format(format)
        return export.export(self.model, path, format, sample=self.export_sample(),
                             description=self.export_description(), write_assets=self.save_assets)

    def export_sample(self):
        """An input batch the export is checked on (tasks whose inputs are not 0..255 floats
        override it)."""
        from kdl import export

        return export.sample_inputs(self.model, value_range=(0, 255))

    def export_description(self):
        """What signature.json says besides names, dtypes and shapes: the task, the class names,
        how to prepare inputs. Tasks extend it."""
        description = {"task": self.task}
        names = getattr(self.config.data, "class_names", None)
        if names:
            description["class_names"] = list(names)
            description["output_meaning"] = "class probabilities, one column per class_names entry"
        return description

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
        elif train.schedule == "warmup_cosine":
            warmup = min(train.warmup_steps, max(total_steps - 1, 0))
            rate = keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=max(total_steps - warmup, 1), warmup_target=rate, warmup_steps=warmup)
        elif train.schedule != "constant":
            raise ConfigError("train.schedule must be one of constant, cosine, warmup_cosine; "
                              f"got {train.schedule!r}")
        try:
            return keras.optimizers.get({"class_name": train.optimizer,
                                         "config": {"learning_rate": rate}})
        except ValueError:
            raise ConfigError(f"train.optimizer: unknown Keras optimizer {train.optimizer!r} "
                              "(try adam, adamw, sgd, rmsprop)") from None

    def _callbacks(self, out, validation):
        self._divergence = DivergenceStop(None if out is None else pathlib.Path(out) / CHECKPOINT_FILE)
        callbacks = [self._divergence]
        patience = self.config.train.early_stopping
        if patience:
            monitor = "val_loss" if validation is not None else "loss"
            callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=patience,
                                                           restore_best_weights=True))
        if out is not None:
            out = pathlib.Path(out)
            out.mkdir(parents=True, exist_ok=True)
            resuming = (out / "backup").is_dir()    # a killed run left its backup: pick it up
            callbacks.append(keras.callbacks.BackupAndRestore(str(out / "backup")))  # deleted at the end
            callbacks += [keras.callbacks.CSVLogger(str(out / "history.csv"), append=resuming),
                          keras.callbacks.ModelCheckpoint(str(out / "checkpoint.keras"))]
        return callbacks

    def __repr__(self):
        state = "trained" if self.history else ("loaded" if self.model else "new")
        return f"<{type(self).__name__} {self.config.data.source!r} model={self.config.model.name!r} ({state})>"


def create(task, overrides=(), data_root=None):
    """A new recipe of `task` with default config and `section.field=value` overrides."""
    cls = recipe_class(task)
    return cls(_apply(cls.Config(), overrides), data_root=data_root)


def load(path, overrides=(), data_root=None, *, unsafe=False):
    """A recipe from a recipe TOML file (untrained) or a run directory (trained model).

    `overrides` are `section.field=value` strings applied to the config. The model is read in
    Keras' safe mode: a model.keras with a Lambda layer is refused unless `unsafe=True`, which
    runs the Python code stored in the file (only for files you trust).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        runs.recover(path, clean=False)    # a kill during save: bring back the complete run
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
        model = runs.load_model(model_path, unsafe=unsafe)  # uncompiled: fit() compiles for this backend
    recipe = cls(config, data_root=data_root, model=model)
    if path.is_dir():
        recipe.load_assets(path)
    return recipe


# Lower bounds every recipe's config must meet (fields a task lacks, or None, are skipped): a value
# below one otherwise fails deep inside tf.data or Keras, or crashes the process (max_length = 0).
AT_LEAST = {"data.batch_size": 1, "data.max_length": 1, "data.vocabulary_size": 2,
            "data.sample_rate": 1, "train.epochs": 0, "train.steps_per_execution": 1,
            "train.early_stopping": 0, "train.warmup_steps": 0, "decode.batch_size": 1, "decode.beam_size": 1}


def check_ranges(config):
    """Raise ConfigError for a config value out of range (see AT_LEAST; learning_rate >= 0)."""
    for name, low in AT_LEAST.items():
        section, field = name.split(".")
        value = getattr(getattr(config, section, None), field, None)
        if value is not None and value < low:
            raise ConfigError(f"{name} must be at least {low}; got {value!r}")
    rate = getattr(getattr(config, "train", None), "learning_rate", None)
    if rate is not None and not rate >= 0:     # 0 is fine: it keeps the weights (a check)
        raise ConfigError(f"train.learning_rate must be 0 or more; got {rate!r}")


def _clear_build_errors(build_model):
    """Wrap a task's build_model: a TypeError/ValueError from Keras (a bad backbone option, such
    as filters="abc" or dropout=2) becomes a ConfigError naming the model and its options."""

    @functools.wraps(build_model)
    def build(self):
        try:
            return build_model(self)
        except KdlError:
            raise
        except (TypeError, ValueError) as error:
            model = self.config.model
            message = " ".join(str(error).split())     # Keras' messages span lines
            raise ConfigError(f"cannot build model {model.name!r} with options "
                              f"{getattr(model, 'options', {})}: {message}") from error

    return build


def recipe_class(task, where="recipe"):
    """The Recipe subclass registered for `task`."""
    if task not in RECIPES:
        close = difflib.get_close_matches(str(task), RECIPES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: unknown task {task!r}{hint} Known tasks: {', '.join(sorted(RECIPES))}")
    return RECIPES[task]


def new_recipe(cls, dataset, model, model_kind, overrides, data_root=None, **data_defaults):
    """The body of every task's factory (`kdl.recipes.image_classifier(...)`, ...): a `cls` recipe
    on `dataset` (a name or path, or in-memory arrays, which are checked now rather than at fit
    time) with the `model_kind` model `model`, its task's `data_defaults`, then the keyword
    `overrides` (see `configure`)."""
    from kdl import models

    arrays = None if isinstance(dataset, (str, pathlib.Path)) else dataset
    config = cls.Config()
    config.data.source = "arrays" if arrays is not None else str(dataset)
    config.model.name = model
    for field, value in data_defaults.items():
        setattr(config.data, field, value)
    config = configure(config, overrides, options_of=models.get(model_kind, model))
    recipe = cls(config, data_root=data_root, arrays=arrays)
    if arrays is not None:
        recipe.data   # check the arrays now, not at fit time
    return recipe


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
