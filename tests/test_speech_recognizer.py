"""The CTC speech recognition recipe on the active backend: a small set of synthetic "words"
(tone sequences) learned exactly, transcribe WAV files and waveforms, save, load, and clear
errors for bad input. What every task shares (cross-backend reload included) is
tests/test_contract.py."""

import json

import keras
import numpy as np
import pytest
from test_data_audio import write_wav

import kdl
from kdl import backend
from kdl.data.audio import fit_length
from kdl.errors import ConfigError, DataError
from kdl.evaluation import SpeechReport

RATE = 4000
LETTERS = {"a": 300, "b": 800, "c": 1500}     # each letter a 0.1 s tone of its own pitch


def utterance(text, rng):
    """A waveform saying `text`: each letter a tone, letters and words separated by silence."""
    parts = [np.zeros(int(rng.uniform(0.02, 0.06) * RATE))]
    for letter in text:
        if letter == " ":
            parts.append(np.zeros(int(0.12 * RATE)))
            continue
        t = np.arange(int(rng.uniform(0.08, 0.11) * RATE)) / RATE
        parts += [0.5 * np.sin(2 * np.pi * LETTERS[letter] * t), np.zeros(int(0.04 * RATE))]
    return np.concatenate(parts).astype("float32")


def utterances(texts, seed=0):
    rng = np.random.default_rng(seed)
    return [utterance(text, rng) for text in texts], list(texts)


TEXTS = ["a", "b", "c", "ab", "ba", "ca", "abc", "cab", "acb", "bca", "cb", "bc", "ac b", "b ca"]


@pytest.fixture(scope="module")
def letters_run(tmp_path_factory):
    train = utterances(TEXTS * 2)
    recipe = kdl.recipes.speech_recognizer(
        {"train": train, "test": utterances(TEXTS[:6], seed=1)}, sample_rate=RATE, max_seconds=0.6,
        epochs=40, batch_size=14, validation_split=0.0, width=32, channels=8, dropout=0.0, hop_ms=20.0,
        time_masks=0, freq_masks=0, mel_bins=16, learning_rate=1e-2)
    recipe.fit(verbose=0)
    report = recipe.evaluate()
    run_dir = recipe.save(tmp_path_factory.mktemp("runs") / "letters")
    return recipe, report, run_dir, train


def test_small_set_is_learned_exactly(letters_run):
    recipe, report, _, (waves, texts) = letters_run
    assert recipe.characters == " abc"
    assert recipe.transcribe(waves) == texts
    recipe.config.model.beam_width = 2
    assert recipe.transcribe(waves[7:8], decoder="beam_search") == texts[7:8]
    assert isinstance(report, SpeechReport) and report["wer"] == 0.0 and report["cer"] == 0.0, str(report)
    assert report.meta["task"] == "speech_recognizer" and report.examples[0]["hypothesis"] == "a"


def test_transcribe_wav_files_stereo_and_44100(letters_run, tmp_path):
    from scipy.signal import resample_poly

    recipe, _, _, (waves, texts) = letters_run
    mono = write_wav(tmp_path / "mono.wav", waves[7], rate=RATE)
    wave_44k = resample_poly(waves[4], 441, 40)                      # 4 kHz -> 44.1 kHz
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([wave_44k, wave_44k], 1), rate=44100, channels=2)
    assert recipe.transcribe([mono, stereo]) == [texts[7], texts[4]]
    assert recipe.transcribe(str(mono)) == [texts[7]]


def test_bad_inputs_are_clear_errors(letters_run, tmp_path):
    recipe, _, _, _ = letters_run
    long = write_wav(tmp_path / "long.wav", np.zeros(RATE), rate=RATE)
    with pytest.raises(DataError, match=r"long\.wav: the clip has 4000 samples, more than the maximum 2400"):
        recipe.transcribe([long])
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    with pytest.raises(DataError, match=r"corrupt\.wav"):
        recipe.transcribe([corrupt])
    with pytest.raises(DataError, match=r"empty\.wav' is empty"):
        recipe.transcribe([write_wav(tmp_path / "empty.wav", np.zeros(0), rate=RATE)])


