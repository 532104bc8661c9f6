"""kdl.evaluation: metrics equal sklearn's, ECE by hand, the Report's formats, and input checks.

Evaluation is numpy-only, so these tests are the same on every backend."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from kdl.errors import ConfigError, DataError
from kdl.evaluation import ClassificationReport, Report, classification, expected_calibration_error

# 12 examples, 3 classes with supports 5, 4, 3; the three misclassified rows are marked.
Y_TRUE = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
Y_PROB = np.array([
    [0.70, 0.20, 0.10],
    [0.60, 0.30, 0.10],
    [0.50, 0.40, 0.10],
    [0.40, 0.35, 0.25],
    [0.20, 0.70, 0.10],  # true 0, predicted 1 (0 is in the top 2)
    [0.10, 0.80, 0.10],
    [0.20, 0.60, 0.20],
    [0.25, 0.35, 0.40],  # true 1, predicted 2 (1 is in the top 2)
    [0.45, 0.50, 0.05],
    [0.10, 0.10, 0.80],
    [0.60, 0.30, 0.10],  # true 2, predicted 0 (2 is not in the top 2)
    [0.30, 0.20, 0.50],
])
NAMES = ["cat", "dog", "bird"]


@pytest.fixture
def report():
    return classification(Y_TRUE, Y_PROB, class_names=NAMES)


def test_metrics_equal_sklearn(report):
    y_pred = Y_PROB.argmax(axis=1)
    labels = [0, 1, 2]
    expected = {
        "accuracy": skm.accuracy_score(Y_TRUE, y_pred),
        "top_2_accuracy": skm.top_k_accuracy_score(Y_TRUE, Y_PROB, k=2, labels=labels),
        "log_loss": skm.log_loss(Y_TRUE, Y_PROB, labels=labels),
        "ece": expected_calibration_error(Y_TRUE, Y_PROB, n_bins=15),
    }
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            Y_TRUE, y_pred, labels=labels, average=average, zero_division=0
        )
        expected |= {f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f}
    assert report.metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert report[name] == pytest.approx(value, abs=1e-12), name
        assert type(report[name]) is float
    np.testing.assert_array_equal(report.confusion_matrix, skm.confusion_matrix(Y_TRUE, y_pred))


def test_numbers_by_hand(report):
    assert report["accuracy"] == 9 / 12
    assert report["top_2_accuracy"] == pytest.approx(11 / 12)
    # predicted columns of the confusion matrix hold 5, 4, 3 examples of which 4, 3, 2 are right
    assert report["precision_macro"] == pytest.approx((4 / 5 + 3 / 4 + 2 / 3) / 3)
    assert report["recall_weighted"] == pytest.approx(9 / 12)
    assert report.confusion_matrix.tolist() == [[4, 1, 0], [0, 3, 1], [1, 0, 2]]
    assert report.tables["per_class"][0] == {
        "class": "cat", "precision": pytest.approx(0.8), "recall": pytest.approx(0.8),
        "f1": pytest.approx(0.8), "support": 5,
    }
    assert report.meta == {"num_examples": 12, "num_classes": 3, "class_names": NAMES}


def test_ece_by_hand():
    # 5 bins (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1]; confidence = max probability.
    y_prob = np.array([[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.35, 0.65], [0.55, 0.45]])
    y_true = np.array([0, 1, 1, 1, 1])
    # (.8, 1]: 2 examples, accuracy 1/2, mean confidence .875 -> 2/5 * .375 = .15
    # (.6, .8]: 2 examples, accuracy 1, mean confidence .675  -> 2/5 * .325 = .13
    # (.4, .6]: 1 example, accuracy 0, confidence .55        -> 1/5 * .55  = .11
    assert expected_calibration_error(y_true, y_prob, n_bins=5) == pytest.approx(0.15 + 0.13 + 0.11)


def test_ece_bin_upper_edge_is_inclusive():
    # 0.8 belongs to (.6, .8], not (.8, 1]: two bins of one example, .5 * .2 + .5 * .9
    y_prob = np.array([[0.8, 0.2], [0.9, 0.1]])
    assert expected_calibration_error([0, 1], y_prob, n_bins=5) == pytest.approx(0.55)


def test_ece_calibrated_is_zero_and_confidently_wrong_is_one():
    confident_80 = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error([0] * 8 + [1] * 2, confident_80) == pytest.approx(0.0, abs=1e-12)
    confident_wrong = np.tile([0.999, 0.001], (10, 1))
    assert expected_calibration_error([1] * 10, confident_wrong) == pytest.approx(1.0, abs=1e-2)


def test_report_ece_uses_n_bins():
    report = classification(Y_TRUE, Y_PROB, n_bins=4)
    assert report["ece"] == expected_calibration_error(Y_TRUE, Y_PROB, n_bins=4)


def test_top_k_is_capped_below_num_classes():
    y_prob = np.array([[0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]])
    y_true = [1, 2, 3]
    assert "top_3_accuracy" in classification(y_true, y_prob).metrics  # top_k=5, C=4 -> k=3
    report = classification(y_true, y_prob, top_k=2)
    assert report["top_2_accuracy"] == pytest.approx(1 / 3)
    assert not any(name.startswith("top_") and name != "top_2_accuracy" for name in report.metrics)


def test_binary_has_no_top_k():
    report = classification([0, 1, 1, 0], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]))
    assert not any(name.startswith("top_") for name in report.metrics)
    assert report["accuracy"] == 0.5
    assert report.meta["class_names"] == ["0", "1"]
    assert report.confusion_matrix.shape == (2, 2)


@pytest.mark.parametrize("labels", [Y_TRUE.astype("uint8"), Y_TRUE.astype("int32"), Y_TRUE.tolist()])
def test_any_integer_labels(labels, report):
    same = classification(labels, Y_PROB.astype("float32"), class_names=NAMES)
    assert same["accuracy"] == report["accuracy"]


def test_json_round_trip(report, tmp_path):
    path = tmp_path / "report.json"
    text = report.to_json(path)
    assert path.read_text().strip() == text
    assert json.loads(text)["confusion_matrix"] == [[4, 1, 0], [0, 3, 1], [1, 0, 2]]
    for restored in (Report.from_json(text), Report.from_json(path), Report.from_dict(report.to_dict())):
        assert type(restored) is ClassificationReport
        assert restored == report
        np.testing.assert_array_equal(restored.confusion_matrix, report.confusion_matrix)


def test_generic_report_round_trip():
    report = Report("other", metrics={"bleu": np.float32(0.5)}, tables={"rows": [{"a": np.int64(1)}]},
                    meta={"backend": "jax"})
    restored = Report.from_json(report.to_json())
    assert type(restored) is Report and restored == report and restored["bleu"] == 0.5


def test_markdown_and_text(report):
    markdown = report.to_markdown()
    text = str(report)
    for name in [*report.metrics, *NAMES]:
        assert name in markdown
        assert name in text
    assert "| accuracy | 0.7500 |" in markdown
    assert "accuracy" in text and "0.7500" in text and "confusion_matrix" in text


def test_large_confusion_matrix_is_not_printed():
    num_classes = 25
    report = classification(np.arange(num_classes), np.eye(num_classes))
    assert "omitted for 25 classes" in str(report)


def test_missing_metric_lists_available(report):
    with pytest.raises(KeyError, match="available metrics: accuracy"):
        report["auc"]


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_confusion_matrix_writes_png(report, tmp_path, normalize):
    path = report.plot_confusion_matrix(tmp_path / "plots" / "confusion_matrix.png", normalize=normalize)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


@pytest.mark.parametrize(
    "y_true, y_prob, class_names, message",
    [
        (Y_TRUE[:, None], Y_PROB, None, r"y_true must be 1-D .*got shape \(12, 1\)"),
        (Y_TRUE, Y_PROB[:, 0], None, r"y_prob must be 2-D .*got shape \(12,\)"),
        (Y_TRUE[:10], Y_PROB, None, r"length mismatch: y_true has 10 labels but y_prob has 12 rows"),
        ([], np.zeros((0, 3)), None, r"empty input"),
        (Y_TRUE[:2], np.ones((2, 1)), None, r"at least 2 class columns"),
        (Y_TRUE.astype(float), Y_PROB, None, r"integer class labels, got dtype float64"),
        ([0, 3, 5, 3], Y_PROB[:4], None, r"labels outside \[0, 3\) in y_true: \[3, 5\]"),
        ([0, 1], [[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]], None, r"non-finite"),
        ([0, 1], [[1.5, -0.5, 0.0], [0.2, 0.3, 0.5]], None, r"probabilities in \[0, 1\]"),
        ([0, 1], [[0.2, 0.3, 0.5], [0.5, 0.5, 0.5]], None, r"row 1 sums to 1.5.*not logits"),
        (Y_TRUE, Y_PROB, ["cat", "dog"], r"class_names has 2 names but y_prob has C=3"),
    ],
)
def test_invalid_input_raises_data_error(y_true, y_prob, class_names, message):
    with pytest.raises(DataError, match=message):
        classification(y_true, y_prob, class_names=class_names)


def test_ece_validates_input_and_bins():
    with pytest.raises(DataError, match="length mismatch"):
        expected_calibration_error([0, 1], Y_PROB)
    with pytest.raises(ConfigError, match="n_bins must be a positive integer"):
        expected_calibration_error(Y_TRUE, Y_PROB, n_bins=0)


def test_rows_within_tolerance_are_accepted():
    y_prob = Y_PROB * (1 + 5e-4)
    assert classification(Y_TRUE, y_prob)["accuracy"] == 0.75
