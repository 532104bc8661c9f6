"""The model card of a run: `RUN/README.md`, written from the run's own data each time the run
is saved (inside `Recipe._save`'s atomic write), and copied beside an export.

It says what the model is (task, model, parameters), what it learned from and was scored on
(data source, split sizes, class names, the report's metrics with its scorer, the last epoch of
history.csv, drawn in `training_curves.png`), the backend and library versions, the `kdl train`
command that reproduces it from the run's recipe.toml, what it takes and where it falls short
(each task's `Recipe.card_notes`), and its license (`[card] license` in the recipe).

>>> recipe = kdl.recipes.image_classifier(epochs=2)        # doctest: +SKIP
>>> recipe.fit(out="runs/digits"); recipe.evaluate()       # doctest: +SKIP
>>> recipe.save("runs/digits")                             # doctest: +SKIP
>>> print(open("runs/digits/README.md").read())            # doctest: +SKIP

A folder's own README.md is never replaced: the card then takes another name.

>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> card_file(folder)
'README.md'
>>> _ = (folder / "README.md").write_text("# my project")
>>> card_file(folder)
'MODEL_CARD.md'
"""

import csv
import math
import pathlib
import shlex
import shutil

import numpy as np

from kdl import backend

CARD_FILE, CURVES_FILE = "README.md", "training_curves.png"
OWN_README_CARD_FILE = "MODEL_CARD.md"     # the card's name in a folder whose README.md is a user's
MARKER = "<!-- kdl model card: written by kdl each time this run is saved; edits here are replaced -->"
LICENSE_EXAMPLE = "Apache-2.0"
MOST_CLASSES = 50      # class names listed in the card; recipe.toml holds them all
MISSING = (None, "", "NA")     # a history.csv cell without a value (Keras' CSVLogger writes NA)


def card_file(folder):
    """The card's file name in run directory `folder`: README.md, unless the folder holds a
    README.md that kdl did not write (a user's folder trained into with --overwrite, whose own
    files are kept), then MODEL_CARD.md."""
    readme = pathlib.Path(folder) / CARD_FILE
    return CARD_FILE if not readme.exists() or _is_card(readme) else OWN_README_CARD_FILE


def _is_card(path):
    """Whether the file `path` is a card kdl wrote (its first line is MARKER)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.readline().strip() == MARKER
    except OSError:
        return False


def write(recipe, folder, run_dir, name=CARD_FILE):
    """Write the card `name` for `recipe` into `folder`, with training_curves.png when there is a
    training history: history.csv of `run_dir` (the run directory it describes; None for none),
    else the recipe's own `fit` history. Returns the card's path."""
    folder = pathlib.Path(folder)
    history, problem = _history(recipe, run_dir)
    curves = _plot_curves(history, folder / CURVES_FILE) if history else None
    text = "\n".join([MARKER, *_render(recipe, folder, run_dir, history, problem, curves)]) + "\n"
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def copy(recipe, folder):
    """Put the card of `recipe`'s run directory, and its curves, into `folder` (an export); a
    recipe not saved with a card gets a new one. Returns the card's file name."""
    folder, run_dir = pathlib.Path(folder), recipe.run_dir
    saved = pathlib.Path(run_dir) / card_file(run_dir) if run_dir is not None else None
    if saved is None or not _is_card(saved):
        return write(recipe, folder, run_dir).name
    shutil.copyfile(saved, folder / CARD_FILE)
    if (saved.parent / CURVES_FILE).is_file():
        shutil.copyfile(saved.parent / CURVES_FILE, folder / CURVES_FILE)
    return CARD_FILE


# -- what the card says -----------------------------------------------------------------------------
def _render(recipe, folder, run_dir, history, problem, curves):
    model = recipe.config.model
    lines = [f"# {recipe.task}: {model.backbone or model.name} on {_source(recipe.config.data)}", ""]
    lines += [_summary(recipe), ""]
    lines += ["## Model", "", *_model(recipe), ""]
    lines += ["## Data", "", *_data(recipe), ""]
    lines += ["## Evaluation", "", *_evaluation(recipe, folder, run_dir), ""]
    lines += ["## Training", "", *_training(recipe, history, problem, curves), ""]
    lines += ["## Intended use and limitations", "", *[f"- {note}" for note in recipe.card_notes()], ""]
    lines += ["## Reproduce", "", *_reproduce(recipe, run_dir, history), ""]
    lines += ["## Environment", "", _environment(), ""]
    lines += ["## License", "", _license(recipe)]
    return lines


def _summary(recipe):
    params = f"{recipe.model.count_params():,}"
    what = f"A Keras 3 {recipe.task.replace('_', ' ')} trained with kdl ({params} parameters)"
    report = recipe.report
    if report is None or not report.metrics:
        return f"{what}; **not evaluated yet** (see Evaluation)."
    name, value = next(iter(report.metrics.items()))
    return f"{what}: {name} **{_cell(value)}** on the {report.meta.get('split', '?')} split."


