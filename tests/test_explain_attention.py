"""Attention maps (kdl.explain.attention) of a tiny Transformer text classifier and a tiny
translator, untrained (their query kernels scaled up so the maps are far from uniform): shapes,
rows that sum to 1 over the real tokens, outputs unchanged by recording, the same maps from the
saved runs on the next backend, and the clear error for models without attention."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import next_backend

import kdl
from kdl.errors import ConfigError
from kdl.explain import attention as att

TOLERANCE = 1e-5
TEXTS = ["a fine film", "dull and slow", "great fun", "a mess", "lovely acting", "boring plot"] * 4
LABELS = ["pos", "neg"] * 12
SOURCES = ["a cat", "a dog", "two cats", "one dog", "a bird", "the man"] * 4
TARGETS = ["eine Katze", "ein Hund", "zwei Katzen", "ein Hund", "ein Vogel", "der Mann"] * 4
CLASSIFIER_INPUTS = ["a fine plot", "dull film and a mess", ""]
TRANSLATOR_INPUTS = ["a cat", "two dogs", "a bird"]


def _sharpen(model, factor=4.0):
    """Scale every attention layer's query kernel: random small weights attend almost uniformly."""
    for layer in att.attention_layers(model):
        kernel = layer._query_dense.kernel
        kernel.assign(keras.ops.convert_to_numpy(kernel) * factor)


@pytest.fixture(scope="module")
def classifier():
    recipe = kdl.recipes.text_classifier((TEXTS, LABELS), model="transformer", batch_size=8, max_length=8,
                                         vocabulary_size=40, embedding=16, blocks=2, heads=2, intermediate=16)
    keras.utils.set_random_seed(0)
    recipe.model = recipe.build_model()
    _sharpen(recipe.model)
    return recipe


@pytest.fixture(scope="module")
def translator():
    recipe = kdl.recipes.translator((SOURCES, TARGETS), data={"batch_size": 8}, max_length=8,
                                    vocabulary_size=60, encoder_layers=1, decoder_layers=2, width=16,
                                    heads=2, intermediate=16, beam_size=1)
    keras.utils.set_random_seed(0)
    recipe.model = recipe.build_model()
    _sharpen(recipe.model)
    return recipe


def _check_rows(weights, query_real, key_real):
    """weights (N, layers, heads, T, S): rows of real queries sum to 1 over the real keys, padding
    keys get nothing, padding rows are zero."""
    rows = query_real[:, None, None, :, None]                                   # (N, 1, 1, T, 1)
    keys = key_real[:, None, None, None, :]                                     # (N, 1, 1, 1, S)
    sums = weights.sum(axis=-1)                                                 # (N, layers, heads, T)
    np.testing.assert_allclose(sums[np.broadcast_to(rows[..., 0], sums.shape)], 1.0, atol=1e-5)
    assert np.abs(weights * ~keys).max() < 1e-6
    assert np.abs(weights * ~rows).max() == 0.0
    assert (weights >= 0).all()


def test_applies_to_models_with_attention(classifier, translator):
    assert att.applies(classifier.model) and att.applies(translator.model)
    assert len(att.attention_layers(classifier.model)) == 2                    # one per encoder block
    assert len(att.cross_layers(translator.model)) == 2                        # one per decoder block
    cnn = kdl.recipes.text_classifier((TEXTS, LABELS), model="cnn", max_length=8, vocabulary_size=40,
                                      embedding=8, filters=4)
    assert not att.applies(cnn.build_model())


