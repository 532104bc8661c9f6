"""Speech recipes on voices they never heard: speaker-held-out splits, lexicon-constrained CTC
decoding (pyctcdecode with kdl's lexicon language model), waveform augmentation of training
batches, and continuous digit strings; with clear errors for bad word lists, language models
and transcripts outside the lexicon."""

import keras
import numpy as np
import pytest
from test_data_audio import fsdd_folder, tone, write_wav

import kdl
from kdl.data import audio, load_audio, load_transcripts
from kdl.data.audio import DIGIT_WORDS, FSDD_NAME, digit_strings
from kdl.errors import ConfigError, DataError
from kdl.recipes.lexicon import LexiconDecoder, read_arpa

DIGIT_CHARACTERS = " efghinorstuvwxz"


# --- the speaker-held-out split ------------------------------------------------------------------


def speaker_coded_reader(speakers):
    """A stand-in for read_wav whose clip tells its speaker: 0.1 s of the constant 0.1 * (k + 1) for
    the k-th speaker, so the values of a split's waveforms show which voices are in it."""
    def read(path, sample_rate=None):
        k = speakers.index(FSDD_NAME.match(path.name)["speaker"])
        return np.full(800, 0.1 * (k + 1), "float32"), 8000
    return read


def voices(split):
    """The speakers (by index) whose clips are in a split, from the values of its waveforms."""
    values = np.unique(np.concatenate([np.round(w, 3) for w, _ in split.as_numpy_iterator()]))
    return {int(round(v / 0.1)) - 1 for v in values if v > 0}


def test_speaker_split_never_puts_a_speaker_in_train_and_test(shared_data, monkeypatch):
    folder = shared_data / "fsdd" / "recordings"
    files = sorted(path for path in folder.iterdir() if FSDD_NAME.match(path.name))
    speakers = sorted({FSDD_NAME.match(path.name)["speaker"] for path in files})
    assert len(speakers) == 6 and len(files) == 3000
    for held in [[speaker] for speaker in speakers] + [speakers[:2]]:
        split = audio._labelled_files(folder, None, (held, None, None))
        who = {name: {FSDD_NAME.match(path.name)["speaker"] for path, _ in pairs}
               for name, pairs in split.items()}
        assert who["test"] == set(held) and who["train"] == set(speakers) - set(held)
        assert sorted(path for pairs in split.values() for path, _ in pairs) == files     # every file, once
    monkeypatch.setattr(audio, "read_wav", speaker_coded_reader(speakers))
    data = load_audio(folder, split="speaker", test_speakers=["theo"], validation_split=0.1, max_seconds=0.2)
    theo = speakers.index("theo")
    assert data.info.num_examples == {"train": 2250, "validation": 250, "test": 500}
    assert voices(data.splits["test"]) == {theo}
    assert voices(data.splits["train"]) | voices(data.splits["validation"]) == set(range(6)) - {theo}
    strings = load_transcripts(f"fsdd_digit_strings:{folder}", split="speaker", test_speakers=["theo"],
                               utterances=(60, 10), max_seconds=3.0)
    assert voices(strings.splits["test"]) == {theo}                  # test utterances: only theo's clips
    assert voices(strings.splits["train"]) == set(range(6)) - {theo}  # train utterances: everyone else's


