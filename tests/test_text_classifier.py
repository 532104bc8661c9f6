"""The text classification recipe end to end on the active backend: train on an SST-2 subset,
evaluate with the shared scorer, predict on raw strings ("" included), save, load, each backbone,
transfer learning from a preset directory, and the CLI. What every task shares (cross-backend
reload included) is tests/test_contract.py."""

import json

import numpy as np
import pytest

import kdl
from kdl import backend
from kdl.cli import main
from kdl.errors import ConfigError, DataError
from kdl.evaluation import ClassificationReport

SENTENCES = ["a gripping , funny and moving film", "dull , lifeless and far too long", "",
             "the worst movie of the year", "an absolute delight", "ok"]


@pytest.fixture(scope="module")
def sst2_run(shared_data, tmp_path_factory):
    """A small CNN trained on 4,000 SST-2 examples for 3 epochs, evaluated on dev, saved."""
    recipe = kdl.recipes.text_classifier(
        shared_data / "sst2", model="cnn", class_names=["negative", "positive"], limit=4000,
        epochs=3, learning_rate=2e-3, max_length=48, vocabulary_size=8000, embedding=32, filters=32)
    recipe.fit(verbose=0)
    report = recipe.evaluate()
    run_dir = recipe.save(tmp_path_factory.mktemp("runs") / "sst2")
    return recipe, report, run_dir


def test_sst2_subset_trains_well_above_chance(sst2_run):
    recipe, report, _ = sst2_run
    assert isinstance(report, ClassificationReport)
    assert report["accuracy"] >= 0.70, str(report)        # chance is about 0.51
    assert report.meta["num_examples"] == 872 and report.meta["backend"] == backend.name()
    assert report.class_names == ["negative", "positive"]
    assert recipe.data.info.num_examples == {"train": 3600, "validation": 400, "test": 872}


def test_predict_on_raw_strings_including_empty(sst2_run):
    recipe, _, _ = sst2_run
    predictions = recipe.predict(SENTENCES)
    assert predictions.probabilities.shape == (6, 2)
    assert np.isfinite(predictions.probabilities).all()
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert predictions.labels[:2] == ["positive", "negative"]
    single = recipe.predict("")                            # one string, and it is empty
    assert len(single) == 1 and np.isfinite(single.probabilities).all()
    np.testing.assert_allclose(recipe.predict(np.array(SENTENCES)).probabilities,
                               predictions.probabilities)


def test_predict_on_bad_input_is_a_clear_error(sst2_run):
    recipe, _, _ = sst2_run
    with pytest.raises(DataError, match=r"a string or a non-empty list of strings; got list '\[\]'"):
        recipe.predict([])
    with pytest.raises(DataError, match="takes strings; item 1 is int 3"):
        recipe.predict(["fine", 3])


def test_loaded_run_evaluates_like_the_original(sst2_run, shared_data):
    _, report, run_dir = sst2_run
    loaded = kdl.recipes.load(run_dir, data_root=shared_data)
    assert loaded.evaluate()["accuracy"] == pytest.approx(report["accuracy"])


def test_cli_predicts_literal_strings_and_txt_files(sst2_run, tmp_path, capsys):
    _, _, run_dir = sst2_run
    assert main(["predict", str(run_dir), "--text", "an absolute delight", ""]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("an absolute delight\tpositive (")
    (tmp_path / "reviews.txt").write_text("an absolute delight\ndull and far too long\n")
    assert main(["predict", str(run_dir), str(tmp_path / "reviews.txt"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["input"] for row in rows] == [f"{tmp_path / 'reviews.txt'}[{i}]" for i in range(2)]
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\n")
    assert main(["predict", str(run_dir), str(tmp_path / "bad.txt")]) == 1
    assert "bad.txt, line 2: byte 0xff" in capsys.readouterr().err


@pytest.mark.parametrize("recipe_file", ["sst2_cnn", "sst2_transformer"])
def test_recipe_files_train_from_the_command_line(recipe_file, shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", f"recipes/text_classification/{recipe_file}.toml", "--data-root", str(shared_data),
                 "--set", "data.limit=300", "--set", "train.epochs=1", "--quiet", "--out", str(out)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["meta"]["num_examples"] == 300


# --- each backbone, on a tiny in-memory dataset --------------------------------------------------

TINY = ([f"{word} {i}" for i in range(24) for word in ("good", "bad")], [1, 0] * 24)
TINY_OPTIONS = {"transformer": dict(embedding=16, blocks=1, heads=2, intermediate=16, dropout=0.0),
                "fasttext": dict(embedding=16)}   # "cnn" is the sst2_run above, "bert" the preset test


@pytest.mark.parametrize("model", sorted(TINY_OPTIONS))
def test_other_backbones_train_predict_empty_strings_and_reload(model, tmp_path):
    recipe = kdl.recipes.text_classifier(TINY, model=model, epochs=1, max_length=8, batch_size=8,
                                         **TINY_OPTIONS[model])
    recipe.fit(verbose=0)
    probabilities = recipe.predict(["good 3", "", "bad"]).probabilities
    assert np.isfinite(probabilities).all()
    recipe.save(tmp_path)
    np.testing.assert_allclose(kdl.recipes.load(tmp_path).predict(["good 3", "", "bad"]).probabilities,
                               probabilities, atol=1e-6)


def test_transfer_learning_from_a_preset_directory(tmp_path):
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "##s"]
    backbone = keras_hub.models.BertBackbone(len(vocabulary), num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=16)
    backbone.save_to_preset(tmp_path / "tiny_bert")
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)   # an uncased preset
    tokenizer.save_to_preset(tmp_path / "tiny_bert")
    recipe = kdl.recipes.text_classifier(TINY, backbone=str(tmp_path / "tiny_bert"),
                                         epochs=1, max_length=8, batch_size=8, learning_rate=0.0)
    assert recipe.tokenizer.vocabulary == vocabulary          # the preset's own WordPiece vocabulary
    assert recipe.config.data.tokenizer == "wordpiece"
    recipe.fit(verbose=0)
    loaded_backbone = next(layer for layer in recipe.model.layers
                           if isinstance(layer, keras_hub.models.BertBackbone))
    np.testing.assert_allclose(loaded_backbone.get_layer("token_embedding").get_weights()[0],
                               backbone.get_layer("token_embedding").get_weights()[0])
    assert recipe.tokenizer.to_numpy(["good films"]).tolist()[0][:3] == [5, 7, 8]
    probabilities = recipe.predict(["good film", ""]).probabilities
    assert np.isfinite(probabilities).all()
    recipe.save(tmp_path / "run")
    np.testing.assert_allclose(kdl.recipes.load(tmp_path / "run").predict(["good film", ""]).probabilities,
                               probabilities, atol=1e-6)
    with pytest.raises(ConfigError, match="'preset'"):     # the old `[model.options] preset` is gone
        kdl.recipes.text_classifier(TINY, model="bert", preset=str(tmp_path / "tiny_bert"))


def test_config_errors_name_what_was_given():
    with pytest.raises(ConfigError, match="unknown model 'lstm'"):
        kdl.recipes.text_classifier(TINY, model="lstm")
    with pytest.raises(ConfigError, match="has no option 'kernel'"):
        kdl.recipes.text_classifier(TINY, model="cnn", kernel=3)
    recipe = kdl.recipes.text_classifier(TINY, model="transformer", tokenizer="bpe")
    with pytest.raises(ConfigError, match="data.tokenizer must be one of words, wordpiece; got 'bpe'"):
        recipe.fit(verbose=0)
