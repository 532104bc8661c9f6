"""Which examples a classifier gets wrong: kdl.evaluation.interpretation on hand-made
probabilities, its writers, kdl.recipes.interpret on tiny runs of each classifier task, and
`kdl evaluate RUN --top-losses N`."""

import csv
import json

import numpy as np
import pytest
from harness import CASES, LABELS, TEXTS

import kdl
from kdl.cli import main
from kdl.errors import ConfigError, DataError, RunError
from kdl.evaluation import (
    InterpretationReport,
    Report,
    class_errors,
    interpretation,
    most_confused,
    top_losses,
)
from kdl.evaluation.interpretation import (
    CELL_PIXELS,
    grid_shape,
    losses,
    shorten,
    write_image_grid,
    write_json,
    write_tables,
)
from kdl.recipes.interpret import interpret
from kdl.runs import write_file

NAMES = ["cat", "dog", "bird"]
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 0])
Y_PROB = np.array([
    [0.70, 0.20, 0.10],   # 0: right, loss -log 0.7
    [0.10, 0.80, 0.10],   # 1: cat as dog, loss -log 0.1
    [0.30, 0.60, 0.10],   # 2: right
    [0.50, 0.20, 0.30],   # 3: dog as cat, loss -log 0.2
    [0.60, 0.30, 0.10],   # 4: bird as cat, loss -log 0.1 (ties with 1: input order)
    [0.05, 0.05, 0.90],   # 5: right
    [0.40, 0.50, 0.10],   # 6: cat as dog, loss -log 0.4
])


# -- the numpy functions ---------------------------------------------------------------------------

def test_top_losses_are_the_highest_cross_entropies_in_order():
    rows = top_losses(Y_TRUE, Y_PROB, 4, class_names=NAMES)
    assert [row["index"] for row in rows] == [1, 4, 3, 6]            # ties (1, 4) keep input order
    assert rows[0] == {"index": 1, "true": "cat", "predicted": "dog", "probability": 0.8,
                       "true_probability": 0.1, "loss": pytest.approx(-np.log(0.1))}
    assert [row["loss"] for row in rows] == pytest.approx(-np.log([0.1, 0.1, 0.2, 0.4]))
    assert len(top_losses(Y_TRUE, Y_PROB, 100)) == len(Y_TRUE)          # n past N: all of them
    np.testing.assert_allclose(losses(Y_TRUE, Y_PROB), -np.log(Y_PROB[np.arange(7), Y_TRUE]))
    named = top_losses(Y_TRUE, Y_PROB, 1, example_names=[f"f{i}.png" for i in range(7)])
    assert named[0]["example"] == "f1.png" and named[0]["true"] == "0"  # class ids as names by default
    assert top_losses([0], [[0.0, 1.0]], 1)[0]["loss"] == pytest.approx(-np.log(np.finfo(float).eps))


def test_most_confused_counts_pairs_largest_first():
    assert most_confused(Y_TRUE, Y_PROB, NAMES) == [
        {"true": "cat", "predicted": "dog", "count": 2},
        {"true": "dog", "predicted": "cat", "count": 1},     # ties in class order (true, then predicted)
        {"true": "bird", "predicted": "cat", "count": 1},
    ]
    assert most_confused([0, 1], [[0.9, 0.1], [0.2, 0.8]]) == []      # no mistakes, no pairs


def test_class_errors_lists_up_to_k_per_true_class_worst_first():
    rows = class_errors(Y_TRUE, Y_PROB, k=1, class_names=NAMES)
    assert [(row["true"], row["index"], row["predicted"]) for row in rows] == \
        [("cat", 1, "dog"), ("dog", 3, "cat"), ("bird", 4, "cat")]
    rows = class_errors(Y_TRUE, Y_PROB, k=5, class_names=NAMES)
    assert [(row["true"], row["index"]) for row in rows] == [("cat", 1), ("cat", 6), ("dog", 3), ("bird", 4)]
    assert rows[1]["loss"] == pytest.approx(-np.log(0.4))