def test_speaker_split_options_are_checked(tmp_path):
    folder = fsdd_folder(tmp_path / "fsdd", digits=2, speakers=("ann", "bob", "cy"), indices=range(0, 6))
    data = load_audio(folder, split="speaker", test_speakers=["bob"], max_seconds=0.25)
    assert data.info.num_examples == {"train": 24, "test": 12}
    with pytest.raises(DataError, match=r"test_speakers naming speakers of the data; got \['dan'\] "
                                        r"\(\['dan'\] not found\); its speakers: \['ann', 'bob', 'cy'\]"):
        load_audio(folder, split="speaker", test_speakers=["dan"])
    with pytest.raises(DataError, match="are all the speakers; leave at least one to train on"):
        load_audio(folder, split="speaker", test_speakers=["ann", "bob", "cy"])
    with pytest.raises(DataError, match="split must be one of 'default', 'speaker'; got 'random'"):
        load_audio(folder, split="random")
    with pytest.raises(DataError, match='test_speakers and speakers are for split = "speaker"'):
        load_audio(folder, test_speakers=["ann"])
    with pytest.raises(DataError, match="the source 'arrays' has no speakers|has no speakers"):
        load_audio(([np.ones(10)] * 4, [0, 1, 0, 1]), split="speaker", test_speakers=["ann"])


def test_label_folders_and_ljspeech_take_a_speakers_file(tmp_path):
    for label, frequency in (("yes", 300), ("no", 900)):
        for i in range(4):
            write_wav(tmp_path / "cmds" / label / f"{i}.wav", tone(frequency, 0.2))
    (tmp_path / "who.txt").write_text("".join(f"{label}/{i}.wav\t{'ann' if i < 2 else 'bob'}\n"
                                              for label in ("yes", "no") for i in range(4)))
    data = load_audio(tmp_path / "cmds", split="speaker", test_speakers=["bob"],
                      speakers=tmp_path / "who.txt", max_seconds=0.25)
    assert data.info.num_examples == {"train": 4, "test": 4}
    with pytest.raises(DataError, match="needs data.speakers, a file naming the speaker of every clip"):
        load_audio(tmp_path / "cmds", split="speaker", test_speakers=["bob"])
    (tmp_path / "who.txt").write_text("yes/0.wav ann\n")
    with pytest.raises(DataError, match=r"no/0\.wav: not in the speakers file .*who\.txt "
                                        r"\(looked for .no/0\.wav. or .0\.wav. or .0.\)"):
        load_audio(tmp_path / "cmds", split="speaker", test_speakers=["ann"], speakers=tmp_path / "who.txt")
    (tmp_path / "lj").mkdir()
    (tmp_path / "lj" / "metadata.csv").write_text("".join(f"u{i}|ab|ab\n" for i in range(4)))
    for i in range(4):
        write_wav(tmp_path / "lj" / "wavs" / f"u{i}.wav", tone(300, 0.2))
    (tmp_path / "lj" / "speakers.csv").write_text("u0,ann\nu1,ann\nu2,bob\nu3,cy\n")
    data = load_transcripts(tmp_path / "lj", split="speaker", test_speakers=["ann"],
                            speakers=tmp_path / "lj" / "speakers.csv", max_seconds=0.5)
    assert data.info.num_examples == {"train": 2, "test": 2}
    assert [where.split("(")[1] for _, where in data.transcripts["test"]] == ["u0.wav)", "u1.wav)"]


# --- continuous digit strings ---------------------------------------------------------------------


def test_continuous_digit_strings_change_train_utterances_only(tmp_path):
    folder = fsdd_folder(tmp_path / "fsdd", digits=10, speakers=("ann",), indices=range(0, 7))
    plain = digit_strings(folder, (30, 5), num_samples=16000, seed=1)
    joined = digit_strings(folder, (30, 5), num_samples=16000, seed=1, overlap=0.08, loudness=6.0,
                           pause=(0.0, 0.1))
    np.testing.assert_array_equal(np.stack(plain["test"][0]), np.stack(digit_strings(
        folder, (30, 5), num_samples=16000, seed=1, overlap=0.08, loudness=6.0)["test"][0]))
    waves, texts, _ = joined["train"]
    assert not np.array_equal(np.stack(waves), np.stack(plain["train"][0]))
    assert all(set(t.split()) <= set(DIGIT_WORDS) for t in texts) and max(np.abs(w).max() for w in waves) <= 1
    # every clip is a tone of 0.5: louder and quieter digits (loudness) give other peaks
    peaks = {round(float(np.abs(w).max()), 2) for w in waves}
    assert {round(float(np.abs(w).max()), 2) for w in plain["train"][0]} <= {0.47, 0.48, 0.49, 0.5}
    assert len([peak for peak in peaks if not 0.46 < peak < 0.51]) > 5
    with pytest.raises(DataError, match=r"pauses must be \[shortest, longest\] seconds"):
        digit_strings(folder, (3, 2), pause=(0.3, 0.1))


