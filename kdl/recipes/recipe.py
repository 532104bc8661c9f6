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

import copy
import dataclasses
import difflib
import functools
import inspect
import json
import os
import pathlib
import tomllib
import warnings

import keras
import numpy as np

from kdl import backend, distribute, finetune, runs, tracking
from kdl import config as configs
from kdl.callbacks import AverageOverProcesses, Backup, Checkpoint, DivergenceStop
from kdl.config import TrainConfig  # noqa: F401  (re-exported: kdl.recipes.TrainConfig)
from kdl.data.io import source_root
from kdl.errors import ConfigError, DataError, KdlError, RunError, warn

RECIPES = {}  # task name -> Recipe subclass, filled by subclasses' `task`
MODEL_FILE, CONFIG_FILE, REPORT_FILE = "model.keras", "recipe.toml", "report.json"
CHECKPOINT_FILE = "checkpoint.keras"    # written by fit(out=...) after each epoch
HISTORY_FILE, BACKUP_DIR = "history.csv", "backup"    # fit(out=...): one row per epoch; the resume state
TRAINING_FILES = {CHECKPOINT_FILE, HISTORY_FILE, BACKUP_DIR, runs.LOCK_FILE}   # fit(out=...) leaves them


class Recipe:
    """A task recipe. Subclasses set the class attributes below and the hooks marked as such."""

    Config = None        # the config dataclass: task, seed, data (DataConfig), model (ModelConfig), train
    task = None          # name in recipe files and run directories: Config's `task` default
    model_kind = None    # kdl.models registry kind of config.model.name, e.g. "image_backbone"
    loader = None        # kdl.data loader: loader(source, data_root=, seed=, **data fields) -> Dataset
    Result = None        # kdl.recipes.results type that predict returns
    input_range = None   # (low, high) of numeric inputs; predict warns about values outside it
    learned = ()         # attributes learned from the training data that belong with the model
    input_files = (".txt",)   # file types `kdl predict RUN FOLDER` reads (.txt: one example a line)
    jit_compile = "auto"    # passed to model.compile: True asks torch for torch.compile
    modality = None      # "image", "text" or "audio": what a backbone from another run must take
    backbone_fields = ()    # data fields a backbone run dictates (how its vocabulary encodes text)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "Config" in cls.__dict__:        # a task (not a shared base such as Classifier)
            cls.task = cls.Config.task
            RECIPES[cls.task] = cls
        if "build_model" in cls.__dict__:   # model.backbone, and clear errors for bad options
            cls.build_model = _model_builder(cls.__dict__["build_model"])

    def __init__(self, config=None, *, data_root=None, arrays=None, model=None):
        self.config = config or self.Config()
        configs.check_ranges(self.config)
        self.data_root = data_root
        self.arrays = arrays    # in-memory data, for config.data.source == "arrays"
        self.model = model
        self.history = None
        self.report = None
        self.run_dir = None     # the run directory this recipe was loaded from, trained or saved into
        self._continuing = False    # fit appends to the run's history.csv (resuming or continuing)

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

    def input_mismatch(self):
        """How this config and its assets disagree with the model's input (an image size, a
        vocabulary larger than the model embeds), or None; checked on load."""
        return None

    def transfer_features(self):
        """The tensor of this run's model (B, F) that a new task head can be put on, when another
        run starts from this one (`model.backbone = RUN`); None: this task's model cannot be a
        backbone (kdl.recipes.transfer)."""
        return None

    def transfer_inputs(self):
        """The input (or list of inputs) of this run's model that `transfer_features` depends on."""
        inputs = self.model.inputs
        return inputs if len(inputs) > 1 else inputs[0]

    def build_from_preset(self, preset):
        """A new model for `self.data` whose backbone is the keras-hub preset `preset` (a name or
        a local preset folder), with the preset's own preprocessing inside (a task hook)."""
        raise ConfigError(f"a {self.task} cannot start from a keras-hub preset (model.backbone = "
                          f"{self.config.model.backbone!r}); use a kdl run of the same kind of data, "
                          "or leave model.backbone empty")

    def explain_point(self):
        """(layer name, what): the layer of this run's model to whose output integrated gradients
        attributes the model's output (None: the model's input), e.g. (None, "pixels"), the token
        embeddings, the log-mel features; None when there is none (a task hook; kdl.explain)."""
        return None

    def card_notes(self):
        """What the model card (RUN/README.md, kdl.card) says this run's model is for, the input
        it expects and where it falls short: Markdown sentences, one a bullet (a task hook; tasks
        put their own first)."""
        source = "in-memory arrays" if self.config.data.source == "arrays" else f"`{self.config.data.source}`"
        return [f"Learned from, and scored on, {source} only: inputs unlike them (another domain, "
                "language, device or set-up) may do much worse, by an amount not measured here."]

    # -- shared behaviour --------------------------------------------------------------
    @functools.cached_property
    def data(self):
        """The dataset (kdl.data.Dataset), loaded on first use by the task's `loader`."""
        data = self.config.data
        if data.source == "arrays" and self.arrays is None:
            raise DataError(f'data.source is "arrays" but no arrays were given; pass them to '
                            f"kdl.recipes.{self.task}(...)")
        source = self.arrays if data.source == "arrays" else data.source
        root = self.data_root or data.root or None      # --data-root, else where the run found it
        dataset = type(self).loader(source, data_root=root, seed=self.config.seed,
                                    **configs.loader_options(data))
        data.root = source_root(source, root)
        if hasattr(data, "class_names") and not data.classes:   # a subset keeps the names it chose from
            data.class_names = list(dataset.info.class_names)   # the resolved config names them
        return dataset

    def fit(self, epochs=None, *, out=None, verbose="auto", callbacks=(), steps_per_epoch=None,
            restart=False, overwrite=False):
        """Train (or keep training) the model; returns the Keras History.

        `out`: a run directory (checked, then locked against other processes, before anything
        is written) that receives recipe.toml and the task's assets before the first step, then
        `history.csv` and a per-epoch checkpoint, so a run killed mid-training is usable and
        the same call resumes it (with the same config). A directory holding a finished run is
        refused unless it is this recipe's own run (training continues there) or `restart`
        (discard that run's model and training, start again); a non-empty folder that is not a
        kdl run is refused unless `overwrite` (kdl's files are added, the folder's own are
        kept). `steps_per_epoch`: stop each epoch after this many batches. See docs/runs.md.
        """
        tracking.check(self.config.track)      # MLflow asked for but unusable: before any write
        if out is None:
            return self._fit(epochs, None, verbose, callbacks, steps_per_epoch)
        out = pathlib.Path(out)
        if not distribute.is_chief():     # process 0 of a multi-process run owns `out`
            return self._fit(epochs, out, verbose, callbacks, steps_per_epoch)
        check_run_directory(out, self.task, overwrite=overwrite)
        with runs.lock(out):
            self._claim_run_directory(out, restart)
            history = self._fit(epochs, out, verbose, callbacks, steps_per_epoch)
            self.run_dir = out
            return history

    def _claim_run_directory(self, out, restart):
        """Decide what fit does with what `out` holds: resume an interrupted run (its backup/),
        continue this recipe's own run, or start a new one; a finished run of another recipe
        object is replaced only with `restart`."""
        model, checkpoint, backup = out / MODEL_FILE, out / CHECKPOINT_FILE, out / BACKUP_DIR
        if restart:
            for name in (MODEL_FILE, CHECKPOINT_FILE, HISTORY_FILE, BACKUP_DIR, REPORT_FILE):
                runs.remove(out / name)
            self._continuing = False
            return
        own = self.run_dir is not None and _same_path(self.run_dir, out)
        finished = model.is_file() or (checkpoint.is_file() and not backup.is_dir())
        if finished and not own:
            held = ", ".join(p.name for p in (model, checkpoint) if p.is_file())
            raise ConfigError(f"{out} holds a finished {self.task} run ({held}); refusing to replace it. "
                              "Choose another --out, or pass --restart (fit(restart=True)) to discard "
                              "it and train again there.")
        self._continuing = own or backup.is_dir()   # append to history.csv

    def _fit(self, epochs, out, verbose, callbacks, steps_per_epoch):
        train = self.config.train
        epochs = train.epochs if epochs is None else epochs
        backend.set_seed(self.config.seed)
        backend.use_exact_float32()
        with distribute.scope(train.distribute, train.precision) as plan:   # no-op for single/fp32
            if plan.process_count > 1:      # every process: the same recipe, kdl and libraries
                distribute.agree(**self._identity())
            self.model = plan.model(self.model, self.build_model)
            train_batches = self.batches("train", shuffle=True)
            if not getattr(self.model, "compiled", False):
                steps = steps_per_epoch or len(train_batches)
                optimizer = self.make_optimizer(epochs * steps)
                self.compile_model(finetune.prepare(self.model, optimizer, train, steps))
            validation = self.batches("validation") if "validation" in self.data.splits else None
            validation = None if validation is None else plan.dataset(validation)
            run_dir = None if out is None else pathlib.Path(out)
            if run_dir is not None and plan.chief:     # process 0 alone writes the run directory
                self._check_resume(run_dir)
                self._write_config_and_assets(run_dir)
            if plan.process_count > 1:
                distribute.barrier("run directory ready")    # the others wait until it is written
                _check_shared(run_dir, plan)
        train_batches = plan.dataset(train_batches)
        plan.before_fit(self.model, train_batches)
        if run_dir is not None:     # resuming at epoch k: shuffle as an uninterrupted run's epoch k
            _skip_epochs(train_batches, Backup.saved_epoch(run_dir / BACKUP_DIR))
        try:
            with plan.fit_context():
                self.history = self.model.fit(
                    train_batches, validation_data=validation, epochs=epochs,
                    callbacks=self._callbacks(run_dir, validation, plan) + list(callbacks),
                    steps_per_epoch=steps_per_epoch, shuffle=False,  # tf.data shuffles
                    verbose=verbose)
        except RunError:
            raise
        except OSError as error:       # history.csv or the backup: a full disk, a lost mount
            raise RunError(f"cannot write to the run directory {str(run_dir)!r}: "
                           f"{error.strerror or error} ({error.filename}); its last good "
                           "checkpoint is kept; free some space and run the same command again "
                           "to resume") from None
        backend.unshare_averaged_weights(self.model)      # train.ema on JAX
        self.model = plan.release(self.model, self.build_model,
                                  lambda model, optimizer: self.compile_model(optimizer, model))
        self._divergence.raise_if_diverged()     # TrainingDiverged: names epoch, step, checkpoint
        return self.history

    def _same_model_fields(self):
        """This recipe's config as a plain dict, less what runs of one model may differ in."""
        return _same_model_fields(tomllib.loads(configs.to_toml(self.config)))

    def _identity(self):
        """What every process of a multi-process run must share (kdl.distribute.agree)."""
        from kdl import __version__

        return {"kdl version": __version__, "keras version": keras.__version__, "backend": backend.name(),
                "recipe": json.dumps(self._same_model_fields(), sort_keys=True, default=str)}

    def _check_resume(self, folder):
        """An interrupted run is resumed only with the config it was started with."""
        if not (folder / BACKUP_DIR).is_dir() or not (folder / CONFIG_FILE).is_file():
            return
        before = _same_model_fields(_read_toml(folder / CONFIG_FILE))
        changed = configs.differences(before, self._same_model_fields())
        if changed:
            raise ConfigError(f"{folder} holds an interrupted run (its {BACKUP_DIR}/) started with another "
                              f"config; changed: {'; '.join(changed)}. Resume it with the config it was "
                              "started with, or pass --restart (fit(restart=True)) to discard the "
                              "interrupted training and start again.")

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

    def evaluate(self, split=None, *, data=None, **data_options):
        """Score the model with kdl.evaluation; returns the Report.

        Without `data`: `split` ("test" by default) of the recipe's own data; the report is kept
        (`recipe.report`, saved with the run). With `data`: any source the task trains from (a
        folder, a CSV/TSV, line files, "tfds:NAME", arrays) is scored as one labelled set, all
        of it (or only its `split`), classes matched to this run's by name; `data_options` are
        the source's own loading fields, e.g. `text_column="review"`.

        >>> recipe.evaluate(data="reviews.csv", text_column="review")    # doctest: +SKIP
        """
        self._require_model("evaluate")
        if data is None and data_options:
            raise ConfigError(f"evaluate() takes data options ({', '.join(data_options)}) only with data=")
        recipe = self if data is None else self._on(data, data_options)
        names = [split or "test"] if data is None or split else list(recipe.data.splits)
        for name in names:
            if name not in recipe.data.splits:
                raise DataError(f"no split {name!r} in {recipe.data.info.source!r}; "
                                f"it has: {', '.join(recipe.data.splits)}")
        parts = [recipe._predict_split_shared(name) for name in names]
        result = self.Result.concatenate([result for result, _ in parts])
        references = [references for _, references in parts]
        references = (np.concatenate(references) if isinstance(references[0], np.ndarray)
                      else [item for part in references for item in part])
        report = result.score(references)
        report.meta.update(task=self.task, split="all" if data is not None and not split else names[0],
                           source=recipe.data.info.source, backend=backend.name())
        if data is None:
            self.report = report
        return report

    def _predict_split_shared(self, split):
        """predict_split, shared out in a multi-process run: each process predicts its own
        contiguous part of the split, and every process gets all of them back in order before the
        scorer sees them (kdl.distribute.all_gather)."""
        index, count = distribute.world()
        if count == 1:
            return self.predict_split(split)
        start, stop = distribute.shard_range(self.data.info.num_examples[split], index, count)
        view = copy.copy(self)        # the same model, learned vocabularies and config
        view.__dict__["data"] = _part(self.data, split, start, stop)
        mine = None
        if stop > start:
            result, references = view.predict_split(split)
            mine = {"result": {field.name: getattr(result, field.name)
                               for field in dataclasses.fields(result)}, "references": references}
        parts = [part for part in distribute.all_gather(mine) if part is not None]
        references = [part["references"] for part in parts]
        return (self.Result.concatenate([self.Result(**part["result"]) for part in parts]),
                np.concatenate(references) if isinstance(references[0], np.ndarray)
                else [item for part in references for item in part])

    def _on(self, source, data_options):
        """A recipe with this one's model and learned vocabularies on another data source, all of
        it kept (no `limit`), its classes renumbered to this run's (`adapt_data`)."""
        data_config = self.config.data
        loading = set(configs.loader_options(data_config)) - {"class_names", "limit"}
        unknown = sorted(set(data_options) - loading)
        if unknown:
            raise ConfigError(f"evaluate(): {unknown[0]!r} is not a data loading option of a {self.task} "
                              f"run; its options: {', '.join(sorted(loading))}")
        arrays = None if isinstance(source, (str, os.PathLike)) else source
        fields = dict(source="arrays" if arrays is not None else os.fspath(source), root="", limit=None,
                      **self.evaluation_options())
        if hasattr(data_config, "class_names"):   # the source's own names, all of it (only the run's
            fields.update(class_names=None, per_class=None)   # `classes` if it has them), matched by name
        config = dataclasses.replace(self.config, data=dataclasses.replace(data_config, **fields))
        for name, value in data_options.items():  # type-checked as keyword overrides are
            config = configs.replace(config, ["data", name], value, where="evaluate()")
        view = type(self)(config, data_root=self.data_root, arrays=arrays, model=self.model)
        for name in self.learned:                 # the vocabularies the model was trained with
            view.__dict__[name] = getattr(self, name)
        with warnings.catch_warnings():   # every split is scored: the loader's hold-outs mean nothing here
            warnings.filterwarnings("ignore", message=".*the training split has no examples of")
            view.__dict__["data"] = self.adapt_data(view.data)
        if hasattr(view.config.data, "class_names"):
            view.config.data.class_names = list(view.data.info.class_names)
        return view

    def evaluation_options(self):
        """Data loading fields that make another source fit this run's model (a task hook)."""
        return {}

    def adapt_data(self, dataset):
        """Another source's Dataset in this run's terms (a task hook: classifiers renumber classes)."""
        return dataset

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
        if self.input_range and isinstance(x, np.ndarray) and x.size and x.dtype.kind in "fiu":
            low, high = self.input_range
            if x.min() < low or x.max() > high:
                warn(f"predict() got values from {x.min():.6g} to {x.max():.6g}; this {self.task} takes "
                     f"{low}..{high}, so its outputs for them may mean little")
        return self.predict_inputs(x, **options)

    def explain(self, inputs, method="integrated_gradients", target=None, **settings):
        """Why the model decided on `inputs` (what `predict` takes): a kdl.explain.Explanation of
        `method` ("integrated_gradients", "grad_cam", "occlusion", "attention"; `kdl.explain.methods`
        lists those that apply), for the class `target` (default: the predicted one). `settings`
        are the method's own (kdl.explain.SETTINGS). See docs/explain.md.

        >>> recipe.explain(images, method="grad_cam").save("explained/")      # doctest: +SKIP
        """
        from kdl import explain

        return explain.explain(self, inputs, method, target, **settings)

    def tune(self, out, trials=None, space="default", **settings):
        """Search this recipe's fields with Optuna (kdl.tune); returns the Optuna study, results in
        the folder `out` (trials/, trials.csv, best.toml, plots; docs/tune.md). `space`: {dotted
        field: {low, high[, log]} or {choices: [...]}[, when]} or "default" (the task's);
        `trials`: finished trials to run to; `settings`: metric, direction, sampler, pruner, seed.

        >>> study = recipe.tune("runs/tuned", trials=16)                      # doctest: +SKIP
        """
        from kdl import tune

        search = tune.TuneConfig(**settings)
        search.trials = trials or search.trials
        search.space = tune.DEFAULT_SPACES[self.task] if space == "default" else space
        return tune.tune(self, search, out, quiet=True)

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
        (history.csv, checkpoint.keras, tensorboard/) are kept. The saved run is then logged as
        its [track] section says (kdl.tracking): its report and hyperparameters to TensorBoard,
        the whole run to MLflow.
        """
        self._require_model("save")
        path = pathlib.Path(path)
        check_run_directory(path, self.task)
        with runs.lock(path):
            self._save(path)
            tracking.log_saved_run(self, path)     # TensorBoard's hparams and report; MLflow
        self.run_dir = path
        return path

    def _save(self, path):
        from kdl import card

        card_file = card.card_file(path)     # README.md, unless the folder has a README of its own

        def fill(tmp):
            self.model.save(tmp / MODEL_FILE)
            header = f"Resolved config of a run saved by kdl on the {backend.name()} backend."
            (tmp / CONFIG_FILE).write_text(configs.to_toml(self.config, header), encoding="utf-8")
            self.save_assets(tmp)
            if self.report is not None:
                self.report.to_json(tmp / REPORT_FILE)
                self.save_report_extras(tmp)
            card.write(self, tmp, path, card_file)      # the model card, from all of the above

        runs.write_directory(path, fill, replaces=(MODEL_FILE, CONFIG_FILE, REPORT_FILE, card_file,
                                                   card.CURVES_FILE))
        return path

    def export(self, path, format="keras"):
        """Export the model for serving into the folder `path`: "keras" (model.keras),
        "saved_model" (TensorFlow SavedModel) or "onnx" (model.onnx), with signature.json, the
        task's assets (a text run's vocabulary) and the run's model card (README.md, kdl.card).
        The export is checked against the Keras model before it is kept. See kdl.export and
        docs/export.md for what each backend can produce; a format the active backend cannot
        produce is a BackendError.
        """
        from kdl import card, export

        self._require_model("export")
        export.check_format(format)
        return export.export(self.model, path, format, sample=self.export_sample(),
                             description=self.export_description(), write_assets=self.save_assets,
                             write_card=lambda folder: card.copy(self, folder))

    def export_sample(self):
        """An input batch the export is checked on (tasks whose inputs are not 0..255 floats
        override it)."""
        from kdl import export

        return export.sample_inputs(self.model, value_range=(0, 255))

    def export_description(self):
        """What signature.json says besides names, dtypes and shapes: the task, the class names,
        how to prepare inputs. Tasks extend it."""
        description = {"task": self.task}
        names = getattr(self.config.data, "classes", None) or getattr(self.config.data, "class_names", None)
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
        configs.check_schedule(train, total_steps)     # a warmup longer than the run: a clear error
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
        config = {"learning_rate": rate}
        if train.weight_decay:
            config["weight_decay"] = train.weight_decay
        if train.ema:       # Keras' fit ends by writing the averaged weights into the model
            config.update(use_ema=True, ema_momentum=train.ema)
        try:
            return keras.optimizers.get({"class_name": train.optimizer, "config": config})
        except ValueError:
            raise ConfigError(f"train.optimizer: unknown Keras optimizer {train.optimizer!r} "
                              "(try adam, adamw, sgd, rmsprop)") from None

    def _callbacks(self, out, validation, plan):
        """The callbacks of every fit under `plan` (kdl.distribute): process 0 writes the run
        directory `out`, the other processes of a multi-process run only restore its backup."""
        self._divergence = DivergenceStop(None if out is None else pathlib.Path(out) / CHECKPOINT_FILE)
        callbacks = [self._divergence]        # first: the checkpoint below skips a diverged epoch
        if plan.local_logs and plan.process_count > 1:
            callbacks.insert(0, AverageOverProcesses())
        writer = plan.chief
        patience = self.config.train.early_stopping
        if patience:
            monitor = "val_loss" if validation is not None else "loss"
            callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=patience,
                                                           restore_best_weights=True))
        if out is not None and not writer:
            return callbacks + [Backup(pathlib.Path(out) / BACKUP_DIR, write=False)]
        if out is not None:
            out = pathlib.Path(out)
            callbacks.append(Backup(out / BACKUP_DIR))    # a killed run resumes from it; deleted at the end
            callbacks += [keras.callbacks.CSVLogger(str(out / HISTORY_FILE), append=self._continuing),
                          Checkpoint(out / CHECKPOINT_FILE, self._divergence)]
        return callbacks + tracking.callbacks(self, out, fresh=not self._continuing)   # out/tensorboard

    def __repr__(self):
        state = "trained" if self.history else ("loaded" if self.model else "new")
        return (f"<{type(self).__name__} {self.config.data.source!r} model={self.config.model.name!r} "
                f"({state})>")


def check_run_directory(path, task, overwrite=False):
    """Refuse, before anything is written, a path that cannot be a run directory of `task`: a
    file, the current directory, a directory that holds another task's run, or a non-empty
    directory that is not a kdl run unless `overwrite` (a user's folder is never replaced, and
    its own files are kept)."""
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
    elif path.is_dir() and not overwrite:
        others = sorted(p.name for p in path.iterdir() if p.name not in TRAINING_FILES)
        if others:
            raise ConfigError(f"{path} is not empty and is not a kdl run (it holds "
                              f"{', '.join(others[:5])}{' ...' * (len(others) > 5)}); refusing to "
                              "write into it. Choose a new or empty directory, or pass --overwrite "
                              "(overwrite=True) to add the run's files to it (its own files are kept).")


def _skip_epochs(batches, epochs):
    """Advance a reshuffled-each-epoch pipeline by `epochs` epochs without reading it: each new
    iterator draws the next epoch's order from its seed."""
    batches = getattr(batches, "kdl_local", batches)      # a tf.distribute dataset: its own pipeline
    for _ in range(epochs):
        iter(batches)