def test_interpretation_gathers_everything_and_round_trips():
    found = interpretation(Y_TRUE, Y_PROB, n=3, class_names=NAMES, k=2)
    assert isinstance(found, InterpretationReport)
    assert found["errors"] == 4 and found["error_rate"] == pytest.approx(4 / 7)
    assert found["mean_loss"] == pytest.approx(losses(Y_TRUE, Y_PROB).mean())
    assert [row["index"] for row in found.top_losses] == [1, 4, 3]
    assert found.most_confused == most_confused(Y_TRUE, Y_PROB, NAMES)
    assert found.class_errors == class_errors(Y_TRUE, Y_PROB, 2, NAMES)
    assert found.meta["num_examples"] == 7 and found.meta["class_names"] == NAMES
    assert Report.from_json(found.to_json()) == found
    printed = found.summary(rows=2)
    assert "4 of 7 examples predicted wrong" in printed and "top losses: 2 of 3" in printed
    assert "most confused (true, predicted, count): 2 of 3" in printed


@pytest.mark.parametrize("call, error, message", [
    (lambda: top_losses(Y_TRUE, Y_PROB, 0), ConfigError, "n (how many top losses) must be a whole number "
                                                         "of at least 1; got 0"),
    (lambda: top_losses(Y_TRUE, Y_PROB, 2.5), ConfigError, "got 2.5"),
    (lambda: top_losses(Y_TRUE, Y_PROB, True), ConfigError, "got True"),
    (lambda: class_errors(Y_TRUE, Y_PROB, k=-1), ConfigError, "k (misclassified examples per class)"),
    (lambda: interpretation(Y_TRUE[:5], Y_PROB), DataError, "y_true has 5 labels but y_prob has 7 rows"),
    (lambda: interpretation(Y_TRUE, Y_PROB / 2), DataError, "rows must sum to 1"),
    (lambda: interpretation(Y_TRUE, Y_PROB, class_names=["a"]), DataError, "class_names has 1 names"),
    (lambda: top_losses(Y_TRUE, Y_PROB, 1, example_names=["a"]), DataError,
     "example_names has 1 names but there are 7 examples"),
    (lambda: interpretation(Y_TRUE, Y_PROB, n=2).with_columns({"text": ["a"]}), DataError,
     "column 'text' has 1 values but there are 2 top-loss rows"),
])
def test_bad_inputs_name_what_was_received(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


# -- the writers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("count, channels", [(3, None), (9, 3), (1, 1)])
def test_image_grid_is_a_png_of_the_expected_size(tmp_path, count, channels):
    from PIL import Image

    rows = top_losses(Y_TRUE, Y_PROB, count, NAMES)
    shape = (12, 10) if channels is None else (12, 10, channels)
    images = [np.full(shape, 40 * i, np.uint8) for i in range(len(rows))]
    path = write_image_grid(tmp_path / "grid.png", rows, images)
    grid_rows, columns = grid_shape(len(rows))
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert picture.size == (columns * CELL_PIXELS[0], grid_rows * CELL_PIXELS[1])
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]          # no temporary file left


def test_image_grid_checks_its_images(tmp_path):
    rows = top_losses(Y_TRUE, Y_PROB, 2)
    with pytest.raises(DataError, match="got 1 images for 2 top-loss rows"):
        write_image_grid(tmp_path / "g.png", rows, [np.zeros((4, 4))])
    with pytest.raises(DataError, match=r"image 1 has shape \(4, 4, 2\)"):
        write_image_grid(tmp_path / "g.png", rows, [np.zeros((4, 4)), np.zeros((4, 4, 2))])
    with pytest.raises(DataError, match="image 0 has pixel values from 0 to 300; expected finite values"):
        write_image_grid(tmp_path / "g.png", rows, [np.eye(4) * 300, np.zeros((4, 4))])


