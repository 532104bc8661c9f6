"""Score a classifier from numpy arrays: true labels and predicted class probabilities.

The same code scores every backend's model, so a difference in a score is a difference in the
model. Every metric sklearn has comes from sklearn; only the calibration error is computed here.

>>> import numpy as np
>>> y_prob = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
>>> report = classification([0, 1, 2, 2], y_prob, class_names=["cat", "dog", "bird"])
>>> report["accuracy"], report["top_2_accuracy"]
(0.75, 1.0)
>>> report.confusion_matrix
array([[1, 0, 0],
       [0, 1, 0],
       [1, 0, 1]])
"""

import dataclasses
import pathlib

import numpy as np
from sklearn import metrics as skm

from kdl.errors import ConfigError, DataError
from kdl.evaluation.report import Report

ROW_SUM_TOLERANCE = 1e-3
MAX_PRINTED_CLASSES = 20  # larger confusion matrices are only drawn, by plot_confusion_matrix
MAX_ANNOTATED_CLASSES = 30  # larger plots show colours only, no numbers in the cells


@dataclasses.dataclass(eq=False)
class ClassificationReport(Report, task="classification"):
    """A `Report` plus the confusion matrix (rows = true class, columns = predicted class)."""

    task: str = "classification"
    confusion_matrix: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), int))

    def __post_init__(self):
        super().__post_init__()
        self.confusion_matrix = np.asarray(self.confusion_matrix, dtype=np.int64)

    @property
    def class_names(self):
        return self.meta.get("class_names") or [str(i) for i in range(len(self.confusion_matrix))]

    def _sections(self):
        yield from super()._sections()
        num_classes = len(self.confusion_matrix)
        if num_classes > MAX_PRINTED_CLASSES:
            yield (
                f"confusion_matrix omitted for {num_classes} classes (more than {MAX_PRINTED_CLASSES}); "
                "plot_confusion_matrix(path) draws it as a PNG",
                [],
                [],
            )
        else:
            names = self.class_names
            rows = [[name, *map(int, counts)] for name, counts in zip(names, self.confusion_matrix)]
            header = ["true \\ predicted", *names]
            yield "confusion_matrix (rows = true class, columns = predicted)", header, rows

    def plot_confusion_matrix(self, path, normalize=False):
        """Write the confusion matrix as a PNG at `path` (counts, or each row divided by its total
        when `normalize`) and return the path. Draws with matplotlib's Agg canvas: no display needed."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        counts = self.confusion_matrix
        values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
        names = self.class_names
        size = min(4 + 0.5 * len(names), 40)
        figure = Figure(figsize=(size + 1.5, size), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots()
        color_max = 1.0 if normalize else max(int(counts.max()), 1)
        image = axes.imshow(values, cmap="Blues", vmin=0, vmax=color_max)
        figure.colorbar(image, ax=axes, shrink=0.8)
        ticks = np.arange(len(names))
        axes.set_xticks(ticks, names, rotation=45 if len(names) <= MAX_ANNOTATED_CLASSES else 90, ha="right")
        axes.set_yticks(ticks, names)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        title = "Confusion matrix (rows normalised)" if normalize else "Confusion matrix"
        axes.set_title(f"{title}, {int(counts.sum())} examples")
        if len(names) <= MAX_ANNOTATED_CLASSES:
            for (row, column), value in np.ndenumerate(values):
                axes.text(column, row, f"{value:.2f}" if normalize else f"{value:d}", ha="center",
                          va="center", color="white" if value > color_max / 2 else "black", fontsize=9)
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        return path


def classification(y_true, y_prob, class_names=None, top_k=5, n_bins=15):
    """Score labels `y_true` (N,) against class probabilities `y_prob` (N, C).

    Metrics: accuracy, top_{k}_accuracy with k = min(top_k, C - 1) (only when C > 2),
    precision/recall/f1 macro, micro and weighted averages, log_loss and ece; tables:
    `per_class`; plus `confusion_matrix`. Rows of `y_prob` must sum to 1 within 1e-3 (pass
    softmax outputs, not logits); log_loss sees them renormalised to sum to exactly 1.

    >>> import numpy as np
    >>> report = classification(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]))
    >>> round(report["accuracy"], 4), report.tables["per_class"][1]["support"]
    (0.6667, 2)
    """
    y_true, y_prob = _validated(y_true, y_prob)
    num_examples, num_classes = y_prob.shape
    class_names = _validated_class_names(class_names, num_classes)
    labels = np.arange(num_classes)
    y_pred = y_prob.argmax(axis=1)

    metrics = {"accuracy": skm.accuracy_score(y_true, y_pred)}
    if num_classes > 2:
        k = min(top_k, num_classes - 1)
        metrics[f"top_{k}_accuracy"] = skm.top_k_accuracy_score(y_true, y_prob, k=k, labels=labels)
    for average in ("macro", "micro", "weighted"):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        metrics |= {f"precision_{average}": precision, f"recall_{average}": recall, f"f1_{average}": f1}
    exact_prob = y_prob / y_prob.sum(axis=1, keepdims=True)  # sklearn warns on rows off by rounding
    metrics["log_loss"] = skm.log_loss(y_true, exact_prob, labels=labels)
    metrics["ece"] = expected_calibration_error(y_true, y_prob, n_bins=n_bins)

    per_class = zip(class_names, *skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    ))
    per_class_rows = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in per_class
    ]
    return ClassificationReport(
        metrics=metrics,
        tables={"per_class": per_class_rows},
        meta={"num_examples": num_examples, "num_classes": num_classes, "class_names": class_names},
        confusion_matrix=skm.confusion_matrix(y_true, y_pred, labels=labels),
    )


def expected_calibration_error(y_true, y_prob, n_bins=15):
    """Expected calibration error (Guo et al. 2017), computed here because sklearn has none.

    Each example falls in one of `n_bins` equal-width bins (i/n_bins, (i+1)/n_bins] by its
    confidence, the largest probability of its row. ECE = sum over bins of
    (n_bin / N) * |accuracy in bin - mean confidence in bin|.

    >>> import numpy as np
    >>> y_prob = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]])
    >>> round(expected_calibration_error([0, 1, 1, 1], y_prob, n_bins=10), 4)  # 0.5*|0.5-0.9| + 0.5*|1-0.7|
    0.35
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}")
    y_true, y_prob = _validated(y_true, y_prob)
    confidence = y_prob.max(axis=1)
    correct = y_prob.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of_example = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    error = 0.0
    for b in np.unique(bin_of_example):
        in_bin = bin_of_example == b
        error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def _validated(y_true, y_prob):
    """Checked `y_true` as int64 (N,) and `y_prob` as float64 (N, C) with rows summing to ~1."""
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    if y_true.ndim != 1:
        raise DataError(f"y_true must be 1-D integer labels of shape (N,), got shape {y_true.shape}")
    if y_prob.ndim != 2:
        raise DataError(f"y_prob must be 2-D class probabilities of shape (N, C), got shape {y_prob.shape}")
    if len(y_true) != len(y_prob):
        raise DataError(f"length mismatch: y_true has {len(y_true)} labels but y_prob has {len(y_prob)} rows")
    if len(y_true) == 0:
        raise DataError("empty input: got 0 examples, expected at least 1")
    num_classes = y_prob.shape[1]
    if num_classes < 2:
        raise DataError(f"y_prob must have at least 2 class columns, got shape {y_prob.shape}")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise DataError(f"y_true must hold integer class labels, got dtype {y_true.dtype}")
    outside = np.unique(y_true[(y_true < 0) | (y_true >= num_classes)])
    if outside.size:
        raise DataError(
            f"labels outside [0, {num_classes}) in y_true: {outside[:10].tolist()} "
            f"(y_prob has C={num_classes} class columns)"
        )
    y_prob = y_prob.astype(np.float64)
    non_finite = int(np.size(y_prob) - np.isfinite(y_prob).sum())
    if non_finite:
        raise DataError(f"y_prob must be finite, got {non_finite} non-finite values (NaN or inf)")
    if y_prob.min() < 0 or y_prob.max() > 1:
        raise DataError(
            f"y_prob must be probabilities in [0, 1], got values in [{y_prob.min():g}, {y_prob.max():g}]"
        )
    row_sums = y_prob.sum(axis=1)
    worst = int(np.abs(row_sums - 1).argmax())
    if abs(row_sums[worst] - 1) > ROW_SUM_TOLERANCE:
        raise DataError(
            f"y_prob rows must sum to 1 (tolerance {ROW_SUM_TOLERANCE:g}) but row {worst} sums to "
            f"{row_sums[worst]:.6g}; pass probabilities (e.g. softmax outputs), not logits"
        )
    return y_true.astype(np.int64), y_prob


def _validated_class_names(class_names, num_classes):
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise DataError(
            f"class_names has {len(class_names)} names but y_prob has C={num_classes} class columns"
        )
    return class_names
