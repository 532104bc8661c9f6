"""The Recipe base: the one contract every task follows.

A task declares its parts as class attributes (as keras-hub's `Task` declares `backbone_cls`
and `preprocessor_cls`): `Config` (its config dataclass, whose `task` names it in recipe files),
`model_kind` (the registry kind of `config.model.name`), `loader` (its `kdl.data` loader) and
`Result` (what `predict` returns, scored by the task's `kdl.evaluation` function). It supplies a
few hooks (build the model, its loss, turn raw inputs into a batch, predict on a batch). This
class does the rest once for every task: resolving the data source, class-name bookkeeping,
fit (assets written before the first step), evaluate, predict, save/load, export.

>>> import kdl
>>> recipe = kdl.recipes.image_classifier(epochs=1)    # doctest: +SKIP
>>> history = recipe.fit()                             # doctest: +SKIP
>>> recipe.predict(images).rows()                      # doctest: +SKIP
"""

import contextlib
import difflib
import functools
import inspect
import os
import pathlib
import tomllib

import keras
import numpy as np

from kdl import backend, distribute, runs
from kdl import config as configs
from kdl.callbacks import Checkpoint, DivergenceStop
from kdl.config import TrainConfig  # noqa: F401  (re-exported: kdl.recipes.TrainConfig)
from kdl.errors import ConfigError, DataError, KdlError, RunError

RECIPES = {}  # task name -> Recipe subclass, filled by subclasses' `task`
MODEL_FILE, CONFIG_FILE, REPORT_FILE = "model.keras", "recipe.toml", "report.json"
CHECKPOINT_FILE = "checkpoint.keras"    # written by fit(out=...) after each epoch
TRAINING_FILES = {CHECKPOINT_FILE, "history.csv", "backup", runs.LOCK_FILE}   # fit(out=...) leaves them