def test_transcripts_outside_the_vocabulary(tmp_path):
    waves, _ = utterances(["a", "b"])
    recipe = kdl.recipes.speech_recognizer((waves * 3, ["a", "b", "a", "b", "a", "d!"]), sample_rate=RATE,
                                           max_seconds=0.6, characters="ab")
    with pytest.raises(DataError, match=r"example 5: transcript 'd!' has characters \['!', 'd'\] outside "
                                        r"the vocabulary 'ab'"):
        recipe.characters
    (tmp_path / "wavs").mkdir()
    rows = []
    for i, (text, wave) in enumerate(zip(["ab", "ba", "abé"], utterances(["ab", "ba", "ab"])[0])):
        write_wav(tmp_path / "wavs" / f"u{i}.wav", wave, rate=RATE)
        rows.append(f"u{i}|{text}|{text}")
    (tmp_path / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    recipe = kdl.recipes.speech_recognizer(str(tmp_path), sample_rate=RATE, max_seconds=0.6, characters="ab")
    with pytest.raises(DataError, match=r"metadata\.csv, line 3 \(u2\.wav\): transcript 'abé' has "
                                        r"characters \['é'\]"):
        recipe.characters


def test_a_bad_front_end_is_a_clear_error_that_leaves_no_run_folder(tmp_path):
    recipe = kdl.recipes.speech_recognizer(utterances(["a", "b"] * 3), sample_rate=RATE, max_seconds=0.6,
                                           characters="ab", frontend="vgg")
    with pytest.raises(ConfigError, match='model.options.frontend must be "conv" or "cnn"; got \'vgg\''):
        recipe.fit(out=tmp_path / "runs" / "bad", verbose=0)
    assert not (tmp_path / "runs" / "bad").exists()


def test_options_and_decoder_checks():
    with pytest.raises(ConfigError, match="unknown model 'lstm'"):
        kdl.recipes.speech_recognizer(model="lstm")
    with pytest.raises(ConfigError, match="has no option 'filters'"):
        kdl.recipes.speech_recognizer(filters=[8])
    with pytest.raises(ConfigError, match='model.options.frontend must be "conv" or "cnn"; got \'vgg\''):
        kdl.recipes.speech_recognizer(utterances(["a", "b"] * 3), sample_rate=RATE, max_seconds=0.6,
                                      characters="ab", frontend="vgg").build_model()
    recipe = kdl.recipes.speech_recognizer(utterances(["a", "b"] * 3), sample_rate=RATE, max_seconds=0.6,
                                           characters="ab", decoder="viterbi")
    log_probs = np.log(np.full((1, 5, 3), 1 / 3, "float32"))
    with pytest.raises(ConfigError, match="model.decoder must be one of greedy, beam_search, lexicon; "
                                          "got 'viterbi'"):
        recipe.decode(log_probs)
    assert recipe.decode(np.log(np.eye(3, dtype="float32")[[1, 0, 2, 2]][None] + 1e-6), "greedy") == ["ab"]
    with pytest.raises(ConfigError, match="no model yet"):
        recipe.transcribe([np.zeros(100)])


def test_the_cnn_front_end_learns_the_small_set_and_reloads(tmp_path):
    """frontend = "cnn" (conv, batch norm and frequency pooling; the new-voices recipe's) trains to
    the same exact transcripts as the default front-end, and a saved run transcribes the same."""
    train = utterances(TEXTS * 2)
    recipe = kdl.recipes.speech_recognizer(
        {"train": train, "test": utterances(TEXTS[:6], seed=1)}, sample_rate=RATE, max_seconds=0.6,
        epochs=40, batch_size=14, validation_split=0.0, width=32, channels=8, dropout=0.0, hop_ms=20.0,
        time_masks=0, freq_masks=0, mel_bins=16, learning_rate=1e-2, frontend="cnn")
    recipe.fit(verbose=0)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in recipe.model.layers) == 3
    waves, texts = train
    assert recipe.transcribe(waves) == texts
    loaded = kdl.recipes.load(recipe.save(tmp_path / "run"))
    assert loaded.config.model.options["frontend"] == "cnn" and loaded.transcribe(waves[:6]) == texts[:6]


def test_saved_run_holds_its_characters_and_transcribes_the_same(letters_run):
    recipe, _, run_dir, (waves, texts) = letters_run
    assert json.loads((run_dir / "characters.json").read_text()) == [" ", "a", "b", "c"]
    batch = np.stack([fit_length(w, 2400) for w in waves[:8]])
    assert kdl.recipes.load(run_dir).transcribe(list(batch)) == texts[:8]


