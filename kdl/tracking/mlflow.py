"""MLflow tracking of saved runs (`pip install 'kdl[track]'`; MLflow is imported only here, when
a recipe's `track.mlflow` is on).

A run directory is logged as one MLflow run, from its own files: the recipe (recipe.toml,
flattened) as params, history.csv as per-epoch metrics, report.json's metrics as `SPLIT/METRIC`,
the model card (README.md) as the run's description, and the whole directory as artifacts
(`run/`). The tracking URI is `track.tracking_uri`, else $MLFLOW_TRACKING_URI, else a local SQLite
store, `sqlite:///runs/mlflow.db` (relative to the working directory), whose artifacts go beside
it (`runs/mlartifacts/`). A `kdl tune` study is one parent run; its trials are nested runs.

>>> from kdl.config import TrackConfig
>>> tracking_uri(TrackConfig(tracking_uri="http://mlflow.example.com:5000"))
'http://mlflow.example.com:5000'
>>> log_run("runs/digits", TrackConfig(mlflow=True))          # doctest: +SKIP
"""

import contextlib
import contextvars
import csv
import os
import pathlib
import time
import urllib.parse

from kdl import backend
from kdl import config as configs
from kdl.errors import ConfigError, KdlError, RunError
from kdl.tracking import params

DEFAULT_URI = "sqlite:///runs/mlflow.db"
ARTIFACTS = "mlartifacts"           # a SQLite store's artifacts: this folder beside the database
INSTALL = "pip install 'kdl[track]'"
_parent = contextvars.ContextVar("kdl_mlflow_parent", default=None)   # the run trials nest under


def tracking_uri(track):
    """The tracking URI a [track] section names: its own, else $MLFLOW_TRACKING_URI, else the
    local SQLite store."""
    return track.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def experiment_name(track, task):
    """The experiment runs are logged to: track.experiment, else the task's name."""
    return track.experiment or task


def check(track):
    """Fail now, with one clear error, if MLflow is not installed or cannot use the tracking URI
    (an unknown scheme, a server that does not answer): before training, not after it."""
    client, uri = _client(track)
    with _quick():
        _call(uri, "reach", lambda: client.search_experiments(max_results=1), ConfigError)


def log_run(run_dir, track=None, parent=None):
    """Log the saved run directory `run_dir` to MLflow as one run (nested under the run
    `parent`, by default the study's when a `kdl tune` trial saves); returns its run id.
    `track`: a TrackConfig, by default the run's own [track] section. A failure is a RunError
    saying that the run itself is saved."""
    from kdl.recipes.recipe import CONFIG_FILE, _read_toml

    run_dir = pathlib.Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{str(run_dir)!r} holds no {CONFIG_FILE}: MLflow logs a saved run directory")
    values = _read_toml(run_dir / CONFIG_FILE)
    if track is None:
        track = configs.from_dict(configs.TrackConfig, values.get("track", {}),
                                  f"{run_dir / CONFIG_FILE} [track]")
    report = _report(run_dir)
    client, uri = _client(track)
    run_backend = (report or {}).get("meta", {}).get("backend") or backend.name()
    tags = {"kdl.task": values.get("task", ""), "kdl.run_dir": str(run_dir.resolve()),
            "kdl.backend": run_backend}
    card = run_dir / "README.md"
    if card.is_file():      # the model card is the run's description in the MLflow UI
        tags["mlflow.note.content"] = _clip(card.read_text(encoding="utf-8", errors="replace"), 8000)
    if parent or _parent.get():
        tags["mlflow.parentRunId"] = parent or _parent.get()

    def log():
        experiment = _experiment(client, experiment_name(track, values.get("task", "kdl")), uri)
        run_id = client.create_run(experiment, run_name=run_dir.name, tags=tags).info.run_id
        try:
            _log(client, run_id, {**params(values), "backend": run_backend}, _metrics(run_dir, report))
            for path in _files(run_dir):
                where = path.parent.relative_to(run_dir).as_posix()
                client.log_artifact(run_id, str(path), "run" if where == "." else f"run/{where}")
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id)
        return run_id

    return _call(uri, f"log the run {str(run_dir)!r} to", log, RunError,
                 f"; the run itself is saved in {run_dir}. Log it again with "
                 f"kdl.tracking.mlflow.log_run({str(run_dir)!r})")


@contextlib.contextmanager
def nested_in(run_id):
    """Runs logged while the block runs are nested under the MLflow run `run_id`."""
    token = _parent.set(run_id)
    try:
        yield run_id
    finally:
        _parent.reset(token)


def start_study(track, study, out, values):
    """The parent run of a `kdl tune` study in folder `out` (`values`: its recipe, a to_dict),
    marked running: made once, with the recipe as params, and its id kept in the study's storage
    so that a resumed study and every worker's trials nest under the same run."""
    client, uri = _client(track)
    key, out = f"mlflow_run {uri}", pathlib.Path(out)

    def start():
        run_id = study.user_attrs.get(key)
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            return run_id
        experiment = _experiment(client, experiment_name(track, values.get("task", "kdl")), uri)
        run_id = client.create_run(experiment, run_name=f"tune {out.name}", tags={
            "kdl.task": values.get("task", ""), "kdl.study": str(out.resolve())}).info.run_id
        _log(client, run_id, params(values))
        study.set_user_attr(key, run_id)
        return run_id

    return _call(uri, "start the study's run on", start, RunError)


