"""Hyperparameter search over a recipe's dotted fields: `kdl tune` and `recipe.tune`, on Optuna.

Optuna is the engine: its samplers (TPE, CMA-ES, random), its pruners (median, Hyperband) fed
per epoch by optuna-integration's KerasPruningCallback, and its relational storage, so a study
survives a kill and several worker processes, on one machine or many, share it (SQLite here,
PostgreSQL or MySQL on a cluster). kdl adds what a recipe search needs: the search space over
dotted recipe fields (conditional on other fields), each trial an ordinary run directory, an
exact number of finished trials however many workers and kills, and the results (trials.csv,
best.toml, plots). See docs/tune.md.

>>> space = Space({"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
...                "model.name": {"choices": ["cnn", "resnet"]},
...                "model.options.width": {"choices": [16, 32], "when": {"model.name": "resnet"}}})
>>> list(space.params)
['train.learning_rate', 'model.name', 'model.options.width']
"""

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import warnings

import tomli_w

from kdl import config as configs
from kdl import tracking
from kdl.errors import ConfigError, KdlError
from kdl.runs import write_file

STUDY = "kdl"                   # the study's name in its storage
TRIALS_DIR, DATABASE = "trials", "study.db"
FINISHED = ("COMPLETE", "PRUNED")


@dataclasses.dataclass
class TuneConfig:
    """The [tune] section of a recipe file."""

    metric: str = ""            # a validation metric of fit's history; "": val_accuracy / val_loss
    direction: str = ""         # "maximize" or "minimize"; "": from the metric (loss: minimize)
    trials: int = 16            # finished (complete or pruned) trials the study runs to
    sampler: str = "tpe"        # tpe, random, cmaes
    pruner: str = "median"      # median, hyperband, none
    seed: int = 0               # the sampler's seed
    stale_after: int = 60       # seconds without a worker's heartbeat before its trial is failed and re-run
    space: dict = dataclasses.field(default_factory=dict)   # field -> {low, high, log, step} | {choices}


class Param:
    """One dimension of the space: {low, high[, log][, step]} (int when low and high are ints) or
    {choices: [...]} (any TOML values: numbers, strings, lists, tables), optionally
    {when: {field: value}}: sampled only when the fields sampled before have those values."""

    def __init__(self, name, spec, where):
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a table such as {{low = 1e-4, high = 1e-2, log = true}} or "
                              f"{{choices = [...]}}, got {spec!r}")
        unknown = sorted(set(spec) - {"low", "high", "log", "step", "choices", "when"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a dimension takes low, high, log, step, "
                              "choices and when")
        self.name, self.when = name, spec.get("when", {})
        if not isinstance(self.when, dict):
            raise ConfigError(f"{where}.when: expected a table {{field = value}}, got {self.when!r}")
        self.choices = spec.get("choices")
        if self.choices is not None:
            if not isinstance(self.choices, list) or not self.choices:
                raise ConfigError(f"{where}.choices: expected a non-empty list, got {self.choices!r}")
            return
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"{where}: a range needs low and high (or give choices = [...])")
        self.low, self.high = spec["low"], spec["high"]
        self.log, self.step = bool(spec.get("log", False)), spec.get("step")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.low, self.high))
        if not numbers or not self.low < self.high:
            raise ConfigError(f"{where}: the range is empty or not numeric (low = {self.low!r}, high = "
                              f"{self.high!r}); low must be below high")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: a log range needs low > 0, got {self.low!r}")
        self.integer = isinstance(self.low, int) and isinstance(self.high, int)

    def applies(self, config):
        """Whether `when` holds in `config` (with the values sampled so far)."""
        return all(_get(config, field) == value for field, value in self.when.items())

    def suggest(self, trial):
        if self.choices is not None:       # Optuna's choices are scalars: lists and tables go as JSON
            encoded = [json.dumps(choice, sort_keys=True) for choice in self.choices]
            return json.loads(trial.suggest_categorical(self.name, encoded))
        if self.integer:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)


