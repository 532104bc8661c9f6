"""The audio classification recipe on the active backend: a small set learned exactly, predict on
waveforms and WAV files (stereo, 44.1 kHz, too long), save, load. What every task shares
(cross-backend reload included) is tests/test_contract.py."""

import numpy as np
import pytest
from harness import tones
from test_data_audio import tone, write_wav

import kdl
from kdl.errors import ConfigError, DataError
from kdl.evaluation import ClassificationReport

RATE = 4000
FREQUENCIES = {"low": 250, "mid": 700, "high": 1500}


def clips(count, seed=0):
    """`count` tones per class, random phase, length 0.15-0.3 s, some noise: (waveforms, labels)."""
    return tones(count, RATE, tuple(FREQUENCIES.values()), seed)


@pytest.fixture(scope="module")
def tones_run(tmp_path_factory):
    waves, labels = clips(8)
    recipe = kdl.recipes.audio_classifier(
        {"train": (waves, labels), "test": clips(3, seed=1)}, class_names=list(FREQUENCIES),
        sample_rate=RATE, max_seconds=0.25, epochs=12, batch_size=8, validation_split=0.0,
        filters=[8, 16], dense=16, dropout=0.0, time_masks=0, freq_masks=0, mel_bins=16,
        learning_rate=5e-3)
    recipe.fit(verbose=0)
    report = recipe.evaluate()
    run_dir = recipe.save(tmp_path_factory.mktemp("runs") / "tones")
    return recipe, report, run_dir, (waves, labels)


def test_small_set_is_learned_exactly(tones_run):
    recipe, report, _, (waves, labels) = tones_run
    assert np.array_equal(recipe.predict(waves).class_ids, labels)
    assert isinstance(report, ClassificationReport) and report["accuracy"] == 1.0, str(report)
    assert report.meta["task"] == "audio_classifier" and report.class_names == list(FREQUENCIES)


def test_predict_on_wav_files_stereo_44100_and_too_long(tones_run, tmp_path):
    recipe, _, _, _ = tones_run
    mono = write_wav(tmp_path / "mono.wav", tone(700, 0.2, rate=RATE), rate=RATE)
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([tone(1500, 0.2, 44100)] * 2, 1), rate=44100,
                       channels=2)
    long = write_wav(tmp_path / "long.wav", tone(250, 2.0, rate=RATE), rate=RATE)   # centre-cropped
    predictions = recipe.predict([mono, stereo, long, tone(250, 0.2, rate=RATE)])
    assert predictions.labels == ["mid", "high", "low", "low"]
    assert predictions.probabilities.shape == (4, 3)
    single = recipe.predict(str(mono))
    assert single.labels == ["mid"]


def test_bad_predict_inputs_are_clear_errors(tones_run, tmp_path):
    recipe, _, _, _ = tones_run
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(DataError, match=r"corrupt\.wav"):
        recipe.predict([corrupt])
    with pytest.raises(DataError, match=r"empty\.wav' is empty"):
        recipe.predict([write_wav(tmp_path / "empty.wav", np.zeros(0))])
    with pytest.raises(DataError, match=r"input 0 has shape \(2, 2\)"):
        recipe.predict([np.zeros((2, 2))])


def test_unknown_model_option_and_missing_data(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        kdl.recipes.audio_classifier(model="resnet")
    with pytest.raises(ConfigError, match="has no option 'blocks'"):
        kdl.recipes.audio_classifier(blocks=2)
    with pytest.raises(DataError, match="nowhere"):
        kdl.recipes.audio_classifier(str(tmp_path / "nowhere")).fit(verbose=0)


def test_fsdd_recipe_file_on_a_subset(shared_data):
    recipe = kdl.recipes.load("recipes/speech/fsdd_digits_classifier.toml",
                              ["data.limit=200", "data.class_names=[\"0\", \"1\"]"], data_root=shared_data)
    assert recipe.data.info.num_examples == {"train": 180, "validation": 20, "test": 60}
    assert recipe.build_model().input_shape == (None, 8000)
    assert kdl.recipes.audio_classifier().config.data.source == "fsdd/recordings"
