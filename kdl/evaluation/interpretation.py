"""Which examples a classifier gets wrong, from numpy arrays: true labels (N,) and class
probabilities (N, C). It finds the examples with the highest loss, the class pairs confused most
often and, for each class, a few of its misclassified examples; it also writes them as files (a
grid of images, Markdown and CSV tables, JSON).

The loss of an example is its cross-entropy, -log p(true class). Rows are ordered by loss, the
highest first. Examples with the same loss keep their input order.

>>> import numpy as np
>>> y_prob = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.5, 0.1, 0.4]])
>>> found = interpretation([0, 1, 2, 2], y_prob, n=2, class_names=["cat", "dog", "bird"])
>>> [(row["index"], row["true"], row["predicted"], round(row["loss"], 3)) for row in found.top_losses]
[(2, 'bird', 'cat', 1.609), (3, 'bird', 'cat', 0.916)]
>>> found.most_confused
[{'true': 'bird', 'predicted': 'cat', 'count': 2}]
>>> found["errors"]
2
"""

import csv
import dataclasses
import math
import pathlib

import numpy as np

from kdl.errors import ConfigError, DataError
from kdl.evaluation.classification import _validated, _validated_class_names
from kdl.evaluation.report import Report, _text_table
from kdl.runs import write_file

SMALLEST_PROBABILITY = np.finfo(np.float64).eps   # as sklearn's log_loss: a probability of 0 costs ~36
CELL_PIXELS = (200, 220)    # (width, height) of one image and its title in the grid PNG
DPI = 100
GRID_COLUMNS = 6            # the grid's width in images, at most


@dataclasses.dataclass(eq=False)
class InterpretationReport(Report, task="interpretation"):
    """A `Report` of a classifier's mistakes. Tables: `top_losses` (the highest-loss examples),
    `most_confused` (class pairs) and `class_errors` (misclassified examples of each class);
    metrics: `errors`, `error_rate`, `mean_loss`."""

    task: str = "interpretation"

    @property
    def top_losses(self):
        return self.tables.get("top_losses", [])

    @property
    def most_confused(self):
        return self.tables.get("most_confused", [])

    @property
    def class_errors(self):
        return self.tables.get("class_errors", [])

    def with_columns(self, columns):
        """A copy whose top-loss rows also hold `columns` ({name: one value per top-loss row}),
        such as each example's text or file; they go after `index` (and `example`).

        >>> found = interpretation([1, 0], [[0.9, 0.1], [0.3, 0.7]], n=1)
        >>> found.with_columns({"text": ["a fine film"]}).top_losses[0]["text"]
        'a fine film'
        """
        rows = self.top_losses
        for name, values in columns.items():
            if len(values) != len(rows):
                raise DataError(f"column {name!r} has {len(values)} values but there are {len(rows)} "
                                "top-loss rows; give one value per row, in their order")
        extended = []
        for i, row in enumerate(rows):
            head = {key: value for key, value in row.items() if key in ("index", "example")}
            added = {name: _plain(values[i]) for name, values in columns.items()}
            extended.append({**head, **added, **{k: v for k, v in row.items() if k not in head}})
        return dataclasses.replace(self, tables={**self.tables, "top_losses": extended},
                                   meta=dict(self.meta), metrics=dict(self.metrics))

    def summary(self, rows=5, max_chars=60):
        """Plain text for a terminal: the counts, then the first `rows` top losses and
        most-confused pairs (strings longer than `max_chars` shortened)."""
        num_examples = self.meta.get("num_examples", "?")
        lines = [f"{self['errors']} of {num_examples} examples predicted wrong "
                 f"(error rate {self['error_rate']:.4f}, mean loss {self['mean_loss']:.4f})"]
        for title, table in (("top losses", self.top_losses), ("most confused (true, predicted, count)",
                                                              self.most_confused)):
            lines += ["", f"{title}: {min(rows, len(table))} of {len(table)}"]
            if table:
                header = list(table[0])
                cells = [[shorten(row[key], max_chars) if isinstance(row[key], str) else row[key]
                          for key in header] for row in table[:rows]]
                lines += [f"  {line}" for line in _text_table(header, cells)]
        return "\n".join(lines)


def losses(y_true, y_prob):
    """Each example's cross-entropy loss, -log p(true class), as float64 (N,).

    >>> losses([0, 1], [[0.5, 0.5], [0.9, 0.1]]).round(4)
    array([0.6931, 2.3026])
    """
    y_true, y_prob = _validated(y_true, y_prob)
    return _losses(y_true, y_prob)


def top_losses(y_true, y_prob, n, class_names=None, example_names=None):
    """The `n` examples with the highest loss (all of them when there are fewer), highest first:
    rows {index, [example,] true, predicted, probability (of the prediction), true_probability,
    loss}. `example_names`: one name per example (a file, "test[12]"), shown as `example`.

    >>> [row["index"] for row in top_losses([0, 1, 1], [[0.6, 0.4], [0.6, 0.4], [0.2, 0.8]], n=2)]
    [1, 0]
    """
    check_count(n, "n (how many top losses)")
    y_true, y_prob, class_names, example_names = _checked(y_true, y_prob, class_names, example_names)
    loss = _losses(y_true, y_prob)
    order = np.argsort(-loss, kind="stable")[:n]
    return [_example_row(i, y_true, y_prob, loss, class_names, example_names) for i in order]