def finish_study(track, run_id, study, tune, out):
    """Log a study's results to its parent run: the search settings as params, the best value
    and the trials of each state as metrics, trials.csv, best.toml and the plots as artifacts."""
    client, uri = _client(track)
    trials = study.get_trials(deepcopy=False)
    metrics = {}
    for trial in trials:
        name = f"trials_{trial.state.name.lower()}"
        metrics[name] = metrics.get(name, 0) + 1
    if any(trial.state.name == "COMPLETE" for trial in trials):
        metrics[f"best/{tune.metric}"] = study.best_value
    settings = {name: getattr(tune, name)
                for name in ("metric", "direction", "sampler", "pruner", "seed", "space")}

    def finish():
        _log(client, run_id, params({"tune": settings}), [(key, value, 0) for key, value in metrics.items()])
        for name in ("trials.csv", "best.toml", "optimization_history.png", "param_importances.png"):
            if (pathlib.Path(out) / name).is_file():
                client.log_artifact(run_id, str(pathlib.Path(out) / name))
        client.set_terminated(run_id)

    _call(uri, "log the study's results to", finish, RunError)


def _log(client, run_id, hyper, metrics=()):
    """Log params {name: value} (clipped to what MLflow keeps; the whole recipe is an artifact)
    and metrics [(key, value, step)] in batches."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, step) for key, value, step in metrics],
                     params=[Param(key, _clip(str(value), 6000)) for key, value in hyper.items()])


def _client(track):
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"track.mlflow (--track mlflow) needs MLflow, which is not installed: "
                          f"{INSTALL}") from None
    uri = tracking_uri(track)
    database = _sqlite_path(uri)
    if database is not None and database.parent != pathlib.Path(""):
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"track.tracking_uri {uri!r}: cannot make the folder of its database: "
                              f"{error.strerror or error}") from None
    return _call(uri, "use", lambda: mlflow.MlflowClient(tracking_uri=uri), ConfigError), uri


def _call(uri, action, function, error_class, after=""):
    """`function()`, any error of MLflow (or of its store: a database, a server) turned into one
    `error_class` line naming the URI."""
    try:
        return function()
    except KdlError:
        raise
    except Exception as error:      # noqa: BLE001  (MLflow, SQLAlchemy, requests: any is the store's)
        reason = " ".join(str(error).split())[:400] or type(error).__name__
        raise error_class(f"cannot {action} the MLflow tracking URI {uri!r} (track.tracking_uri, "
                          f"--tracking-uri): {type(error).__name__}: {reason}. Expected a local store "
                          f"such as {DEFAULT_URI} or the http(s):// address of an MLflow server"
                          f"{after}") from None


@contextlib.contextmanager
def _quick():
    """One try with a short timeout for the check of a server (MLflow retries for minutes),
    unless the environment sets its own."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    added = [name for name in quick if name not in os.environ]
    os.environ.update({name: quick[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _experiment(client, name, uri):
    """The id of experiment `name`, made if missing (a SQLite store's with its artifacts beside
    the database); a deleted one is an error saying how to bring it back."""
    found = client.get_experiment_by_name(name)
    if found is None:
        database = _sqlite_path(uri)
        location = None if database is None else (database.parent / ARTIFACTS).resolve().as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except Exception:       # noqa: BLE001  (made meanwhile by another process of the study)
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise ConfigError(f"the MLflow experiment {name!r} at {uri!r} is deleted; restore it (mlflow "
                          "experiments restore) or choose another with --set track.experiment=NAME")
    return found.experiment_id


def _sqlite_path(uri):
    """The database file of a `sqlite:///PATH` URI (relative to the working directory, or
    absolute with four slashes), else None."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "sqlite" or not parsed.path or parsed.path == "/:memory:":
        return None
    return pathlib.Path(urllib.parse.unquote(parsed.path[1:]))


def _metrics(run_dir, report):
    """(key, value, step): each epoch's history.csv values at step = the epoch (as in TensorBoard),
    then the report's metrics."""
    history = run_dir / "history.csv"
    if history.is_file():
        with open(history, newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                epoch = int(float(row.pop("epoch", 0) or 0))
                for key, text in row.items():
                    value = _number(text)
                    if key and value is not None:
                        yield key, value, epoch
    if report:
        split = report.get("meta", {}).get("split", "test")
        for key, value in report.get("metrics", {}).items():
            value = _number(value)
            if value is not None:
                yield f"{split}/{key}", value, 0


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):       # an empty cell: a metric that epoch did not have
        return None


def _report(run_dir):
    import json

    path = run_dir / "report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _files(run_dir):
    """The run directory's files: all but hidden ones (its lock, partial writes) and the backup
    of an interrupted training."""
    for path in sorted(run_dir.rglob("*")):
        parts = path.relative_to(run_dir).parts
        if path.is_file() and not any(part.startswith(".") for part in parts) and parts[0] != "backup":
            yield path


def _clip(text, limit):
    return text if len(text) <= limit else text[:limit - 3] + "..."