# --- lexicon decoding ------------------------------------------------------------------------------


def spell(path, characters, confusions=(), floor=0.01):
    """(1, frames, characters + 1) log-probabilities whose best path is `path` ("_" the blank), and
    (frame, character, probability) `confusions` the second choices."""
    width = len(characters) + 1
    probs = np.full((len(path), width), floor)
    for t, char in enumerate(path):
        probs[t, 0 if char == "_" else 1 + characters.index(char)] = 0.6
    for t, char, p in confusions:
        probs[t, 0 if char == "_" else 1 + characters.index(char)] = p
    return np.log(probs / probs.sum(1, keepdims=True))[None].astype("float32")


def test_lexicon_decoding_turns_a_misspelling_into_the_word(backend):
    recipe = kdl.recipes.speech_recognizer({
        "train": ([np.zeros(100)] * 3, ["two six zero", "three one", "seven"]),
        "test": ([np.zeros(100)], ["one"])},
        characters=DIGIT_CHARACTERS, sample_rate=1000, max_seconds=0.2, validation_split=0.0)
    # greedy reads "tw sie zero": the space after "tw" beats "o", "e" beats "x" (second choices)
    log_probs = spell("tw_ sie_ zero_", DIGIT_CHARACTERS, [(2, "o", 0.3), (6, "x", 0.35)])
    assert recipe.decode(log_probs, "greedy") == ["tw sie zero"]
    assert recipe.training_words() == sorted(set("two six zero three one seven".split()))
    assert recipe.decode(log_probs, "lexicon") == ["two six zero"]
    assert recipe.decode(keras.ops.convert_to_tensor(log_probs), "lexicon") == ["two six zero"]   # a tensor
    # "thre e": a blank between the e's is the second choice at the space
    log_probs = spell("thre_ e", DIGIT_CHARACTERS, [(5, "_", 0.35)])
    assert recipe.decode(log_probs, "greedy") == ["thre e"]
    assert recipe.decode(log_probs, "lexicon") == ["three"]


def test_lexicon_decoding_only_ever_writes_lexicon_words_and_is_the_same_everywhere():
    """Random log-probabilities: every word written is a lexicon word (many greedy words are not).
    The decoder is numpy (pyctcdecode): the same log-probabilities give the same transcripts."""
    rng = np.random.default_rng(0)
    decoder = LexiconDecoder(DIGIT_CHARACTERS, DIGIT_WORDS, beam_width=8)
    logits = rng.normal(0, 3, (12, 40, len(DIGIT_CHARACTERS) + 1))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    texts = decoder.decode(log_probs)
    assert all(set(text.split()) <= set(DIGIT_WORDS) for text in texts)
    assert sum(len(text.split()) for text in texts) >= 12          # it does write words, not just ""
    assert texts == LexiconDecoder(DIGIT_CHARACTERS, DIGIT_WORDS, beam_width=8).decode(log_probs)


ARPA = """\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-0.7\t</s>
-99\t<s>\t-0.3
-1.0\tab\t-0.2
-1.0\tac\t-0.2
-1.5\tb\t-0.1

\\2-grams:
-0.1\t<s> {first}
-2.0\t<s> {second}
-0.2\tab </s>

\\end\\
"""