def most_confused(y_true, y_prob, class_names=None):
    """Pairs of (true, predicted) classes that differ, with how many examples of the true class
    were predicted as the other: rows {true, predicted, count}, the largest count first (ties in
    class order), pairs never confused left out.

    >>> most_confused([0, 0, 1], [[0.3, 0.7], [0.4, 0.6], [0.9, 0.1]], class_names=["a", "b"])
    [{'true': 'a', 'predicted': 'b', 'count': 2}, {'true': 'b', 'predicted': 'a', 'count': 1}]
    """
    y_true, y_prob, class_names, _ = _checked(y_true, y_prob, class_names, None)
    num_classes = y_prob.shape[1]
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (y_true, y_prob.argmax(axis=1)), 1)
    np.fill_diagonal(counts, 0)
    order = np.argsort(-counts, axis=None, kind="stable")
    pairs = [np.unravel_index(flat, counts.shape) for flat in order if counts.flat[flat] > 0]
    return [{"true": class_names[t], "predicted": class_names[p], "count": int(counts[t, p])}
            for t, p in pairs]


def class_errors(y_true, y_prob, k=5, class_names=None, example_names=None):
    """For each true class in class order, up to `k` of its misclassified examples, the highest
    loss first: rows {true, index, [example,] predicted, loss}.

    >>> rows = class_errors([0, 0, 1], [[0.3, 0.7], [0.4, 0.6], [0.9, 0.1]], k=1)
    >>> [(row["true"], row["index"], row["predicted"]) for row in rows]
    [('0', 0, '1'), ('1', 2, '0')]
    """
    check_count(k, "k (misclassified examples per class)")
    y_true, y_prob, class_names, example_names = _checked(y_true, y_prob, class_names, example_names)
    loss = _losses(y_true, y_prob)
    wrong = y_prob.argmax(axis=1) != y_true
    rows = []
    for label, name in enumerate(class_names):
        mine = np.flatnonzero(wrong & (y_true == label))
        for i in mine[np.argsort(-loss[mine], kind="stable")][:k]:
            row = _example_row(i, y_true, y_prob, loss, class_names, example_names)
            rows.append({"true": name, **{key: row[key] for key in row if key in ("index", "example")},
                         "predicted": row["predicted"], "loss": row["loss"]})
    return rows


def interpretation(y_true, y_prob, n=9, class_names=None, k=5, example_names=None):
    """An InterpretationReport: the `n` top losses, the most-confused pairs and up to `k`
    misclassified examples per class (see `top_losses`, `most_confused`, `class_errors`)."""
    check_count(n, "n (how many top losses)")
    check_count(k, "k (misclassified examples per class)")
    y_true, y_prob, class_names, example_names = _checked(y_true, y_prob, class_names, example_names)
    wrong = int((y_prob.argmax(axis=1) != y_true).sum())
    tables = {"top_losses": top_losses(y_true, y_prob, n, class_names, example_names),
              "most_confused": most_confused(y_true, y_prob, class_names),
              "class_errors": class_errors(y_true, y_prob, k, class_names, example_names)}
    metrics = {"errors": wrong, "error_rate": wrong / len(y_true),
               "mean_loss": float(_losses(y_true, y_prob).mean())}
    meta = {"num_examples": len(y_true), "num_classes": len(class_names), "class_names": class_names,
            "n": int(n), "k": int(k)}
    return InterpretationReport(metrics=metrics, tables=tables, meta=meta)


