"""Where a run's progress is logged, as a recipe's `[track]` section says (kdl.config.TrackConfig):
TensorBoard event files in every run (`RUN/tensorboard/`, kdl.tracking.tensorboard) and, when
asked, MLflow (kdl.tracking.mlflow: `pip install 'kdl[track]'`). See docs/tracking.md.

A recipe's fit calls `check(track)` before it writes anything and adds `callbacks(recipe, run_dir)`;
its save calls `log_saved_run(recipe, run_dir)`. Both log the same flattened recipe (`params`),
without the `[track]` section itself:

>>> params({"train": {"epochs": 3, "schedule": "cosine"}, "model": {"options": {"filters": [8, 16]}},
...         "track": {"mlflow": True}})
{'train.epochs': 3, 'train.schedule': 'cosine', 'model.options.filters': '[8, 16]'}
"""

import json

SECTION = "track"       # the recipe section that says where to log; not a hyperparameter


def params(values, _prefix=""):
    """A recipe as plain dicts (kdl.config.to_dict, or a parsed recipe.toml) flattened to
    {dotted field: bool, int, float or str}: lists and tables become JSON text; the `[track]`
    section is left out."""
    flat = {}
    for key, value in values.items():
        name = f"{_prefix}{key}"
        if name == SECTION:
            continue
        if isinstance(value, dict) and value:
            flat.update(params(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, ensure_ascii=False, default=str)
    return flat


def check(track):
    """Fail with one clear error if the TrackConfig `track` asks for MLflow and it cannot be used
    (not installed, an unknown scheme, a server that does not answer): `fit` calls it before it
    writes anything, so a run is never started that could not be logged."""
    if track.mlflow:
        from kdl.tracking import mlflow

        mlflow.check(track)


def callbacks(recipe, run_dir, fresh):
    """The tracking callbacks of one fit of `recipe` into `run_dir` (None: no run directory):
    Keras' TensorBoard callback writing RUN/tensorboard/ (started afresh when `fresh`, a new
    training rather than a resumed or continued one)."""
    track = recipe.config.track
    if run_dir is None or not track.tensorboard:
        return []
    from kdl.tracking import tensorboard

    return [tensorboard.TensorBoard(tensorboard.folder(run_dir), track.every_steps, fresh=fresh)]


def log_saved_run(recipe, run_dir):
    """What tracking logs once a run is saved: the recipe's hyperparameters, its report's metrics
    and pictures in RUN/tensorboard/, then the whole run to MLflow."""
    track = recipe.config.track
    if track.tensorboard:
        from kdl.tracking import tensorboard

        tensorboard.log_results(tensorboard.folder(run_dir), recipe)
    if track.mlflow:
        from kdl.tracking import mlflow

        mlflow.log_run(run_dir, track)
