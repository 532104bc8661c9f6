"""The model card of a run (kdl.card): RUN/README.md holds the run's own numbers (the report's
metrics, the parameter count, the split sizes, the last epoch of history.csv), a command that
retrains the run, training_curves.png, what the model takes, and its license; it is rewritten
when the run is saved again and travels with an export."""

import csv
import json
import re
import shlex

import keras
import pytest
from test_data_images import write_class_folders

import kdl
from kdl.cli import _parser, main

PNG = b"\x89PNG\r\n\x1a\n"


def _tiny(**overrides):
    settings = {"epochs": 2, "limit": 200, "filters": [4], "dense": 8, **overrides}
    return kdl.recipes.image_classifier(**settings)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny digits classifier trained into a run directory, evaluated and saved."""
    run = tmp_path_factory.mktemp("runs") / "digits"
    recipe = _tiny()
    recipe.fit(out=run, verbose=0)
    recipe.evaluate()
    recipe.save(run)
    return recipe, run


def _section(card, title):
    """The text of the card's `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, re.M | re.S)
    assert match, f"no section {title!r} in the card:\n{card}"
    return match.group(1)


def _table(text):
    """{first cell: [other cells]} of the Markdown table rows in `text` (header and rule left out)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:] if not set(row[0]) <= {"-", " "}}


def _score(card, metric):
    """The value of `metric` in the card's Evaluation table."""
    return float(_table(_section(card, "Evaluation"))[metric][0])


def _command(card):
    """The argv of the ```sh block of the card's Reproduce section."""
    block = re.search(r"```sh\n(.*?)\n```", _section(card, "Reproduce"), re.S)
    assert block, card
    return shlex.split(block.group(1))


def test_the_card_holds_the_runs_own_numbers(digits_run, backend):
    recipe, run = digits_run
    card = (run / "README.md").read_text(encoding="utf-8")
    report = json.loads((run / "report.json").read_text())

    scores = _table(_section(card, "Evaluation"))
    assert list(scores) == list(report["metrics"])
    for name, value in report["metrics"].items():
        assert float(scores[name][0]) == pytest.approx(value, abs=5e-5), name
    assert f"accuracy **{report['metrics']['accuracy']:.4f}** on the test split" in card
    assert "`kdl.evaluation.classification` on the **test** split of `digits`, 200 examples" in card

    parameters = re.search(r"Parameters: ([\d,]+) \(([\d,]+) trainable\)", card)
    assert int(parameters.group(1).replace(",", "")) == recipe.model.count_params()
    assert int(parameters.group(2).replace(",", "")) == sum(
        int(keras.ops.size(weight)) for weight in recipe.model.trainable_weights)
    sizes = recipe.data.info.num_examples
    assert sizes == {"train": 180, "validation": 20, "test": 200}
    assert f"Examples per split: train {sizes['train']}, validation {sizes['validation']}, test 200" in card
    assert "Classes (10, in output order): `0`, `1`, `2`" in card

    with (run / "history.csv").open(newline="") as file:
        history = list(csv.DictReader(file))
    last = _table(_section(card, "Training"))
    assert len(history) == 2 and "2 epochs (history.csv)" in card
    for name in ("loss", "accuracy"):
        assert float(last[name][0]) == pytest.approx(float(history[-1][name]), abs=5e-5)
        assert float(last[name][1]) == pytest.approx(float(history[-1][f"val_{name}"]), abs=5e-5)
    assert "](training_curves.png)" in card
    assert (run / "training_curves.png").read_bytes().startswith(PNG)

    use = _section(card, "Intended use and limitations")
    assert "8x8 images of 1 channel, pixel values 0..255" in use
    assert "bright strokes or objects on a dark background" in use     # digits: ink is high, background 0
    assert f"Saved on the **{backend}** backend" in card and f"Keras {keras.__version__}" in card
    assert f"kdl {kdl.__version__}" in card
    assert "No license was set" in _section(card, "License") and "[card]" in card


def test_the_cards_command_parses_names_recipe_toml_and_retrains_the_run(digits_run, backend, capsys):
    recipe, run = digits_run
    argv = _command((run / "README.md").read_text(encoding="utf-8"))
    assert argv[:2] == ["kdl", "train"]
    args = _parser().parse_args(argv[1:])
    assert args.recipe == str(run / "recipe.toml") and args.backend == backend
    assert args.out == f"{run}-reproduced" and args.data_root is None     # the digits are built in
    assert main([*argv[1:], "--quiet"]) == 0, capsys.readouterr().err
    again = json.loads((run.parent / "digits-reproduced" / "report.json").read_text())
    # the same config, seed and backend: the same model (identical with one CPU thread; threads may
    # reorder float sums, moving an example or two across a decision boundary)
    assert again["metrics"]["accuracy"] == pytest.approx(recipe.report["accuracy"], abs=0.011)