class Space:
    """The search space: dotted recipe fields in order (a field's `when` may name earlier ones)."""

    def __init__(self, table, where="tune.space"):
        if not isinstance(table, dict) or not table:
            raise ConfigError(f"{where}: the search space is empty; give at least one field, e.g. "
                              '"train.learning_rate" = {low = 1e-4, high = 1e-2, log = true}, or use '
                              "--space default")
        self.params = {name: Param(name, spec, f"{where}.{name!r}") for name, spec in table.items()}
        order = list(self.params)
        for name, param in self.params.items():
            later = [field for field in param.when
                     if field in self.params and order.index(field) > order.index(name)]
            if later:
                raise ConfigError(f"{where}.{name!r}.when names {later[0]!r}, which is sampled after it; "
                                  "list it first")

    def sample(self, trial, config):
        """(config with the sampled values, {field: value}) for one trial."""
        chosen = {}
        for name, param in self.params.items():
            if param.applies(config):
                chosen[name] = param.suggest(trial)
                config = configs.replace(config, name.split("."), chosen[name], where="tune.space")
        return config, chosen

    def check(self, recipe):
        """Every field exists in the recipe's config and takes the values given; every model named
        exists; options are options of the models they apply to (a ConfigError names the first)."""
        from kdl import models
        from kdl.models.registry import check_options

        for name, param in self.params.items():
            values = param.choices if param.choices is not None else [param.low, param.high]
            for value in values:           # the field exists and takes the value (type, bounds)
                configs.replace(recipe.config, name.split("."), value, where=f"tune.space.{name!r}")
                if name == "model.name":
                    models.get(recipe.model_kind, value)      # an unknown model names the known ones
            if name.startswith("model.options."):
                named = self.params.get("model.name")
                candidates = named.choices if named and named.choices else [recipe.config.model.name]
                wanted = param.when.get("model.name")
                for model in [model for model in candidates if wanted in (None, model)]:
                    try:
                        check_options(models.get(recipe.model_kind, model), {name.split(".")[2]: values[0]})
                    except ConfigError as error:
                        raise ConfigError(f"tune.space.{name!r}: {error} (limit it to one model with "
                                          f'when = {{"model.name" = "..."}})') from None


DEFAULT_SPACES = {     # what a careful practitioner searches per task (docs/tune.md)
    "image_classifier": {
        "train.learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
        "data.batch_size": {"choices": [32, 64, 128]},
        "model.options.filters": {"choices": [[16, 32], [32, 64], [32, 64, 128]],
                                  "when": {"model.name": "cnn"}},
        "model.options.dense": {"choices": [64, 128, 256], "when": {"model.name": "cnn"}},
        "model.options.dropout": {"low": 0.0, "high": 0.5},
        "model.augment": {"choices": [[], ["translate"], ["translate", "rotate"]]},
    },
    "text_classifier": {
        "train.learning_rate": {"low": 2e-4, "high": 5e-3, "log": True},
        "data.batch_size": {"choices": [32, 64, 128]},
        "model.options.embedding": {"choices": [64, 128, 256]},
        "model.options.filters": {"choices": [64, 128, 256], "when": {"model.name": "cnn"}},
        "model.options.dropout": {"low": 0.1, "high": 0.6},
        "train.epochs": {"low": 2, "high": 6},
    },
    "audio_classifier": {
        "train.learning_rate": {"low": 5e-4, "high": 1e-2, "log": True},
        "model.options.filters": {"choices": [[16, 32], [16, 32, 64], [32, 64, 128]]},
        "model.options.dropout": {"low": 0.0, "high": 0.5},
        "model.time_masks": {"low": 0, "high": 3},
    },
    "speech_recognizer": {
        "train.learning_rate": {"low": 3e-4, "high": 3e-3, "log": True},
        "model.options.dropout": {"low": 0.0, "high": 0.3},
    },
    "translator": {
        "train.learning_rate": {"low": 2e-4, "high": 2e-3, "log": True},
        "model.options.dropout": {"low": 0.0, "high": 0.3},
        "train.label_smoothing": {"low": 0.0, "high": 0.2},
    },
    "language_model": {
        "train.learning_rate": {"low": 2e-4, "high": 3e-3, "log": True},
        "model.options.dropout": {"low": 0.0, "high": 0.3},
    },
}


def read(path, overrides=(), data_root=None, space=None):
    """(the recipe, its TuneConfig) from a recipe file with a [tune] section (or none, with
    `space="default"`); `space` "default" replaces the file's space with the task's default."""
    from kdl import recipes

    path = pathlib.Path(path)
    recipe = recipes.load(path, overrides, data_root=data_root)
    table = tomllib.loads(path.read_text(encoding="utf-8-sig")).get("tune", {}) if path.is_file() else {}
    tune = configs.from_dict(TuneConfig, table, where=f"{path} [tune]")
    if space == "default":
        tune.space = DEFAULT_SPACES[recipe.task]
    elif space is not None:
        raise ConfigError(f"--space takes 'default' (the task's default search space); got {space!r}")
    return recipe, tune