def check_count(value, name):
    """Raise ConfigError unless `value` is a whole number of at least 1 (how many rows to keep).

    >>> check_count(0, "n")
    Traceback (most recent call last):
    kdl.errors.ConfigError: n must be a whole number of at least 1; got 0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1; got {value!r}")


# -- writers: every file is written to a temporary name in its folder, then renamed ----------------

def grid_shape(count, per_row=GRID_COLUMNS):
    """(rows, columns) of the image grid for `count` images, at most `per_row` to a row.

    >>> grid_shape(9), grid_shape(2), grid_shape(13)
    ((2, 6), (1, 2), (3, 6))
    """
    columns = max(min(count, per_row), 1)
    return math.ceil(count / columns), columns


def write_image_grid(path, rows, images, per_row=GRID_COLUMNS):
    """Draw `images` (one per top-loss row, in order: arrays of pixel values 0..255, (H, W)
    grey, or (H, W, C) with C of 1 (grey), 3 (RGB) or 4 (RGBA)) as a grid PNG at `path`, each
    titled "true / predicted / probability"; a wrong prediction's title is red. The PNG is
    CELL_PIXELS per image: (columns * 200, rows * 220) pixels. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(rows)
    if not rows:
        raise DataError("write_image_grid() got no top-loss rows; expected at least 1")
    if len(images) != len(rows):
        raise DataError(f"write_image_grid() got {len(images)} images for {len(rows)} top-loss rows; "
                        "expected one image per row, in the rows' order")
    pictures = [_picture(image, i) for i, image in enumerate(images)]
    grid_rows, columns = grid_shape(len(rows), per_row)
    width, height = CELL_PIXELS
    figure = Figure(figsize=(columns * width / DPI, grid_rows * height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle("true / predicted / probability", fontsize=9)
    axes_grid = figure.subplots(grid_rows, columns, squeeze=False).ravel()
    for axes in axes_grid:
        axes.set_axis_off()
    for axes, row, picture in zip(axes_grid, rows, pictures):
        if picture.ndim == 2:
            axes.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            axes.imshow(picture, interpolation="nearest")
        axes.set_title(f"{row['true']} / {row['predicted']} / {row['probability']:.2f}", fontsize=8,
                       color="black" if row["true"] == row["predicted"] else "firebrick")
    return write_file(path, lambda tmp: figure.savefig(tmp, dpi=DPI, format="png"))


def write_tables(folder, report, max_chars=100):
    """Write `interpretation.md` (the metrics and every table, strings longer than `max_chars`
    shortened) and `top_losses.csv` (the top-loss rows, strings whole) into `folder`; returns
    their paths. Texts and file names join the rows by `report.with_columns` first."""
    check_count(max_chars, "max_chars")
    folder = pathlib.Path(folder)
    short = dataclasses.replace(report, tables={
        name: [{key: shorten(value, max_chars) if isinstance(value, str) else value
                for key, value in row.items()} for row in table]
        for name, table in report.tables.items()})
    markdown = write_file(folder / "interpretation.md",
                                 lambda tmp: tmp.write_text(short.to_markdown(), encoding="utf-8"))
    return [markdown, write_csv(folder / "top_losses.csv", report.top_losses)]


def write_csv(path, rows):
    """The rows (dicts) as CSV at `path`: a header of their keys, then one line per row."""
    rows = list(rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    return write_file(path, write)


def write_json(path, report):
    """The whole report (metrics, tables, meta) as JSON at `path`; `Report.from_json` reads it back."""
    return write_file(path, lambda tmp: tmp.write_text(report.to_json() + "\n", encoding="utf-8"))


def shorten(text, max_chars=100):
    """`text` on one line (runs of white space become one space), cut to at most `max_chars`
    characters at a word boundary when one is near, ending with "…" when cut.

    >>> shorten("a  gripping,\\n funny film", 14)
    'a gripping, …'
    >>> shorten("short")
    'short'
    """
    text = " ".join(str(text).split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars - 1]
    space = cut.rfind(" ")
    if space >= max(max_chars - 20, 1):       # a word boundary near the end
        cut = cut[:space + 1]
    return cut + "…"


def _checked(y_true, y_prob, class_names, example_names):
    y_true, y_prob = _validated(y_true, y_prob)
    class_names = _validated_class_names(class_names, y_prob.shape[1])
    if example_names is not None:
        example_names = [str(name) for name in example_names]
        if len(example_names) != len(y_true):
            raise DataError(f"example_names has {len(example_names)} names but there are {len(y_true)} "
                            "examples; give one name per example, in their order")
    return y_true, y_prob, class_names, example_names


def _losses(y_true, y_prob):
    true_probability = y_prob[np.arange(len(y_true)), y_true]
    return -np.log(np.clip(true_probability, SMALLEST_PROBABILITY, 1.0))


def _example_row(i, y_true, y_prob, loss, class_names, example_names):
    i = int(i)
    predicted = int(y_prob[i].argmax())
    row = {"index": i}
    if example_names is not None:
        row["example"] = example_names[i]
    return {**row, "true": class_names[y_true[i]], "predicted": class_names[predicted],
            "probability": float(y_prob[i, predicted]), "true_probability": float(y_prob[i, y_true[i]]),
            "loss": float(loss[i])}


def _picture(image, i):
    """One image as (H, W) grey or (H, W, 3|4) uint8 colour, after checking it."""
    picture = np.asarray(image)
    if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture[..., 0]
    if not (picture.ndim == 2 or (picture.ndim == 3 and picture.shape[-1] in (3, 4))) or 0 in picture.shape:
        raise DataError(f"image {i} has shape {np.shape(image)}; expected (H, W) grey or (H, W, C) with C "
                        "of 1, 3 or 4")
    if not np.issubdtype(picture.dtype, np.number) or np.issubdtype(picture.dtype, np.complexfloating):
        raise DataError(f"image {i} has dtype {picture.dtype}; expected pixel values 0..255")
    picture = picture.astype(np.float64)
    if not np.isfinite(picture).all() or picture.min() < 0 or picture.max() > 255:
        raise DataError(f"image {i} has pixel values from {picture.min():g} to {picture.max():g}; "
                        "expected finite values 0..255")
    return picture if picture.ndim == 2 else np.round(picture).astype(np.uint8)


def _plain(value):
    """A numpy scalar or bytes as a plain JSON-ready Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value.item() if isinstance(value, np.generic) else value