def test_text_classifier_self_attention(classifier):
    e = att.attention(classifier, CLASSIFIER_INPUTS, names=["one", "two", "empty"])
    ids = classifier.prepare_inputs(CLASSIFIER_INPUTS)
    assert (e.method, e.modality) == ("attention", "attention")
    assert e.attributions.shape == (3, 2, 2, 8, 8) and e.attributions.dtype == np.float32
    np.testing.assert_array_equal(e.inputs, ids)
    assert e.tokens == classifier.tokenizer.tokens(ids) and e.tokens[2] == [""] * 8
    assert e.tokens[0][:3] == ["a", "fine", "plot"] and e.target_tokens is None
    real = ids != 0
    _check_rows(e.attributions, real, real)
    assert not e.attributions[2].any()                                         # "" is all padding
    assert e.attributions[:2].std() > 0.05, e.attributions[:2].std()       # far from uniform
    result = classifier.predict(CLASSIFIER_INPUTS)
    assert e.predicted == e.target == list(result.labels)
    np.testing.assert_allclose(e.probability, result.outputs.max(axis=1), atol=1e-5)
    assert e.names == ["one", "two", "empty"]
    layers = e.settings["layers"]               # e.g. "transformer_encoder/self_attention_layer"
    assert len(set(layers)) == 2 and all(path.endswith("/self_attention_layer") for path in layers)


def test_translator_cross_attention(translator):
    e = att.attention(translator, TRANSLATOR_INPUTS, beam_size=1)
    source_ids = translator.source_ids(TRANSLATOR_INPUTS)                     # (3, 8)
    target_ids, log_probabilities = translator.decode(source_ids, beam_size=1)  # (3, 10)
    assert e.attributions.shape == (3, 2, 2, 9, 8) and e.attributions.dtype == np.float32
    np.testing.assert_array_equal(e.inputs, source_ids)
    assert e.predicted == e.target == translator.translate(TRANSLATOR_INPUTS, beam_size=1)
    np.testing.assert_allclose(e.probability, np.exp(log_probabilities), rtol=1e-5)
    assert e.tokens == translator.tokenizers["source"].tokens(source_ids)
    produced = att.produced_rows(target_ids)                                    # (3, 9)
    assert [[token != "" for token in row] for row in e.target_tokens] == produced.tolist()
    assert [["" if token == "[PAD]" else token for token in row] for row in e.target_tokens] == \
        translator.tokenizers["target"].tokens(target_ids[:, 1:])
    assert e.settings["layers"] == ["decoder_0/cross_attention", "decoder_1/cross_attention"]
    assert e.settings["beam_size"] == 1
    assert produced.any(axis=1).all()
    _check_rows(e.attributions, produced, source_ids != 0)
    assert e.attributions.std() > 0.05, e.attributions.std()


def test_translator_rows_are_the_steps_that_produced_each_token(translator):
    """The teacher-forced pass gives each produced token the log-probability decoding gave it."""
    source_ids = translator.source_ids(TRANSLATOR_INPUTS)
    target_ids, log_probabilities = translator.decode(source_ids, beam_size=1)
    logits = translator.model({"source_ids": source_ids, "target_ids": target_ids[:, :-1]}, training=False)
    log_softmax = keras.ops.convert_to_numpy(keras.ops.log_softmax(logits, axis=-1))   # (3, 9, V)
    produced = target_ids[:, 1:]                                                # (3, 9)
    per_token = np.take_along_axis(log_softmax, produced[..., None], axis=-1)[..., 0]
    rows = att.produced_rows(target_ids)
    np.testing.assert_allclose((per_token * rows).sum(axis=1), log_probabilities, atol=1e-4)
    assert att.produced_rows([[2, 7, 0, 9, 3, 0]]).tolist() == [[True, True, True, True, False]]


def test_recording_leaves_outputs_and_layers_unchanged(classifier, translator):
    ids = classifier.prepare_inputs(CLASSIFIER_INPUTS)
    plain = keras.ops.convert_to_numpy(classifier.model(ids, training=False))
    recorded, _, _ = att.self_attention(classifier.model, ids)
    np.testing.assert_allclose(recorded, plain, atol=TOLERANCE)
    source_ids = translator.source_ids(TRANSLATOR_INPUTS)
    target_ids, _ = translator.decode(source_ids, beam_size=1)
    inputs = {"source_ids": source_ids, "target_ids": target_ids[:, :-1]}
    plain = keras.ops.convert_to_numpy(translator.model(inputs, training=False))
    with att.recording(att.attention_layers(translator.model)) as kept:         # self and cross
        recorded = keras.ops.convert_to_numpy(translator.model(inputs, training=False))
    assert len(kept) == 5                       # encoder self, then each decoder's self and cross
    np.testing.assert_allclose(recorded, plain, atol=TOLERANCE)

    layers = att.attention_layers(classifier.model)
    flash = [layer._flash_attention for layer in layers]
    with pytest.raises(RuntimeError, match="stop"):
        with att.recording(layers):
            assert all("_compute_attention" in vars(layer) for layer in layers)
            raise RuntimeError("stop")
    assert not any("_compute_attention" in vars(layer) for layer in layers)
    assert [layer._flash_attention for layer in layers] == flash