def settle(recipe, tune):
    """Fill the metric and direction, and check the whole study before any trial runs."""
    import optuna

    classifier = hasattr(recipe, "class_names")
    tune.metric = tune.metric or ("val_accuracy" if classifier else "val_loss")
    if not tune.metric.startswith("val_"):
        raise ConfigError(f"tune.metric {tune.metric!r}: a study is scored on the validation split (a "
                          "fit history's val_* metric such as val_accuracy or val_loss), never on the test "
                          "split, which --retrain-best scores once at the end")
    tune.direction = tune.direction or ("minimize" if "loss" in tune.metric else "maximize")
    if tune.direction not in ("maximize", "minimize"):
        raise ConfigError(f"tune.direction must be maximize or minimize; got {tune.direction!r}")
    if not (isinstance(tune.trials, int) and tune.trials >= 1):
        raise ConfigError(f"tune.trials must be a whole number >= 1; got {tune.trials!r}")
    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
               "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner}
    for field, value, known in (("sampler", tune.sampler, SAMPLERS), ("pruner", tune.pruner, pruners)):
        if value not in known:
            raise ConfigError(f"tune.{field} must be one of {', '.join(known)}; got {value!r}")
    space = Space(tune.space)
    space.check(recipe)
    if "validation" not in recipe.data.splits:
        raise ConfigError(f"tuning needs a validation split, and {recipe.config.data.source!r} gives "
                          "none; set data.validation_split (e.g. 0.1) so part of train is held out to score "
                          "trials")
    return space, sampler(tune), pruners[tune.pruner]()


SAMPLERS = ("tpe", "random", "cmaes")


def sampler(tune, offset=0):
    """The study's sampler, seeded with tune.seed + offset: each worker, and each resumption, gets
    its own offset, or two samplers of one seed would propose the same trials."""
    import optuna

    kind = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "cmaes": optuna.samplers.CmaEsSampler}[tune.sampler]
    return kind(seed=tune.seed + offset)