def test_an_arpa_language_model_ranks_lexicon_words(tmp_path):
    # "a" then "b" or "c" equally likely: the language model decides
    log_probs = spell("a_b", " abc", [(2, "c", 0.6)])
    for first, second in (("ab", "ac"), ("ac", "ab")):
        path = tmp_path / f"{first}.arpa"
        path.write_text(ARPA.format(first=first, second=second))
        model = read_arpa(path)
        assert model.words == ["ab", "ac", "b"] and model.order == 2
        assert LexiconDecoder(" abc", None, model, alpha=1.0).decode(log_probs) == [first]
        assert LexiconDecoder(" abc", ["ab", "ac"], model, alpha=1.0).decode(log_probs) == [first]
    assert LexiconDecoder(" abc", ["ab"]).decode(log_probs) == ["ab"]     # the lexicon alone


def test_bad_word_lists_language_models_and_transcripts_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    recipe = kdl.recipes.speech_recognizer(([np.zeros(100)] * 2, ["ab", "ba"]), characters=" ab",
                                           sample_rate=1000, max_seconds=0.2, validation_split=0.0)
    log_probs = spell("ab", " ab")
    with pytest.raises(DataError, match=r"the word list '.*empty\.txt' has no words"):
        recipe.decode(log_probs, "lexicon", words=str(empty))
    notes = tmp_path / "notes.arpa"
    notes.write_text("just some text\n")
    with pytest.raises(DataError, match=r"notes\.arpa, line 1: expected '\\data\\' .* is not an ARPA n-gram"):
        recipe.decode(log_probs, "lexicon", lm=str(notes))
    binary = tmp_path / "model.binary"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\x00\xff\xfe\x00")
    with pytest.raises(DataError, match=r"model\.binary is not an ARPA .* it is not text"):
        recipe.decode(log_probs, "lexicon", lm=str(binary))
    truncated = tmp_path / "cut.arpa"
    truncated.write_text(ARPA.format(first="ab", second="ac").split("\\2-grams:")[0])
    with pytest.raises(DataError, match=r"cut\.arpa, line \d+: expected '\\end\\'"):
        read_arpa(truncated)
    miscounted = tmp_path / "count.arpa"
    miscounted.write_text(ARPA.format(first="ab", second="ac").replace("ngram 2=3", "ngram 2=4"))
    with pytest.raises(DataError, match=r"count\.arpa, line \d+: expected 4 2-grams"):
        read_arpa(miscounted)
    with pytest.raises(DataError, match=r"lexicon words \['abc'\] have characters outside"):
        LexiconDecoder(" ab", ["ab", "abc"])
    with pytest.raises(ConfigError, match="is for decoder='lexicon'; got decoder='greedy'"):
        recipe.decode(log_probs, "greedy", words=str(empty))
    words = tmp_path / "words.txt"
    words.write_text("ab\n")
    strict = kdl.recipes.speech_recognizer({"train": ([np.zeros(100)] * 2, ["ab", "ab ba"]),
                                            "test": ([np.zeros(100)], ["ab"])}, characters=" ab",
                                           sample_rate=1000, max_seconds=0.2, validation_split=0.0,
                                           decoder="lexicon", words=str(words))
    with pytest.raises(DataError, match=r"train example 1: transcript 'ab ba' has words \['ba'\] outside the "
                                        r"word list '.*words\.txt' \(1 words\)"):
        strict.fit(epochs=1, verbose=0)


# --- augmentation ---------------------------------------------------------------------------------


AUGMENT = {"probability": 1.0, "speed": 0.1, "pitch": 2.0, "gain": 6.0, "eq": 6.0, "noise": 10.0,
           "reverb": 0.1, "shift": 0.05}


