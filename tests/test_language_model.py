"""The masked-language-model recipe on the active backend: the corpus loader (line files, CSV/TSV,
GLUE folders, extra sources), seeded masking, overfitting a tiny corpus, evaluate (masked-token
accuracy, perplexity), predict (filling in [MASK]s), save/load, the encoder as a backbone
(`transfer_features`), bad inputs, and the CLI. What every task shares (cross-backend reload
included) is tests/test_contract.py."""

import gzip
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import kdl
from kdl.cli import main
from kdl.data import Tokenizer
from kdl.data.corpus import load_corpus
from kdl.errors import ConfigError, DataError
from kdl.evaluation import LanguageModelReport, language_model
from kdl.models.text.backbones import masked_mean

# 20 sentences of 4 words, each word in one sentence only: any masked word follows from the others
COLUMNS = [
    "red blue green black white pink brown grey gold silver amber ivory coral olive navy teal lime plum "
    "rust jade",
    "fox cat dog owl bee ant cow pig hen elk yak emu ram eel bat rat ape cod kid gnu",
    "runs sits eats sees hops digs naps sings swims reads hides waits rests jumps walks flies cries peeks "
    "nods bows",
    "here there today now home away inside outside above below north south early late often rarely twice "
    "daily alone together",
]
WORDS = [column.split() for column in COLUMNS]
SENTENCES = [" ".join(words[i] for words in WORDS) for i in range(20)]
TINY = dict(batch_size=20, max_length=6, vocabulary_size=100, mask_rate=0.3, validation_split=0.0,
            embedding=64, blocks=1, heads=4, intermediate=128, dropout=0.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder of line files: train.txt (the sentences five times) and test.txt (three times: each
    copy gets its own masks)."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "train.txt").write_text("\n".join(SENTENCES * 5) + "\n")
    (folder / "test.txt").write_text("\n\n".join(SENTENCES * 3) + "\n")    # blank lines are skipped
    return folder


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A tiny model trained 150 steps on the corpus, evaluated on its test split, saved."""
    recipe = kdl.recipes.language_model(str(corpus), epochs=30, learning_rate=5e-3, schedule="cosine", **TINY)
    recipe.fit(verbose=0)
    report = recipe.evaluate()
    run_dir = recipe.save(tmp_path_factory.mktemp("runs") / "lm")
    return recipe, report, run_dir


# -- the corpus --------------------------------------------------------------------------------------

def texts(dataset, split):
    return [text.decode() for text in dataset.splits[split].as_numpy_iterator()]


def test_corpus_from_line_files_csv_gzip_and_extra_sources(tmp_path):
    (tmp_path / "notes.txt").write_text("one text\n\n  \nanother text\n" * 5)
    data = load_corpus(str(tmp_path / "notes.txt"))
    assert data.info.num_examples == {"train": 8, "test": 2}       # blank lines left out, 20% held out
    (tmp_path / "reviews.csv").write_text("stars,review\n5,a fine film\n1,\"dull, slow\"\n")
    with gzip.open(tmp_path / "more.en.gz", "wt") as file:
        file.write("a gzip'd line\nanother\n")
    data = load_corpus({"train": ["first text"], "test": ["held out"]},
                       extra_sources=[str(tmp_path / "more.en.gz"), str(tmp_path / "reviews.csv")],
                       text_column="review")
    assert texts(data, "train") == ["first text", "a gzip'd line", "another", "a fine film", "dull, slow"]
    assert texts(data, "test") == ["held out"]              # extra text only ever goes to training


def test_corpus_from_a_glue_folder_reads_its_text_column(shared_data):
    data = load_corpus("sst2", data_root=shared_data, limit=50)
    assert data.info.num_examples == {"train": 50, "test": 50}      # dev.tsv is the test split
    assert all(isinstance(text, str) and text for text in texts(data, "test"))


def test_bad_corpora_are_clear_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="no text to learn from"):
        load_corpus(str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match="no text to learn from"):
        kdl.recipes.language_model([])
    with pytest.raises(DataError, match="too few texts"):
        load_corpus(["just one"])
    with pytest.raises(DataError, match=r"extra source .*empty.txt' holds no text"):
        load_corpus(["a", "b", "c"], extra_sources=[str(tmp_path / "empty.txt")])
    with pytest.raises(DataError, match=r"train texts\[1\] is int 3; expected a string .*pass no labels"):
        load_corpus(["fine", 3])
    with pytest.raises(DataError, match="holds neither train.tsv nor train.txt"):
        load_corpus(str(tmp_path))
    with pytest.raises(DataError, match="no column 'review'"):
        (tmp_path / "x.csv").write_text("text\nhello\n")
        load_corpus(str(tmp_path / "x.csv"), text_column="review")


# -- masking ------------------------------------------------------------------------------------------

def test_masking_is_seeded_new_each_epoch_and_skips_special_tokens(corpus):
    recipe = kdl.recipes.language_model(str(corpus), **TINY)
    test = recipe.batches("test")
    first = [labels for _, labels in test.as_numpy_iterator()]
    again = [labels for _, labels in kdl.recipes.language_model(str(corpus), seed=1, **TINY)
             .batches("test").as_numpy_iterator()]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))       # evaluation masks: any seed
    train = recipe.batches("train", shuffle=True)
    epochs = [[(x["token_ids"], y) for x, y in train.as_numpy_iterator()] for _ in range(2)]
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(*epochs))   # new masks every epoch
    same = kdl.recipes.language_model(str(corpus), **TINY).batches("train", shuffle=True)
    assert all(np.array_equal(a[1], y) for a, (_, y) in zip(epochs[0], same.as_numpy_iterator()))
    x, labels = next(recipe.batches("train").as_numpy_iterator())
    assert x["mask_positions"].shape[1] == recipe.max_masks == math.ceil(6 * 0.3) + 1
    picked = labels[labels != 0]
    assert len(picked) and not set(picked.tolist()) & set(recipe.special_ids)
    mask_id = recipe.tokenizer.token_id("[MASK]")
    assert (x["token_ids"] == mask_id).any()                                 # most picked become [MASK]
    share = (labels != 0).sum() / (x["token_ids"] > 0).sum()
    assert 0.1 < share < 0.5                                                 # about mask_rate = 0.3


# -- training, evaluation, predict ---------------------------------------------------------------------

def test_overfits_a_tiny_corpus(trained):
    """Near 1, not 1: BERT's rule puts a random word (of another sentence) at 10% of the picked
    tokens, and a few sentences have more than one word picked; chance is 1/80."""
    recipe, report, _ = trained
    assert isinstance(report, LanguageModelReport)
    assert report["accuracy"] >= 0.85, str(report)
    assert report["perplexity"] < 2.0
    assert report["perplexity"] == pytest.approx(math.exp(report["cross_entropy"]))
    assert report.meta["num_examples"] >= 40 and report.meta["num_texts"] == 60
    assert recipe.history.history["masked_accuracy"][-1] > 0.8


def test_evaluate_is_reproducible_and_scored_by_the_shared_function(trained):
    recipe, report, _ = trained
    assert recipe.evaluate() == report                                       # the same masks every time
    result, references = recipe.predict_split("test")
    by_hand = language_model(references, result.probabilities, tokens=recipe.tokens)
    assert by_hand.metrics == pytest.approx(report.metrics, rel=1e-6)
    assert result.texts[0].count("[MASK]") == result.mask_counts[0]
    row = report.examples[0]
    assert set(row) == {"context", "reference", "prediction", "probability"} and "[MASK]" in row["context"]


def test_a_fresh_process_scores_the_saved_run_the_same(trained, tmp_path):
    """The test masks do not depend on what the process did before (fit seeds TensorFlow's global
    random seed; a process that only loads the run does not). A fresh process also builds the
    encoder from the loaded model (its operation names are not uniquified by earlier models)."""
    _, report, run_dir = trained
    script = ("import sys, keras, kdl; run = kdl.recipes.load(sys.argv[1]); "
              "run.evaluate().to_json(sys.argv[2]); "
              "keras.Model(run.transfer_inputs(), run.transfer_features())")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", script, str(run_dir), str(tmp_path / "report.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = kdl.evaluation.Report.from_json(tmp_path / "report.json")
    assert fresh.meta["num_examples"] == report.meta["num_examples"]
    assert fresh.metrics == pytest.approx(report.metrics, rel=1e-5)
    assert [row["context"] for row in fresh.examples] == [row["context"] for row in report.examples]


def test_predict_fills_masks(trained):
    recipe, _, _ = trained
    result = recipe.predict(["red fox [MASK] here", "[MASK] cat sits [mask]", "RED [MASK] RUNS HERE"])
    assert result.filled() == ["red fox runs here", "blue cat sits there", "RED fox RUNS HERE"]
    assert result.mask_counts.tolist() == [1, 2, 1]
    assert result.outputs.shape == (4, recipe.tokenizer.vocabulary_size)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    rows = result.rows()
    assert rows[0]["filled"] == "red fox runs here" and len(rows[0]["masks"][0]) == 5    # predict.top_k
    assert rows[0]["masks"][0][0]["token"] == "runs" and rows[0]["masks"][0][0]["probability"] > 0.5
    assert all(m["token"] not in ("[MASK]", "[UNK]", "") for r in rows for ms in r["masks"] for m in ms)
    assert result.lines(1)[1] == "blue cat sits there\tblue ({:.3f}) | there ({:.3f})".format(
        *[r["masks"][i][0]["probability"] for r in rows[1:2] for i in range(2)])
    assert len(recipe.predict("[MASK] fox", top_k=2).rows()[0]["masks"][0]) == 2
    assert result.score(["runs", "blue", "there", "fox"])["accuracy"] == 1.0


def test_predict_bad_inputs_are_clear_errors(trained):
    recipe, _, _ = trained
    with pytest.raises(DataError, match=r"text 1 \('red fox runs here'\) has no \[MASK\]; mark each word"):
        recipe.predict(["[MASK] fox", "red fox runs here"])
    with pytest.raises(DataError, match=r"has a \[MASK\] after its first 6 tokens"):
        recipe.predict("red fox runs here and there [MASK]")
    with pytest.raises(DataError, match="a string or a non-empty list of strings"):
        recipe.predict([])
    with pytest.raises(ConfigError, match="top k must be a whole number from 1 to 80"):
        recipe.predict("[MASK] fox", top_k=0)
    with pytest.raises(ConfigError, match="has no option 'beam_size'; its options: top_k"):
        recipe.predict("[MASK] fox", beam_size=2)
    with pytest.raises(DataError, match=r"references \['zebra'\] are not tokens of the vocabulary"):
        recipe.predict("[MASK] fox").score(["zebra"])


def test_bad_settings_are_clear_errors(corpus):
    with pytest.raises(ConfigError, match="data.ngrams must be 1 for a language model"):
        kdl.recipes.language_model(str(corpus), ngrams=2).tokenizer
    with pytest.raises(ConfigError, match="mask_rate must be less than 1"):
        kdl.recipes.language_model(str(corpus), mask_rate=1.0)
    with pytest.raises(ConfigError, match="unknown option 'layers'"):
        kdl.recipes.language_model(str(corpus), layers=2)


# -- the run directory, the encoder as a backbone, the CLI ---------------------------------------------

def test_save_load_round_trip_predicts_the_same(trained):
    recipe, report, run_dir = trained
    texts_ = ["red fox [MASK] here", "[MASK] cat sits [MASK]"]
    loaded = kdl.recipes.load(run_dir)
    assert loaded.tokenizer.vocabulary == recipe.tokenizer.vocabulary and loaded.input_mismatch() is None
    np.testing.assert_allclose(loaded.predict(texts_).outputs, recipe.predict(texts_).outputs, atol=1e-6)
    assert loaded.evaluate().metrics == pytest.approx(report.metrics, rel=1e-5)
    # the vocabulary is the text classifier's kind: one reads it as its own tokenizer
    data = recipe.config.data
    words = Tokenizer.load(run_dir / "vocabulary.txt", kind=data.tokenizer, max_length=data.max_length,
                           ngrams=data.ngrams)
    np.testing.assert_array_equal(words.to_numpy(SENTENCES), recipe.tokenizer.to_numpy(SENTENCES))


def test_a_vocabulary_without_mask_is_refused(trained, tmp_path):
    _, _, run_dir = trained
    import shutil

    copy = shutil.copytree(run_dir, tmp_path / "copy")
    lines = (copy / "vocabulary.txt").read_text().splitlines()
    (copy / "vocabulary.txt").write_text("\n".join(line for line in lines if line != "[MASK]") + "\n")
    with pytest.raises(ConfigError, match=r"has no \[MASK\] token"):
        kdl.recipes.load(copy)


def test_transfer_features_are_the_masked_mean_of_the_sequence_features(trained):
    recipe, _, run_dir = trained
    for model_recipe in (recipe, kdl.recipes.load(run_dir)):
        assert model_recipe.modality == "text" and model_recipe.learned == ("tokenizer",)
        features = model_recipe.transfer_features()
        token_ids = model_recipe.transfer_inputs()
        assert token_ids is model_recipe.model.get_layer("token_ids").output
        assert tuple(features.shape) == (None, 64)
        encoder = keras.Model(token_ids, features)
        sequence = keras.Model(token_ids, model_recipe.model.get_layer("sequence_features").output)
        ids = model_recipe.tokenizer.to_numpy(SENTENCES[:3] + [""])
        pooled = encoder.predict(ids, verbose=0)
        tensors = [keras.ops.convert_to_tensor(array) for array in (sequence.predict(ids, verbose=0), ids)]
        expected = keras.ops.convert_to_numpy(masked_mean(*tensors))
        np.testing.assert_allclose(pooled, expected, atol=1e-5)
        assert np.isfinite(pooled).all() and not pooled[3].any()          # an empty text: zeros


def test_a_text_classifier_starts_from_the_language_model_run(trained):
    _, _, run_dir = trained
    labels = ["neg", "pos"] * 20
    classifier = kdl.recipes.text_classifier((SENTENCES * 2, labels), model="transformer", epochs=1,
                                             batch_size=8)
    classifier.config.model.backbone = str(run_dir)
    classifier.fit(verbose=0)
    assert [tensor.name for tensor in classifier.model.inputs] == ["token_ids"]
    assert classifier.tokenizer.vocabulary == kdl.recipes.load(run_dir).tokenizer.vocabulary
    assert len(classifier.predict(SENTENCES[:2])) == 2


def test_cli_predicts_and_evaluates(trained, tmp_path, capsys):
    _, report, run_dir = trained
    assert main(["predict", str(run_dir), "--text", "red fox [MASK] here", "--top-k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["input"] == "red fox [MASK] here" and rows[0]["filled"] == "red fox runs here"
    assert len(rows[0]["masks"][0]) == 2
    assert main(["predict", str(run_dir), "red fox [MASK] here"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("red fox [MASK] here\tred fox runs here\truns (") and line.count("(") == 5
    assert main(["predict", str(run_dir), "--text", "no mask here"]) == 1
    assert "has no [MASK]" in capsys.readouterr().err
    (tmp_path / "more.txt").write_text("\n".join(SENTENCES) + "\n")
    assert main(["evaluate", str(run_dir), "--data", str(tmp_path / "more.txt"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["meta"]["split"] == "all" and scored["metrics"]["accuracy"] >= 0.7