def test_models_without_attention_get_a_clear_error():
    cnn = kdl.recipes.text_classifier((TEXTS, LABELS), model="cnn", max_length=8, vocabulary_size=40,
                                      embedding=8, filters=4)
    with pytest.raises(ConfigError, match="no model yet"):
        att.attention(cnn, ["a fine film"])
    cnn.model = cnn.build_model()
    with pytest.raises(ConfigError, match=r"attention maps need a Transformer: task 'text_classifier' "
                                          r"with model 'cnn' has no multi-head attention layers"):
        att.attention(cnn, ["a fine film"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 8, 8, 1)).astype("uint8")
    image = kdl.recipes.image_classifier((images, np.arange(12) % 2), filters=[4], dense=8)
    image.model = image.build_model()
    with pytest.raises(ConfigError, match=r"attention maps need a Transformer \(.*\); got task "
                                          r"'image_classifier' with model 'cnn'"):
        att.attention(image, images[:2])


_ON_OTHER_BACKEND = """
import json, sys, numpy as np, kdl
from kdl.explain import attention as att
folder = sys.argv[1]
texts = json.load(open(f"{folder}/inputs.json"))
clf = att.attention(kdl.recipes.load(f"{folder}/classifier"), texts["classifier"])
mt = kdl.recipes.load(f"{folder}/translator")
own = att.attention(mt, texts["translator"], beam_size=1)
forced, _ = att.cross_attention(mt.model, own.inputs, np.load(f"{folder}/target_ids.npy"))
np.savez(f"{folder}/other.npz", classifier=clf.attributions, translator=own.attributions, forced=forced,
         probability=clf.probability, translation_probability=own.probability)
json.dump({"classes": clf.predicted, "translations": own.predicted}, open(f"{folder}/other.json", "w"))
"""


def test_same_maps_from_the_saved_runs_on_the_next_backend(classifier, translator, tmp_path):
    """Both runs saved here, explained again in one process on the next backend: the same maps
    (float32, 1e-5). The translator is decoded greedily on each side; its maps are also compared
    for this backend's translation forced on the other, so they are compared on the same target."""
    here = keras.backend.backend()
    other = next_backend(here)
    classifier.save(tmp_path / "classifier")
    translator.save(tmp_path / "translator")
    clf = att.attention(classifier, CLASSIFIER_INPUTS)
    mt = att.attention(translator, TRANSLATOR_INPUTS, beam_size=1)
    target_ids, _ = translator.decode(mt.inputs, beam_size=1)
    np.save(tmp_path / "target_ids.npy", target_ids)
    (tmp_path / "inputs.json").write_text(json.dumps({"classifier": CLASSIFIER_INPUTS,
                                                      "translator": TRANSLATOR_INPUTS}))
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", _ON_OTHER_BACKEND, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{other} could not explain the runs:\n{done.stderr[-3000:]}"
    theirs = np.load(tmp_path / "other.npz")
    said = json.loads((tmp_path / "other.json").read_text())

    differences = {name: float(np.abs(theirs[name] - mine).max()) for name, mine in [
        ("classifier", clf.attributions), ("forced", mt.attributions), ("translator", mt.attributions)]}
    print(f"{here} -> {other}: max abs differences {differences}")
    assert differences["forced"] <= TOLERANCE and differences["classifier"] <= TOLERANCE, differences
    assert said["classes"] == clf.predicted
    np.testing.assert_allclose(theirs["probability"], clf.probability, atol=TOLERANCE)
    assert said["translations"] == mt.predicted, "greedy decoding gave another translation"
    assert differences["translator"] <= TOLERANCE, differences
    np.testing.assert_allclose(theirs["translation_probability"], mt.probability, rtol=1e-4)