def _model(recipe):
    model = recipe.config.model
    options = ", ".join(f"{key}={value!r}" for key, value in model.options.items())
    lines = [f"- Task: `{recipe.task}`",
             f"- Model: `{model.name}` ({recipe.model_kind} in kdl.models)"
             + (f" with options {options}" if options else " with its default options")]
    if model.backbone:
        lines.append(f"- Starts from: `{model.backbone}` (model.backbone)")
    trainable = sum(int(np.prod(weight.shape)) for weight in recipe.model.trainable_weights)
    lines.append(f"- Parameters: {recipe.model.count_params():,} ({trainable:,} trainable)")
    lines.append("- Files: model.keras (the model), recipe.toml (the resolved config it was trained with)")
    return lines


def _source(data):
    return "in-memory arrays" if data.source == "arrays" else data.source


def _data(recipe):
    data = recipe.config.data
    source = "in-memory arrays (data.source = \"arrays\")" if data.source == "arrays" else f"`{data.source}`"
    lines = [f"- Source: {source}" + (f", found under `{data.root}`" if data.root else "")]
    settings = [f"{name} = {getattr(data, name)!r}" for name in ("limit", "per_class", "classes")
                if getattr(data, name, None)]
    if settings:
        lines.append(f"- Selected with: {', '.join(settings)} (recipe.toml `[data]`)")
    loaded = recipe.__dict__.get("data")       # never loaded here for the card: it may be large or gone
    if loaded is not None:
        sizes = ", ".join(f"{split} {count:,}" for split, count in loaded.info.num_examples.items())
        lines.append(f"- Examples per split: {sizes}")
    else:
        lines.append("- Examples per split: not recorded: the data was not loaded when this run was saved "
                     "(it was loaded from a run directory and saved again without training or evaluating)")
    names = getattr(data, "classes", None) or getattr(data, "class_names", None)
    if names:
        shown = ", ".join(f"`{name}`" for name in names[:MOST_CLASSES])
        more = f", ... ({len(names) - MOST_CLASSES} more in recipe.toml)" if len(names) > MOST_CLASSES else ""
        lines.append(f"- Classes ({len(names)}, in output order): {shown}{more}")
    return lines


def _evaluation(recipe, folder, run_dir):
    report = recipe.report
    if report is None:
        where = run_dir or "RUN"
        return ["**Not evaluated**: this run was saved without a report (report.json), so it has no "
                "scores yet. Score it and save it again to record them here:", "",
                "```python", "import kdl", "",
                f"recipe = kdl.recipes.load({str(where)!r})", "recipe.evaluate()          # its test split",
                f"recipe.save({str(where)!r})", "```"]
    meta = report.meta
    count = f", {meta['num_examples']:,} examples" if isinstance(meta.get("num_examples"), int) else ""
    lines = [f"Scored by `kdl.evaluation.{report.task}` on the **{meta.get('split', '?')}** split of "
             f"`{meta.get('source', recipe.config.data.source)}`{count}, on the {meta.get('backend', '?')} "
             "backend (report.json):", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in report.metrics.items()]
    extras = sorted(p.name for p in pathlib.Path(folder).glob("*.png") if p.name != CURVES_FILE)
    if extras:
        links = ", ".join(f"[{name}]({name})" for name in extras)
        lines += ["", f"Its tables are in report.json; plots: {links}."]
    return lines


def _training(recipe, history, problem, curves):
    train, data = recipe.config.train, recipe.config.data
    lines = [f"Optimizer {train.optimizer}, learning rate {train.learning_rate:g} ({train.schedule} "
             f"schedule), batch size {data.batch_size}, seed {recipe.config.seed}, precision "
             f"{train.precision}."]
    seconds = (recipe.report.meta.get("fit_seconds") if recipe.report is not None else None)
    if seconds is not None:
        lines[0] += f" Training took {seconds:.1f} s."
    if problem:
        return [*lines, "", problem]
    if not history:
        return [*lines, "", "No training history: the folder it was saved to has no history.csv (what "
                "`fit(out=...)` and `kdl train` write), and this recipe object did not train the model."]
    last = history[-1]
    names = [name for name in last if not name.startswith("val_") and name not in ("epoch", "learning_rate")]
    lines += ["", f"{len(history)} epoch{'s' * (len(history) != 1)} (history.csv); the last one:", "",
              "| metric | train | validation |", "| --- | --- | --- |"]
    lines += [f"| {name} | {_cell(last[name])} | {_cell(last.get('val_' + name, ''))} |" for name in names]
    if curves is not None:
        metric = _main_metric(history)
        lines += ["", f"![Training curves: loss{f' and {metric}' if metric else ''}, train and validation, "
                  f"per epoch]({CURVES_FILE})"]
    return lines