def test_export_transcribes_with_its_characters_file(letters_run, tmp_path):
    """What a server gets (the exported model, signature.json, characters.json) transcribes the
    utterances with plain numpy greedy CTC decoding: the features are inside the exported model."""
    recipe, _, _, (waves, texts) = letters_run
    format = "saved_model" if backend.name() == "jax" else "onnx"   # jax's ONNX path is through tensorflow
    out = recipe.export(tmp_path / "export", format)
    signature = json.loads((out / "signature.json").read_text())
    assert signature["assets"] == ["characters.json", "words.txt"]
    assert "CTC blank" in signature["output_meaning"]
    assert signature["inputs"][0]["shape"] == [None, 2400] and signature["sample_rate"] == RATE
    characters = json.loads((out / "characters.json").read_text())
    batch = np.stack([fit_length(w, 2400) for w in waves[:8]])
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        log_probabilities = session.run(None, {session.get_inputs()[0].name: batch})[0]
    else:
        import tensorflow as tf

        serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
        name = signature["inputs"][0]["name"]
        log_probabilities = next(iter(serve(**{name: tf.constant(batch)}).values())).numpy()
    np.testing.assert_allclose(log_probabilities, recipe.model.predict(batch, verbose=0), atol=1e-4)
    transcripts = []
    for best in log_probabilities.argmax(-1):                         # (frames,) ids
        kept = [i for j, i in enumerate(best) if i != 0 and (j == 0 or i != best[j - 1])]
        transcripts.append("".join(characters[i - 1] for i in kept).strip())
    assert transcripts == texts[:8]


def test_digit_strings_recipe_file_builds_on_a_subset(shared_data):
    recipe = kdl.recipes.load("recipes/speech/fsdd_digit_strings_ctc.toml", ["data.utterances=[40, 10]"],
                              data_root=shared_data)
    assert recipe.data.info.num_examples == {"train": 36, "validation": 4, "test": 10}
    assert set(recipe.characters) <= set("efghinorstuvwxz ")
    recipe.model = recipe.build_model()
    waveforms, ids = next(iter(recipe.batches("train")))      # the CTC frame check passes
    assert waveforms.shape == (16, 24000) and ids.shape[1] <= recipe.model.output_shape[1]


def test_cli_transcribe_and_predict(letters_run, tmp_path, capsys):
    from kdl.cli import main

    _, _, run_dir, (waves, texts) = letters_run
    path = write_wav(tmp_path / "u.wav", waves[7], rate=RATE)
    assert main(["transcribe", str(run_dir), str(path)]) == 0
    assert capsys.readouterr().out == f"{path}\t{texts[7]}\n"
    assert main(["predict", str(run_dir), str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"input": str(path), "transcript": texts[7]}]
    assert main(["transcribe", str(run_dir), str(tmp_path / "missing.wav")]) == 1
    assert "missing.wav" in capsys.readouterr().err


def test_lexicon_decoding_of_a_trained_run_from_python_and_the_command_line(letters_run, tmp_path, capsys):
    from kdl.cli import main

    recipe, _, run_dir, (waves, texts) = letters_run
    words = (run_dir / "words.txt").read_text().split()
    assert words == sorted({word for text in texts for word in text.split()})      # the training words
    assert recipe.transcribe(waves[:8], decoder="lexicon") == texts[:8]
    only = tmp_path / "only.txt"
    only.write_text("ab ba\ncab\n")
    assert set(recipe.transcribe(waves[:8], decoder="lexicon", words=str(only))) <= {"ab", "ba", "cab", "", *(
        f"{a} {b}" for a in ("ab", "ba", "cab") for b in ("ab", "ba", "cab"))}
    path = write_wav(tmp_path / "u.wav", waves[7], rate=RATE)
    assert main(["transcribe", str(run_dir), str(path), "--decoder", "lexicon"]) == 0
    assert capsys.readouterr().out == f"{path}\t{texts[7]}\n"
    assert main(["predict", str(run_dir), str(path), "--decoder", "lexicon", "--words", str(only),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["transcript"] in {"ab", "ba", "cab"}
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=x\n")
    assert main(["transcribe", str(run_dir), str(path), "--decoder", "lexicon", "--lm", str(bad)]) == 1
    assert "bad.arpa, line 2: expected 'ngram N=count'" in capsys.readouterr().err


def test_a_run_saved_before_the_lexicon_decoder_needs_a_word_list(tmp_path):
    from pathlib import Path

    old = Path(__file__).parent / "fixtures" / "runs_v0_1_0" / "speech_recognizer"
    recipe = kdl.recipes.load(old)
    inputs = np.load(old.parent / "speech_recognizer.inputs.npy")
    with pytest.raises(ConfigError, match="has no words.txt .*; give a word list .*--words FILE"):
        recipe.predict(inputs, decoder="lexicon")
    words = tmp_path / "words.txt"
    words.write_text(" ".join(sorted(set(recipe.characters) - {" "})) + "\n")    # every one-letter word
    texts = recipe.predict(inputs, decoder="lexicon", words=str(words)).transcripts
    assert all(set(text.split()) <= set(recipe.characters) for text in texts)