@pytest.mark.parametrize("task", ["speech_recognizer", "audio_classifier"])
def test_augmentation_changes_training_batches_only(task):
    rng = np.random.default_rng(0)
    waves = [tone(300 + 200 * (i % 3), rng.uniform(0.1, 0.2), 4000) for i in range(12)]
    if task == "speech_recognizer":
        targets = [["a", "b", "ab"][i % 3] for i in range(12)]
        make = lambda **options: kdl.recipes.speech_recognizer(  # noqa: E731
            (waves, targets), sample_rate=4000, max_seconds=0.4, batch_size=4, mel_bins=8, hop_ms=20.0,
            width=4, blocks=1, channels=2, validation_split=0.25, **options)
    else:
        make = lambda **options: kdl.recipes.audio_classifier(  # noqa: E731
            (waves, np.arange(12) % 3), sample_rate=4000, max_seconds=0.4, batch_size=4, mel_bins=8,
            filters=[2], dense=4, validation_split=0.25, **options)
    plain, augmented = make(), make(augment=AUGMENT)
    assert augmented.config.data.augment.speed == 0.1 and plain.augmenter("train", True) is None

    def first(recipe, split, shuffle):
        return [x.numpy() for x, _ in recipe.batches(split, shuffle=shuffle)]

    for before, after in zip(first(plain, "train", True), first(augmented, "train", True)):
        assert before.shape == after.shape and not np.allclose(before, after)
    for split, shuffle in (("train", False), ("validation", False), ("test", False)):
        for before, after in zip(first(plain, split, shuffle), first(augmented, split, shuffle)):
            np.testing.assert_array_equal(before, after)
    augmented.model = augmented.build_model()     # (tests/harness.py fits through an augmented pipeline)
    plain.model = augmented.model
    clips = np.stack([np.pad(w, (0, 1600 - len(w))) for w in waves[:3]])
    np.testing.assert_array_equal(plain.predict(clips).outputs, augmented.predict(clips).outputs)
    assert plain.evaluate().metrics == augmented.evaluate().metrics


@pytest.mark.parametrize("sample_rate", [4000, 8000, 16000])
def test_the_equalizer_colours_a_clip_and_stays_below_nyquist(sample_rate):
    """audiomentations' SevenBandParametricEQ gives NaN at 8 kHz (bands above Nyquist); ours may not."""
    from kdl.data.augment import AugmentConfig, Augmenter

    clip = np.random.default_rng(0).normal(0, 0.1, sample_rate // 2).astype(np.float32)
    augment = Augmenter(AugmentConfig(eq=12.0, probability=1.0), sample_rate=sample_rate, seed=0)
    out = augment(np.stack([clip] * 32))
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    bands = np.abs(np.fft.rfft(out, axis=1)[:, :-1]).reshape(32, 8, -1).mean(axis=2)   # (clips, 8 bands)
    plain = np.abs(np.fft.rfft(clip)[:-1]).reshape(8, -1).mean(axis=1)
    change = 20 * np.log10(bands / plain)                                              # dB per band
    assert np.abs(change).max() > 3 and change.std(axis=0).min() > 0.5    # every band moves, differently


def test_augmentation_options_are_checked():
    with pytest.raises(ConfigError, match=r"speed must be less than 0\.5; got 0\.7"):
        kdl.recipes.audio_classifier(augment={"speed": 0.7})
    with pytest.raises(ConfigError, match="unknown setting 'sped'; did you mean 'speed'"):
        kdl.recipes.audio_classifier(augment={"sped": 0.1})
    recipe = kdl.recipes.audio_classifier(([np.ones(100)] * 4, [0, 1, 0, 1]), sample_rate=1000,
                                          augment={"gain": 3.0, "probability": 1.5})
    with pytest.raises(ConfigError, match=r"data.augment.probability must be from 0 to 1; got 1\.5"):
        recipe.batches("train", shuffle=True)
    low = kdl.recipes.audio_classifier(([np.ones(100)] * 4, [0, 1, 0, 1]), sample_rate=800,
                                       augment={"eq": 6.0})
    with pytest.raises(ConfigError, match=r"data.augment.eq needs audio of at least 1000 Hz .*rate is 800"):
        low.batches("train", shuffle=True)