def _reproduce(recipe, run_dir, history):
    config = recipe.config
    if run_dir is None:
        return ["This model was not saved as a run directory, so there is no recipe.toml to retrain it "
                "from; `recipe.save(RUN)` writes one."]
    if config.data.source == "arrays":
        return ["This run was trained on in-memory arrays (data.source = \"arrays\"), which the run does not "
                "hold, so no command retrains it; the same Python call with the same arrays, and the config "
                f"in `{pathlib.Path(run_dir) / 'recipe.toml'}`, does."]
    command = ["kdl", "train", str(pathlib.Path(run_dir) / "recipe.toml"), "--backend", backend.name()]
    if config.data.root:
        command += ["--data-root", config.data.root]
    epochs = len(history or ())
    if epochs and epochs != config.train.epochs:    # fit(epochs=N), or training continued in the run
        command += ["--epochs", str(epochs)]
    command += ["--out", f"{run_dir}-reproduced"]
    lines = ["Retrain this run from scratch, from the resolved config saved with it, into a new folder:", "",
             "```sh", shlex.join(command), "```"]
    if epochs and epochs != config.train.epochs:
        lines += ["", f"(history.csv holds {epochs} epochs where recipe.toml says train.epochs = "
                  f"{config.train.epochs}: it was trained with `fit(epochs=...)` or continued.)"]
    return lines


def _environment():
    versions = backend.versions()
    libraries = {"jax": ("jax", "jaxlib"), "tensorflow": ("tensorflow",), "torch": ("torch",)}
    used = ", ".join(f"{name} {versions.get(name) or '(not installed)'}"
                     for name in libraries.get(backend.name(), ()))
    return (f"Saved on the **{backend.name()}** backend ({used}) with Keras {versions.get('keras')} and kdl "
            f"{versions.get('kdl')}, Python {versions.get('python')}. A saved run loads on jax, tensorflow "
            "and torch alike.")


def _license(recipe):
    card = getattr(recipe.config, "card", None)
    license = " ".join(str(getattr(card, "license", "") or "").split())
    if license:
        return f"{license} (set by the recipe's `[card] license`)."
    example = LICENSE_EXAMPLE
    return (f"No license was set for this model. Set one in the recipe's `[card]` section (`license = "
            f"\"{example}\"`, an SPDX identifier), with `--set card.license={example}`, or "
            f"`kdl.recipes.{recipe.task}(..., license=\"{example}\")`, and save the run again.")


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


# -- the training history and its plot -------------------------------------------------------------
def _history(recipe, run_dir):
    """(rows of {column: float} per epoch, None) from history.csv of `run_dir`, else from the
    recipe's Keras History; ([], a sentence) when history.csv cannot be read."""
    from kdl.recipes.recipe import HISTORY_FILE

    path = pathlib.Path(run_dir) / HISTORY_FILE if run_dir is not None else None
    if path is not None and path.is_file():
        try:
            with path.open(newline="", encoding="utf-8") as file:
                rows = [{name: float(value) for name, value in row.items() if name and value not in MISSING}
                        for row in csv.DictReader(file)]
        except (OSError, UnicodeDecodeError, csv.Error, ValueError) as error:
            return [], f"{path} could not be read ({error}), so the card has no training history."
        return [row for row in rows if "loss" in row], None
    keras_history = getattr(recipe.history, "history", None) or {}
    epochs = len(keras_history.get("loss", ()))
    return [{name: float(values[i]) for name, values in keras_history.items() if i < len(values)}
            for i in range(epochs)], None


def _main_metric(history):
    """The first progress metric of the history besides the loss (e.g. accuracy), or None."""
    return next((name for name in history[-1] if not name.startswith("val_")
                 and name not in ("epoch", "loss", "learning_rate")), None)


def _plot_curves(history, path):
    """training_curves.png: the loss and the main metric per epoch, train and validation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = ["loss", *([_main_metric(history)] if _main_metric(history) else [])]
    figure = Figure(figsize=(4.2 * len(panels), 3.2))
    FigureCanvasAgg(figure)
    epochs = np.arange(1, len(history) + 1)
    for index, name in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for column, label, style in ((name, "train", "-"), (f"val_{name}", "validation", "--")):
            values = [row.get(column, np.nan) for row in history]
            if not np.isnan(values).all():
                axes.plot(epochs, values, style, marker="o" if len(history) <= 30 else None, label=label)
        axes.set_xlabel("epoch")
        axes.set_title(name)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
        if len(history) <= 10:
            axes.set_xticks(epochs)
    figure.tight_layout()
    figure.savefig(path, dpi=100, format="png")
    return path