class Recipe:
    """A task recipe. Subclasses set the class attributes below and the hooks marked as such."""

    Config = None        # the config dataclass: task, seed, data (DataConfig), model (ModelConfig), train
    task = None          # name in recipe files and run directories: Config's `task` default
    model_kind = None    # kdl.models registry kind of config.model.name, e.g. "image_backbone"
    loader = None        # kdl.data loader: loader(source, data_root=, seed=, **data fields) -> Dataset
    Result = None        # kdl.recipes.results type that predict returns
    jit_compile = "auto"    # passed to model.compile: True asks torch for torch.compile

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "Config" in cls.__dict__:        # a task (not a shared base such as Classifier)
            cls.task = cls.Config.task
            RECIPES[cls.task] = cls
        if "build_model" in cls.__dict__:   # a bad model option: a ConfigError, not a Keras traceback
            cls.build_model = _clear_build_errors(cls.__dict__["build_model"])

    def __init__(self, config=None, *, data_root=None, arrays=None, model=None):
        self.config = config or self.Config()
        configs.check_ranges(self.config)
        self.data_root = data_root
        self.arrays = arrays    # in-memory data, for config.data.source == "arrays"
        self.model = model
        self.history = None
        self.report = None

    @classmethod
    def new(cls, dataset, model, data_root=None, overrides=None, **data_defaults):
        """The body of every task's factory (`kdl.recipes.image_classifier(...)`, ...): a recipe on
        `dataset` (a name or path, or in-memory arrays, which are checked now rather than at fit
        time) with the model `model`, the task's `data_defaults`, then keyword `overrides`
        (kdl.config.configure; unknown names are the model's options)."""
        from kdl import models
        from kdl.models.registry import check_options

        arrays = None if isinstance(dataset, (str, pathlib.Path)) else dataset
        config = cls.Config()
        config.data.source = "arrays" if arrays is not None else str(dataset)
        config.model.name = model
        for field, value in data_defaults.items():
            setattr(config.data, field, value)
        builder = models.get(cls.model_kind, model)
        config = configs.configure(config, overrides or {},
                                   lambda option: check_options(builder, option))
        recipe = cls(config, data_root=data_root, arrays=arrays)
        if arrays is not None:
            recipe.data   # check the arrays now, not at fit time
        return recipe

    # -- hooks each task supplies ------------------------------------------------------
    def build_model(self):
        """A new, untrained keras.Model for `self.data`."""
        raise NotImplementedError

    def compile_arguments(self):
        """The task's `model.compile` arguments: loss and progress metrics."""
        raise NotImplementedError

    def prepare_inputs(self, inputs):
        """Turn what a user passes to `predict` into the model's input batch (a DataError names
        what was received and what is accepted)."""
        raise NotImplementedError

    def predict_inputs(self, x):
        """A `Result` for a prepared input batch `x`; keyword options are the task's own."""
        raise NotImplementedError

    def predict_split(self, split):
        """(Result, references) for every example of one split, for `evaluate`."""
        raise NotImplementedError

    def save_assets(self, path):
        """Write what the model needs besides its weights (a vocabulary) into the run directory."""

    def load_assets(self, path):
        """Read back what `save_assets` wrote."""

    def save_report_extras(self, path):
        """Extra report files (plots) a task writes beside report.json."""

    def output_width(self):
        """How many values per position the model must output for this config and its assets
        (classes, target vocabulary, characters + blank); None when it has no fixed width."""
        return None

    # -- shared behaviour --------------------------------------------------------------
    @functools.cached_property
    def data(self):
        """The dataset (kdl.data.Dataset), loaded on first use by the task's `loader`."""
        data = self.config.data
        if data.source == "arrays" and self.arrays is None:
            raise DataError(f'data.source is "arrays" but no arrays were given; pass them to '
                            f"kdl.recipes.{self.task}(...)")
        source = self.arrays if data.source == "arrays" else data.source
        dataset = type(self).loader(source, data_root=self.data_root, seed=self.config.seed,
                                    **configs.loader_options(data))
        if hasattr(data, "class_names"):
            data.class_names = list(dataset.info.class_names)   # the resolved config names them
        return dataset

    def fit(self, epochs=None, *, out=None, verbose="auto", callbacks=(), steps_per_epoch=None):
        """Train (or keep training) the model; returns the Keras History.

        `out`: a run directory (checked, then locked against other processes, before anything
        is written) that receives recipe.toml and the task's assets before the first step, then
        `history.csv` and a per-epoch checkpoint, so a run killed mid-training is usable and
        the same call resumes it. `steps_per_epoch`: stop each epoch after this many batches.
        """
        if out is not None:
            check_run_directory(out, self.task)
        with runs.lock(out) if out is not None else contextlib.nullcontext():
            return self._fit(epochs, out, verbose, callbacks, steps_per_epoch)

    def _fit(self, epochs, out, verbose, callbacks, steps_per_epoch):
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
            run_dir = plan.run_dir(out)
            if run_dir is not None:
                self._write_config_and_assets(pathlib.Path(run_dir))
            try:
                self.history = self.model.fit(
                    plan.dataset(train_batches), validation_data=validation, epochs=epochs,
                    callbacks=self._callbacks(run_dir, validation) + list(callbacks),
                    steps_per_epoch=steps_per_epoch, shuffle=False,  # tf.data shuffles
                    verbose=verbose)
            except RunError:
                raise
            except OSError as error:       # history.csv or the backup: a full disk, a lost mount
                raise RunError(f"cannot write to the run directory {str(run_dir)!r}: "
                               f"{error.strerror or error} ({error.filename}); its last good "
                               "checkpoint is kept; free some space and run the same command again "
                               "to resume") from None
        self._divergence.raise_if_diverged()     # TrainingDiverged: names epoch, step, checkpoint
        return self.history

    def _write_config_and_assets(self, folder):
        """recipe.toml (atomically) and the task's assets, before training writes anything else."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{CONFIG_FILE}.partial"
            header = "Config of a run in training (recipe.save() rewrites it when the run is saved)."
            partial.write_text(configs.to_toml(self.config, header), encoding="utf-8")
            os.replace(partial, folder / CONFIG_FILE)
            self.save_assets(folder)
        except OSError as error:
            raise RunError(f"cannot write to the run directory {str(folder)!r}: "
                           f"{error.strerror or error} ({error.filename}); choose a writable folder "
                           "with free space") from None

    def evaluate(self, split="test"):
        """Score the model on `split` with kdl.evaluation; returns (and keeps) the Report."""
        self._require_model("evaluate")
        if split not in self.data.splits:
            raise DataError(f"no split {split!r} in {self.data.info.source!r}; "
                            f"it has: {', '.join(self.data.splits)}")
        result, references = self.predict_split(split)
        report = result.score(references)
        report.meta.update(task=self.task, split=split, source=self.data.info.source,
                           backend=backend.name())
        self.report = report
        return report

    def predict(self, inputs, **options):
        """The task's Result for raw inputs (see the task's `prepare_inputs` for what it takes);
        `options` are the task's own (a translator's beam_size, a recognizer's decoder)."""
        self._require_model("predict")
        accepted = [name for name in inspect.signature(self.predict_inputs).parameters if name != "x"]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(f"{self.task} predict() has no option {unknown[0]!r}; its options: "
                              f"{', '.join(accepted) or 'none'}")
        x = self.prepare_inputs(inputs)
        if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            bad = int(np.size(x) - np.isfinite(x).sum())
            raise DataError(f"predict() got {bad} values that are NaN or infinite (in an input of shape "
                            f"{x.shape}); every value must be a finite number")
        return self.predict_inputs(x, **options)

    def batches(self, split, shuffle=False):
        """The batched pipeline of one split (tasks that encode their examples extend it)."""
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
        check_run_directory(path, self.task)
        with runs.lock(path):
            return self._save(path)

    def _save(self, path):

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

    def compile_model(self, optimizer, model=None, **settings):
        """`model.compile` (default: the recipe's model) with the task's loss and metrics and the
        recipe's jit_compile and steps_per_execution; `settings` override those (a plain-fit
        baseline uses Keras' defaults)."""
        settings = {"jit_compile": self.jit_compile, "steps_per_execution":
                    backend.steps_per_execution(self.config.train.steps_per_execution), **settings}
        (model or self.model).compile(optimizer=optimizer, **self.compile_arguments(), **settings)

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
        callbacks = [self._divergence]        # first: the checkpoint below skips a diverged epoch
        patience = self.config.train.early_stopping
        if patience:
            monitor = "val_loss" if validation is not None else "loss"
            callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=patience,
                                                           restore_best_weights=True))
        if out is not None:
            out = pathlib.Path(out)
            resuming = (out / "backup").is_dir()    # a killed run left its backup: pick it up
            callbacks.append(keras.callbacks.BackupAndRestore(str(out / "backup")))  # deleted at the end
            callbacks += [keras.callbacks.CSVLogger(str(out / "history.csv"), append=resuming),
                          Checkpoint(out / CHECKPOINT_FILE, self._divergence)]
        return callbacks

    def __repr__(self):
        state = "trained" if self.history else ("loaded" if self.model else "new")
        return (f"<{type(self).__name__} {self.config.data.source!r} model={self.config.model.name!r} "
                f"({state})>")


