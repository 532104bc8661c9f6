"""Which examples a trained classifier gets wrong: its top losses, most-confused classes and
misclassified examples per class (kdl.evaluation.interpretation), with the examples themselves
(images, texts, clips) written beside them.

It scores what `recipe.evaluate` scores: a split of the run's data, or another labelled source
(`data=` and its loading options), all of its splits in order, one set of examples.

>>> import kdl
>>> clf = kdl.recipes.load("runs/digits")                  # doctest: +SKIP
>>> found = interpret(clf, n=9, out="runs/digits/interpretation-test")   # doctest: +SKIP
>>> found.top_losses[0]                                    # doctest: +SKIP
{'index': 37, 'example': 'test[37]', 'true': '8', 'predicted': '1', 'probability': 0.93, ...}
"""

import pathlib

import numpy as np

from kdl import backend
from kdl.errors import ConfigError, DataError
from kdl.evaluation.interpretation import (
    check_count,
    interpretation,
    write_image_grid,
    write_json,
    write_tables,
)
from kdl.recipes.classifier import Classifier

TASKS = ("image_classifier", "text_classifier", "audio_classifier")   # every Classifier task
IMAGE_GRID, JSON_FILE = "top_losses.png", "interpretation.json"


def interpret(recipe, split=None, *, data=None, n=9, k=5, out=None, **data_options):
    """An InterpretationReport of a trained classifier `recipe` on what `recipe.evaluate(split,
    data=data, **data_options)` would score: the `n` examples with the highest loss, the
    most-confused class pairs, and up to `k` misclassified examples of each class. Each top-loss
    row names its example ("test[12]": the split and its position there); a text run's rows also
    hold the text. `meta` holds the task, split, source and backend.

    `out`: a folder to write `interpretation.json`, `interpretation.md`, `top_losses.csv` and,
    for images, `top_losses.png` into (listed in `meta["files"]`).
    """
    check_supported(recipe)
    check_count(n, "n (how many top losses)")
    check_count(k, "k (misclassified examples per class)")
    recipe._require_model("interpret")
    if data is None and data_options:
        raise ConfigError(f"interpret() takes data options ({', '.join(data_options)}) only with data=")
    view = recipe if data is None else recipe._on(data, data_options)
    names = _scored_splits(view, split, data)
    parts = [view.predict_split(name) for name in names]
    probabilities = np.concatenate([result.probabilities for result, _ in parts])
    labels = np.concatenate([np.asarray(references) for _, references in parts])
    counts = [len(references) for _, references in parts]
    example_names = [f"{name}[{i}]" for name, count in zip(names, counts) for i in range(count)]
    report = interpretation(labels, probabilities, n, class_names=view.class_names, k=k,
                            example_names=example_names)
    report.meta.update(task=recipe.task, split="all" if data is not None and not split else names[0],
                       source=view.data.info.source, backend=backend.name(), splits=dict(zip(names, counts)))
    images = None
    if recipe.modality in ("image", "text"):      # audio rows name their clips only
        examples = _examples(view, names, counts, [row["index"] for row in report.top_losses])
        if recipe.modality == "text":
            report = report.with_columns({"text": examples})
        else:
            images = examples
    if out is not None:
        write(report, out, images=images)
    return report


def write(report, out, images=None):
    """Write `report` into the folder `out`: interpretation.md, top_losses.csv, interpretation.json
    and, given the top-loss examples' `images`, top_losses.png. Returns the paths."""
    out = pathlib.Path(out)
    files = [] if images is None else [write_image_grid(out / IMAGE_GRID, report.top_losses, images)]
    files += write_tables(out, report)
    report.meta["files"] = [path.name for path in files] + [JSON_FILE]
    return files + [write_json(out / JSON_FILE, report)]


def check_supported(recipe):
    """Raise ConfigError unless `recipe` is a classifier (the tasks in TASKS)."""
    if not isinstance(recipe, Classifier):
        task = getattr(recipe, "task", type(recipe).__name__)
        raise ConfigError(f"interpretation (top losses, most-confused classes) needs a classifier run, one "
                          f"of {', '.join(TASKS)}; this is a {task!r} run")


def _scored_splits(view, split, data):
    """The split names scored, as `Recipe.evaluate` picks them (a DataError for an unknown one)."""
    names = [split or "test"] if data is None or split else list(view.data.splits)
    for name in names:
        if name not in view.data.splits:
            raise DataError(f"no split {name!r} in {view.data.info.source!r}; "
                            f"it has: {', '.join(view.data.splits)}")
    return names


def _examples(view, names, counts, indices):
    """The raw examples at `indices` of the splits `names` (of `counts` examples each) taken as
    one set in order: pixel arrays, texts (str) or waveforms, read from `view.data.splits`."""
    found, offset = {}, 0
    for name, count in zip(names, counts):
        wanted = {i - offset for i in indices if offset <= i < offset + count}
        if wanted:
            pairs = view.data.splits[name].take(max(wanted) + 1).as_numpy_iterator()
            for position, (example, _) in enumerate(pairs):
                if position in wanted:
                    found[offset + position] = (example.decode("utf-8", errors="replace")
                                                if isinstance(example, bytes) else example)
        offset += count
    return [found[i] for i in indices]