def _part(dataset, split, start, stop):
    """`dataset` with only examples [start, stop) of `split` (and of its transcripts)."""
    info = dataclasses.replace(dataset.info, num_examples={**dataset.info.num_examples, split: stop - start})
    splits = {**dataset.splits, split: dataset.splits[split].skip(start).take(stop - start)}
    transcripts = dict(dataset.transcripts)
    if split in transcripts:
        transcripts[split] = transcripts[split][start:stop]
    return dataclasses.replace(dataset, info=info, splits=splits, transcripts=transcripts)


def _check_shared(run_dir, plan):
    """Every process must see the run directory process 0 writes: they resume from its backup."""
    if run_dir is None or plan.chief or (run_dir / CONFIG_FILE).is_file():
        return
    raise RunError(f"process {plan.process_index} cannot see {run_dir / CONFIG_FILE}, which process 0 "
                   f"has just written: the run directory must be on storage every process reads (the "
                   "same machine, NFS, a mounted bucket), so that all of them resume from its backup/")


def _same_model_fields(config):
    """A parsed config without where the data was found (it may differ, not what it is), where
    the run is logged and what its model card says: what a resumed run, or every process of a
    multi-process run, must share."""
    config.get("data", {}).pop("root", None)
    config.pop(tracking.SECTION, None)
    config.pop("card", None)
    return config


def _same_path(a, b):
    return pathlib.Path(a).resolve() == pathlib.Path(b).resolve()


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
    values.pop("tune", None)       # a search's settings (kdl.tune reads them); training ignores them
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
        recipe.run_dir = path
        recipe.load_assets(path)
        expected, width = recipe.output_width(), model.output_shape[-1]
        mismatch = (f"its recipe.toml and assets call for {expected} outputs per position but {MODEL_FILE} "
                    f"has {width}" if expected is not None and expected != width else recipe.input_mismatch())
        if mismatch:
            raise ConfigError(f"run directory {str(path)!r} does not hold together: {mismatch}; the files "
                              "come from different runs")
    return recipe


def _model_builder(build_model):
    """Wrap a task's build_model: the backbone comes from where `model.backbone` says
    (kdl.recipes.transfer), and a TypeError/ValueError from Keras (a bad backbone option, such
    as filters="abc" or dropout=2) becomes a ConfigError naming the model and its options."""

    @functools.wraps(build_model)
    def build(self):
        from kdl.recipes import transfer

        try:
            return transfer.build(self, lambda: build_model(self))
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