def check_run_directory(path, task):
    """Refuse, before anything is written, a path that cannot be a run directory of `task`: a
    file, the current directory, a directory that holds another task's run, or a non-empty
    directory that is not a kdl run (a user's folder is never written into or replaced)."""
    path = pathlib.Path(path)
    if path.name in ("", ".", "..") or path.resolve() == pathlib.Path.cwd().resolve():
        raise ConfigError(f"{str(path)!r} is not a folder of its own (the current, parent or root "
                          "directory); a run needs one, e.g. runs/NAME. Choose another --out.")
    runs.recover(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file; a run directory must be a folder. Choose another --out.")
    if (path / CONFIG_FILE).exists():
        found = _read_toml(path / CONFIG_FILE).get("task")
        if found != task:
            raise ConfigError(f"{path} holds a {found!r} run; refusing to overwrite it "
                              f"with a {task!r} run. Choose another directory.")
    elif path.is_dir() and (path / MODEL_FILE).exists():
        raise ConfigError(f"{path} holds a {MODEL_FILE} without {CONFIG_FILE}, not a kdl run "
                          "of this task; refusing to overwrite it. Choose another directory.")
    elif path.is_dir():
        others = sorted(p.name for p in path.iterdir() if p.name not in TRAINING_FILES)
        if others:
            raise ConfigError(f"{path} is not empty and is not a kdl run (it holds "
                              f"{', '.join(others[:5])}{' ...' * (len(others) > 5)}); refusing to "
                              "write into it. Choose a new or empty directory.")


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
            training = (f"; its training did not finish: run the same `kdl train ... --out {path}` again to "
                        f"resume it (the last finished epoch is in {CHECKPOINT_FILE})"
                        if (path / CHECKPOINT_FILE).is_file() else "")
            raise ConfigError(f"run directory {str(path)!r} has no {MODEL_FILE}{training}")
        model = runs.load_model(model_path, unsafe=unsafe)  # uncompiled: fit() compiles for this backend
    recipe = cls(config, data_root=data_root, model=model)
    if path.is_dir():
        recipe.load_assets(path)
        expected, width = recipe.output_width(), model.output_shape[-1]
        if expected is not None and expected != width:
            raise ConfigError(f"run directory {str(path)!r} does not hold together: its recipe.toml and "
                              f"assets call for {expected} outputs per position but {MODEL_FILE} has "
                              f"{width}; the files come from different runs")
    return recipe


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
    if not isinstance(task, str) or task not in RECIPES:
        close = difflib.get_close_matches(str(task), RECIPES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: unknown task {task!r}{hint} Known tasks: {', '.join(sorted(RECIPES))}")
    return RECIPES[task]


def _apply(config, overrides):
    for assignment in overrides:
        config = configs.override(config, assignment)
    return config


def _read_toml(path):
    try:       # utf-8-sig: a byte-order mark some editors write is not part of the recipe
        return tomllib.loads(pathlib.Path(path).read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as error:   # ints past 4,300 digits
        raise ConfigError(f"{path} is not a valid TOML recipe: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path} is not a valid TOML recipe: its tables or arrays nest too "
                          "deeply") from None


def as_strings(texts):
    """A list of str from one string or a non-empty list/array of strings (what text tasks'
    `predict` takes); a DataError naming the first item that is not a string otherwise."""
    texts = [texts] if isinstance(texts, str) else texts
    texts = texts.tolist() if hasattr(texts, "tolist") else texts    # numpy str_ -> str
    if not isinstance(texts, (list, tuple)) or not texts:
        raise DataError(f"predict() takes a string or a non-empty list of strings; "
                        f"got {type(texts).__name__} {str(texts)[:80]!r}")
    bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if bad is not None:
        raise DataError(f"predict() takes strings; item {bad} is {type(texts[bad]).__name__} {texts[bad]!r}")
    return list(texts)