def test_tables_and_json_hold_the_rows(tmp_path):
    long_text = "a very long review " * 20
    found = interpretation(Y_TRUE, Y_PROB, n=2, class_names=NAMES)
    found = found.with_columns({"text": [long_text, "short,\nwith a comma"]})
    assert list(found.top_losses[0])[:3] == ["index", "text", "true"]
    markdown, table = write_tables(tmp_path, found, max_chars=40)
    written = write_json(tmp_path / "interpretation.json", found)
    assert _names(tmp_path) == {"interpretation.md", "top_losses.csv", "interpretation.json"}
    text = markdown.read_text()
    assert shorten(long_text, 40) in text and long_text.strip() not in text
    assert "| short, with a comma |" in text and "## most_confused" in text and "## class_errors" in text
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["text"] for row in rows] == [long_text, "short,\nwith a comma"]     # whole, in CSV
    assert [int(row["index"]) for row in rows] == [1, 4] and float(rows[0]["loss"]) == pytest.approx(2.302585)
    assert Report.from_json(written) == found


def test_shorten_cuts_at_a_word_boundary():
    assert shorten("one two three four", 12) == "one two …"
    assert shorten("abcdefghijklmnop", 8) == "abcdefg…"
    assert shorten("  spaced\tout\n ") == "spaced out"


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(RunError, match="cannot write .*table.csv.*No space left on device"):
        write_file(path, half_then_fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def _names(folder):
    return {path.name for path in folder.iterdir()}


# -- on tiny runs ----------------------------------------------------------------------------------

def _by_hand(recipe, examples, labels):
    """Each example's loss from recipe.predict, and its predicted class name."""
    result = recipe.predict(examples)
    return -np.log(result.probabilities[np.arange(len(labels)), labels]), result.labels


def _check_top_losses(rows, recipe, examples, labels, n):
    """The rows are the n highest losses of predicting `examples` by hand (ties in any order)."""
    by_hand, predicted = _by_hand(recipe, examples, labels)
    assert len(rows) == min(n, len(labels))
    assert [row["loss"] for row in rows] == pytest.approx(sorted(by_hand, reverse=True)[:n], rel=1e-4)
    for row in rows:
        assert row["loss"] == pytest.approx(by_hand[row["index"]], rel=1e-4)
        assert row["true"] == recipe.class_names[labels[row["index"]]]
        assert row["predicted"] == predicted[row["index"]]


def _split(recipe, name="test"):
    pairs = list(recipe.data.splits[name].as_numpy_iterator())
    return [x for x, _ in pairs], np.array([y for _, y in pairs])


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    recipe = CASES["image_classifier"].make()
    recipe.fit(epochs=1, steps_per_epoch=1, verbose=0)
    return recipe.save(tmp_path_factory.mktemp("interpret") / "digits")


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interpret")
    source = folder / "reviews.csv"
    source.write_text("sentence,label\n" + "".join(f"{x},{y}\n" for x, y in zip(TEXTS, LABELS)))
    recipe = kdl.recipes.text_classifier(str(source), model="cnn", batch_size=8, max_length=8,
                                         vocabulary_size=40, embedding=8, filters=4)
    recipe.fit(epochs=1, steps_per_epoch=1, verbose=0)
    return recipe.save(folder / "reviews")


def test_kdl_evaluate_top_losses_on_an_image_run(image_run, capsys):
    from PIL import Image

    assert main(["evaluate", str(image_run), "--top-losses", "3"]) == 0
    printed = capsys.readouterr().out
    out = image_run / "interpretation-test"
    assert f"to {out}" in printed and "top losses: 3 of 3" in printed and "most confused" in printed
    assert {p.name for p in out.iterdir()} == {"top_losses.png", "interpretation.md", "top_losses.csv",
                                               "interpretation.json"}
    with Image.open(out / "top_losses.png") as picture:
        assert picture.size == (3 * CELL_PIXELS[0], CELL_PIXELS[1])
    found = json.loads((out / "interpretation.json").read_text())
    assert found["meta"]["task"] == "image_classifier" and found["meta"]["split"] == "test"
    assert [row["example"] for row in found["tables"]["top_losses"]] == \
        [f"test[{row['index']}]" for row in found["tables"]["top_losses"]]
    recipe = kdl.recipes.load(image_run)
    images, labels = _split(recipe)
    _check_top_losses(found["tables"]["top_losses"], recipe, np.stack(images), labels, 3)


def test_kdl_evaluate_top_losses_on_a_text_run(text_run, tmp_path, capsys):
    out = tmp_path / "mistakes"
    assert main(["evaluate", str(text_run), "--top-losses", "3", "--interpretation-out", str(out)]) == 0
    assert f"to {out}" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"interpretation.md", "top_losses.csv", "interpretation.json"}
    rows = json.loads((out / "interpretation.json").read_text())["tables"]["top_losses"]
    recipe = kdl.recipes.load(text_run)
    texts, labels = _split(recipe)
    texts = [text.decode() for text in texts]
    _check_top_losses(rows, recipe, texts, labels, 3)
    assert [row["text"] for row in rows] == [texts[row["index"]] for row in rows]
    with open(out / "top_losses.csv", newline="") as handle:
        assert [row["text"] for row in csv.DictReader(handle)] == [row["text"] for row in rows]
    assert all(f"| {row['text']} |" in (out / "interpretation.md").read_text() for row in rows)