def open_study(out, storage, tune, recipe_text, sampler=None, pruner=None):
    """The study in `storage` (default: OUT/study.db), created or resumed; a study of another
    recipe or search in the same storage is an error, not a mix."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / DATABASE).resolve()}"
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    retry = RetryHeartbeatStaleTrialCallback(max_retry=3)      # a stale trial's settings run again
    rdb = RDBStorage(url, heartbeat_interval=heartbeat(tune), grace_period=tune.stale_after,
                     engine_kwargs=engine, heartbeat_stale_trial_callback=retry)
    study = optuna.create_study(study_name=STUDY, storage=rdb, direction=tune.direction, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    search = {k: v for k, v in dataclasses.asdict(tune).items()       # more trials, other timings: fine
              if k not in ("trials", "stale_after")}
    identity = {"recipe": recipe_text, "tune": json.dumps(search, sort_keys=True)}
    for key, value in identity.items():
        found = study.user_attrs.get(key)
        if found is None:
            study.set_user_attr(key, value)
        elif found != value:
            raise ConfigError(f"{url} holds a study of another {key} (its {key} differs from this one's); "
                              "resume it with the same recipe file, options and search space, or choose "
                              "another --out / --storage")
    return study


def heartbeat(tune):
    """Seconds between a worker's heartbeats: six within tune.stale_after."""
    return max(1, int(tune.stale_after) // 6)


def counts(study):
    """{state name: trials} of the study."""
    found = {}
    for trial in study.get_trials(deepcopy=False):
        found[trial.state.name] = found.get(trial.state.name, 0) + 1
    return found


def work(recipe, tune, space, study, out, progress=None):
    """Run trials of `study` until it has tune.trials finished ones (this process is one worker)."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    while True:
        optuna.storages.fail_stale_trials(study)      # a killed worker's trial: failed, its params re-queued
        found = counts(study)
        done = sum(found.get(state, 0) for state in FINISHED)
        if done >= tune.trials:
            return
        if done + found.get("RUNNING", 0) >= tune.trials:      # the last ones run elsewhere; one may fail
            time.sleep(heartbeat(tune))
            continue
        try:
            study.optimize(lambda trial: _trial(trial, recipe, tune, space, study, out), n_trials=1,
                           catch=(KdlError,), callbacks=[progress] if progress else [])
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as error:
            finished = optuna.exceptions.UpdateFinishedTrialError
            taken = isinstance(error, finished) or "Cannot tell a" in str(error)
            if not taken:
                raise
            # another worker heard nothing from this one for tune.stale_after seconds (an overloaded
            # machine), failed its trial and queued it again: go on with the next one
            print(f"kdl tune: a trial of this worker was failed as stale by another and will run again; "
                  f"raise tune.stale_after ({tune.stale_after} s) on a busy machine", file=sys.stderr)


class _Surplus(KdlError):
    """A trial started while the last needed ones were already running elsewhere."""


def _trial(trial, recipe, tune, space, study, out):
    import keras
    import optuna
    from optuna_integration import KerasPruningCallback

    ahead = [t for t in study.get_trials(deepcopy=False, states=_states(FINISHED + ("RUNNING",)))
             if t.number < trial.number]
    if len(ahead) >= tune.trials:
        trial.set_user_attr("error", "not needed: the study had enough trials when it started")
        raise _Surplus("surplus trial")
    config, chosen = space.sample(trial, recipe.config)
    folder = out / TRIALS_DIR / f"{trial.number:04d}"
    trial.set_user_attr("run", str(folder))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    keras.backend.clear_session()
    start = time.perf_counter()
    candidate = type(recipe)(config, data_root=recipe.data_root, arrays=recipe.arrays)
    try:
        history = candidate.fit(out=folder, verbose=0, restart=True,
                                callbacks=[KerasPruningCallback(trial, tune.metric)])
    except optuna.TrialPruned:
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        raise
    except KdlError as error:
        trial.set_user_attr("error", str(error))
        raise
    seconds = time.perf_counter() - start
    values = history.history.get(tune.metric)
    if not values:
        raise ConfigError(f"tune.metric {tune.metric!r} is not in the fit history; it has: "
                          f"{', '.join(history.history)}")
    candidate.report = candidate.evaluate("validation")
    candidate.save(folder)
    trial.set_user_attr("seconds", round(seconds, 2))
    best = max(values) if tune.direction == "maximize" else min(values)
    return float(best) if math.isfinite(best) else float("nan")


def params(trial):
    """A trial's sampled values ({field: value}); choices are stored as JSON text (see Param)."""
    import optuna

    return {name: json.loads(value) if isinstance(trial.distributions[name],
                                                  optuna.distributions.CategoricalDistribution) else value
            for name, value in trial.params.items()}


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _get(config, field):
    """The value of a dotted field of a config (None where it is not set)."""
    value = config
    for key in field.split("."):
        value = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
    return value


def _states(names):
    import optuna

    return tuple(optuna.trial.TrialState[name] for name in names)


def tune(recipe, tune, out, *, workers=1, storage=None, recipe_path=None, worker_args=(), quiet=False,
         worker=0):
    """Run (or resume) the study of `recipe` and write its results into `out`; returns the study.
    workers > 1 starts workers - 1 more `kdl tune --worker K` processes on the same storage
    (`recipe_path` and `worker_args` say how to start them); `worker`: this process's K."""
    out = pathlib.Path(out)
    space, _, pruner = settle(recipe, tune)
    values = configs.to_dict(recipe.config)
    values.pop(tracking.SECTION, None)      # where trials are logged and what their model cards say
    values.pop("card", None)                # are not what the study searches
    study = open_study(out, storage, tune, tomli_w.dumps(values), None, pruner)
    study.sampler = sampler(tune, offset=1009 * worker + len(study.trials))
    track, parent = recipe.config.track, None
    if track.mlflow:        # the study's MLflow run, made before other workers start: trials nest under it
        from kdl.tracking import mlflow

        parent = mlflow.start_study(track, study, out, values)
    children = []
    for k in range(1, workers):
        log = open(out / f"worker-{k}.log", "w")
        command = [sys.executable, "-m", "kdl", "tune", str(recipe_path), "--out", str(out),
                   "--worker", str(k), *(["--storage", storage] if storage else []), *worker_args]
        children.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    start = time.perf_counter()
    progress = None if quiet else _Progress(tune, start)
    try:
        with mlflow.nested_in(parent) if parent else contextlib.nullcontext():
            work(recipe, tune, space, study, out, progress)
    finally:
        for child, log in children:
            child.wait()
            log.close()
    write_results(study, tune, out)
    if parent and not worker:
        mlflow.finish_study(track, parent, study, tune, out)
    failed = [k for k, (child, _) in enumerate(children, 1) if child.returncode]
    if failed:
        print(f"kdl tune: warning: worker process{'es' * (len(failed) > 1)} {', '.join(map(str, failed))} "
              f"stopped with an error (see {out}/worker-K.log); the others finished the study",
              file=sys.stderr)
    return study


class _Progress:
    """One line per finished trial: its value, the best so far, what is running."""

    def __init__(self, tune, start):
        self.tune, self.start = tune, start

    def __call__(self, study, trial):
        found = counts(study)
        done = sum(found.get(state, 0) for state in FINISHED)
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        print(f"kdl tune: trial {trial.number} {trial.state.name.lower()} {self.tune.metric} {value}; "
              f"{done}/{self.tune.trials} done, {found.get('RUNNING', 0)} running, {best}; "
              f"{time.perf_counter() - self.start:.0f} s", file=sys.stderr, flush=True)


def write_results(study, tune, out):
    """trials.csv, best.toml (+ best_run/), optimization_history.png, param_importances.png."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("error", "").startswith("not needed"):
            continue
        rows.append({"number": trial.number, "state": trial.state.name, tune.metric: trial.value,
                     "seconds": trial.user_attrs.get("seconds"), "run": trial.user_attrs.get("run"),
                     "worker": trial.user_attrs.get("worker"),
                     **{f"params.{k}": _cell(v) for k, v in params(trial).items()},
                     "error": trial.user_attrs.get("error", "")})
    _write_csv(out / "trials.csv", rows)
    complete = study.get_trials(deepcopy=False, states=_states(("COMPLETE",)))
    if not complete:
        return
    best = study.best_trial
    run = pathlib.Path(best.user_attrs["run"])
    header = (f"The best of {len(complete)} complete trials of `kdl tune` (trial {best.number}, "
              f"{tune.metric} {best.value:.4f}); train it with `kdl train best.toml`.")
    text = "".join(f"# {line}\n" for line in header.splitlines())
    text += "".join(line + "\n" for line in (run / "recipe.toml").read_text().splitlines()
                    if not line.startswith("#"))
    write_file(out / "best.toml", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    kept = out / "best_run"
    if kept.exists():
        shutil.rmtree(kept)
    shutil.copytree(run, kept)
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    for name, plot in (("optimization_history", plots.plot_optimization_history),
                       ("param_importances", plots.plot_param_importances)):
        try:
            axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):   # too few trials for importances
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.savefig(out / f"{name}.png", dpi=90, bbox_inches="tight")
        plt.close(figure)


def summary(study, tune, out):
    """The one-screen summary printed at the end."""
    found = counts(study)
    done = sum(found.get(state, 0) for state in FINISHED)
    lines = [f"kdl tune: {done} trials finished ({found.get('COMPLETE', 0)} complete, "
             f"{found.get('PRUNED', 0)} pruned early, {found.get('FAIL', 0)} failed)"]
    try:
        best = study.best_trial
    except ValueError:
        return "\n".join(lines + ["no trial completed"])
    lines.append(f"best: trial {best.number}, {tune.metric} {best.value:.4f}")
    lines += [f"  {name} = {json.dumps(value)}" for name, value in params(best).items()]
    written = [name for name in ("trials.csv", "best.toml", "best_run", "optimization_history.png",
                                 "param_importances.png") if (pathlib.Path(out) / name).exists()]
    lines.append(f"results in {out}: {', '.join(written)}; train the best with `kdl train {out}/best.toml`")
    return "\n".join(lines)


def retrain_best(out, data_root=None):
    """Train OUT/best.toml on train + validation (validation_split 0) and score the test split once."""
    from kdl import recipes

    best = pathlib.Path(out) / "best.toml"
    if not best.is_file():
        raise ConfigError(f"{best} does not exist: the study has no complete trial to retrain")
    recipe = recipes.load(best, data_root=data_root)
    if hasattr(recipe.config.data, "validation_split"):
        recipe.config.data.validation_split = 0.0
    folder = pathlib.Path(out) / "retrained"
    recipe.fit(out=folder, verbose=0, restart=True)
    report = recipe.evaluate("test")
    recipe.save(folder)
    return report


def _write_csv(path, rows):
    import csv

    columns = list(dict.fromkeys(key for row in rows for key in row))

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(rows)

    write_file(path, write)