def test_a_run_on_data_found_under_a_root_names_the_root_in_its_command(tmp_path):
    root = tmp_path / "data"
    write_class_folders(root / "pets")
    recipe = kdl.recipes.image_classifier("pets", data_root=root, filters=[4], dense=8)
    recipe.model = recipe.build_model()        # no training needed to write a card
    run = recipe.save(tmp_path / "run")
    argv = _command((run / "README.md").read_text(encoding="utf-8"))
    args = _parser().parse_args(argv[1:])
    assert args.data_root == str(root.resolve()) and "--epochs" not in argv
    again = kdl.recipes.load(args.recipe, data_root=args.data_root)    # what `kdl train` starts with
    assert again.data.info.num_examples == recipe.data.info.num_examples == {"train": 10, "validation": 2,
                                                                             "test": 3}


def test_a_run_saved_without_a_report_says_so_and_saving_it_evaluated_rewrites_the_card(digits_run, tmp_path):
    _, run = digits_run
    recipe = kdl.recipes.load(run)
    copy = recipe.save(tmp_path / "copy")
    card = (copy / "README.md").read_text(encoding="utf-8")
    assert "**not evaluated yet**" in card and "**Not evaluated**" in _section(card, "Evaluation")
    assert "recipe.evaluate()" in card and not (copy / "report.json").exists()
    assert "Examples per split: not recorded" in card          # the data was never loaded here
    assert "No training history" in card and not (copy / "training_curves.png").exists()

    report = recipe.evaluate()
    recipe.save(copy)
    card = (copy / "README.md").read_text(encoding="utf-8")
    assert "Not evaluated" not in card and "not evaluated" not in card
    assert _score(card, "accuracy") == pytest.approx(report["accuracy"], abs=5e-5)
    assert "Examples per split: train 180, validation 20, test 200" in card


def test_export_copies_the_card_beside_the_model(digits_run, tmp_path):
    _, run = digits_run
    assert main(["export", str(run), "--format", "keras", "--out", str(tmp_path / "export")]) == 0
    export = tmp_path / "export"
    assert (export / "README.md").read_bytes() == (run / "README.md").read_bytes()
    assert (export / "training_curves.png").read_bytes() == (run / "training_curves.png").read_bytes()
    signature = json.loads((export / "signature.json").read_text())
    assert signature["card"] == "README.md" and signature["assets"] == []   # the card is no asset


def test_a_license_set_in_the_recipe_is_on_the_card_and_a_users_readme_is_kept(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("# my project\n")
    recipe = _tiny(epochs=1, license="CC-BY-4.0")
    assert recipe.config.card.license == "CC-BY-4.0"
    recipe.fit(out=folder, overwrite=True, steps_per_epoch=1, verbose=0)
    recipe.save(folder)
    assert (folder / "README.md").read_text() == "# my project\n"       # the folder's own file is kept
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert _section(card, "License").strip() == "CC-BY-4.0 (set by the recipe's `[card] license`)."
    assert kdl.recipes.load(folder).config.card.license == "CC-BY-4.0"   # recipe.toml [card]
    assert '[card]\nlicense = "CC-BY-4.0"' in (folder / "recipe.toml").read_text()
    exported = recipe.export(tmp_path / "export", "keras")
    assert (exported / "README.md").read_text(encoding="utf-8") == card


def test_a_text_runs_card_names_its_vocabulary_and_length(tmp_path):
    texts = ["a fine film", "dull and slow", "a joy to watch", "tedious"] * 6
    labels = ["pos", "neg", "pos", "neg"] * 6
    recipe = kdl.recipes.text_classifier({"train": (texts, labels), "test": (texts[:8], labels[:8])},
                                         model="fasttext", epochs=1, max_length=8, vocabulary_size=50)
    run = tmp_path / "text"
    recipe.fit(out=run, verbose=0)
    report = recipe.evaluate()
    recipe.save(run)
    card = (run / "README.md").read_text(encoding="utf-8")
    use = _section(card, "Intended use and limitations")
    assert f"words vocabulary of {recipe.tokenizer.vocabulary_size} tokens" in use
    assert "plus word pairs" in use and "cut or padded to 8 tokens" in use and "Polarity" not in use
    assert "Classes (2, in output order): `neg`, `pos`" in card
    sizes = recipe.data.info.num_examples
    assert f"Examples per split: train {sizes['train']}, validation {sizes['validation']}, test 8" in card
    assert _score(card, "accuracy") == pytest.approx(report["accuracy"], abs=5e-5)
    assert "in-memory arrays" in _section(card, "Reproduce") and "```sh" not in card   # nothing to rerun