def test_kdl_evaluate_top_losses_on_other_data(text_run, tmp_path, capsys):
    source = tmp_path / "more.csv"
    source.write_text("stars,review\npos,fine fun\nneg,slow mess\npos,great acting\nneg,boring film\n")
    assert main(["evaluate", str(text_run), "--data", str(source), "--text-column", "review",
                 "--label-column", "stars", "--top-losses", "2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["meta"]["split"] == "all" and found["meta"]["source"] == str(source)
    assert sum(found["meta"]["splits"].values()) == 4 and len(found["tables"]["top_losses"]) == 2
    assert (text_run / "interpretation-all" / "interpretation.json").is_file()
    assert {row["text"] for row in found["tables"]["top_losses"]} <= \
        {"fine fun", "slow mess", "great acting", "boring film"}


def test_interpret_an_audio_classifier(tmp_path):
    recipe = CASES["audio_classifier"].make()
    recipe.model = recipe.build_model()          # untrained: it gets plenty wrong
    found = interpret(recipe, n=4, k=2, out=tmp_path)
    assert _names(tmp_path) == {"interpretation.md", "top_losses.csv", "interpretation.json"}
    assert found.meta["files"] == ["interpretation.md", "top_losses.csv", "interpretation.json"]
    waves, labels = _split(recipe)
    _check_top_losses(found.top_losses, recipe, np.stack(waves), labels, 4)
    with open(tmp_path / "top_losses.csv", newline="") as handle:
        assert [int(row["index"]) for row in csv.DictReader(handle)] == \
            [row["index"] for row in found.top_losses]


def test_interpretation_refuses_bad_counts_and_splits(image_run, capsys):
    recipe = kdl.recipes.load(image_run)
    with pytest.raises(ConfigError, match="got 0"):
        interpret(recipe, n=0)
    with pytest.raises(DataError, match="no split 'dev'"):
        interpret(recipe, "dev")
    with pytest.raises(ConfigError, match=r"takes data options \(limit\) only with data="):
        interpret(recipe, limit=3)
    for argv, message in [
        (["--top-losses", "0"], "--top-losses takes how many examples to list, at least 1; got 0"),
        (["--top-losses", "two"], "argument --top-losses: invalid int value: 'two'"),
        (["--interpretation-out", "x"], "--interpretation-out DIR needs --top-losses N"),
    ]:
        assert main(["evaluate", str(image_run), *argv]) == 1
        error = capsys.readouterr().err
        assert error.startswith("kdl: error: ") and message in error and "Traceback" not in error


def test_a_translator_run_is_refused_with_the_tasks_that_work(tmp_path, capsys):
    recipe = CASES["translator"].make()
    with pytest.raises(ConfigError, match="needs a classifier run, one of image_classifier, text_classifier, "
                                          "audio_classifier; this is a 'translator' run"):
        interpret(recipe, n=3)
    recipe.model = recipe.build_model()
    run = recipe.save(tmp_path / "en_de")
    assert main(["evaluate", str(run), "--top-losses", "3"]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors[-1].startswith("kdl: error: ") and "this is a 'translator' run" in errors[-1]
    assert not (run / "interpretation-test").exists()
