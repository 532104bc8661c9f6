"""kdl.data.audio and kdl.data.io.read_wav: WAV reading (mixdown, resampling, pad/crop), every
source's splits, and a DataError naming the file for every bad input."""

import wave

import numpy as np
import pytest

from kdl.data import load_audio, load_transcripts, read_wav, waveform_batch
from kdl.data.audio import DIGIT_WORDS, digit_strings, fit_length
from kdl.errors import DataError


def write_wav(path, samples, rate=8000, channels=1, width=2):
    """Write float samples in [-1, 1] ((n,) or (n, channels)) as a PCM WAV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.asarray(samples, np.float64).reshape(-1, channels)
    scale = 2 ** (8 * width - 1) - 1
    data = (np.round(samples * scale).astype({2: "<i2", 4: "<i4"}[width])).tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(data)
    return path


def tone(frequency, seconds, rate=8000, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def examples(split):
    return [(waveform, target) for waveform, target in split.as_numpy_iterator()]


# --- reading WAV files -----------------------------------------------------------------------------


def test_read_wav_16_bit_mono(tmp_path):
    samples = tone(440, 0.25)
    waveform, rate = read_wav(write_wav(tmp_path / "a.wav", samples))
    assert rate == 8000 and waveform.dtype == np.float32 and waveform.shape == (2000,)
    np.testing.assert_allclose(waveform, samples, atol=1e-4)


def test_stereo_44100_is_mixed_down_and_resampled(tmp_path):
    left, right = tone(440, 0.5, rate=44100), tone(440, 0.5, rate=44100, amplitude=0.1)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), rate=44100, channels=2)
    waveform, rate = read_wav(path, sample_rate=8000)
    assert rate == 8000 and waveform.shape == (4000,)
    expected = tone(440, 0.5, amplitude=0.3)                 # the mean of the two channels, at 8 kHz
    np.testing.assert_allclose(waveform[100:-100], expected[100:-100], atol=0.01)


def test_32_bit_wav(tmp_path):
    waveform, _ = read_wav(write_wav(tmp_path / "a.wav", tone(200, 0.1), width=4))
    np.testing.assert_allclose(waveform, tone(200, 0.1), atol=1e-6)


def test_corrupt_and_empty_wavs_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(DataError, match=r"cannot read WAV file '.*corrupt\.wav'"):
        read_wav(corrupt)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(DataError, match=r"notes\.wav"):
        read_wav(text)
    with pytest.raises(DataError, match=r"'.*empty\.wav' is empty"):
        read_wav(write_wav(tmp_path / "empty.wav", np.zeros(0)))


def test_pad_and_crop_rule():
    assert fit_length(np.ones(3), 5).tolist() == [1, 1, 1, 0, 0]              # zeros at the end
    assert fit_length(np.arange(10), 4).tolist() == [3, 4, 5, 6]              # the centre
    with pytest.raises(DataError, match=r"clip\.wav: the clip has 10 samples, more than the maximum 4"):
        fit_length(np.arange(10), 4, where="clip.wav")


def test_waveform_batch_from_paths_and_arrays(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(300, 0.5, rate=16000), rate=16000)
    batch = waveform_batch([path, np.ones(100), np.ones(9000)], 8000, 8000)
    assert batch.shape == (3, 8000) and batch.dtype == np.float32
    assert batch[1, :100].sum() == 100 and batch[1, 100:].sum() == 0
    with pytest.raises(DataError, match=r"input 0 has shape \(2, 3\)"):
        waveform_batch([np.ones((2, 3))], 8000, 8000)
    with pytest.raises(DataError, match=r"a\.wav: the clip has 4000 samples, more than the maximum 2000"):
        waveform_batch(path, 2000, 8000, crop=False)


# --- classification sources --------------------------------------------------------------------


def fsdd_folder(root, digits=3, speakers=("ann", "bob"), indices=range(0, 8)):
    for digit in range(digits):
        for speaker in speakers:
            for index in indices:
                clip = tone(200 + 150 * digit, 0.2 + 0.01 * index)
                write_wav(root / f"{digit}_{speaker}_{index}.wav", clip)
    return root


def test_fsdd_folder_uses_the_official_split(tmp_path):
    data = load_audio(fsdd_folder(tmp_path / "fsdd"), max_seconds=0.25)
    assert data.info.class_names == ["0", "1", "2"]
    assert data.info.num_examples == {"train": 18, "test": 30}      # index 5-7 train, 0-4 test
    assert data.info.num_samples == 2000 and data.info.sample_rate == 8000
    waveform, label = examples(data.splits["train"])[0]
    assert waveform.shape == (2000,) and waveform.dtype == np.float32 and label.dtype == np.int32


def test_real_fsdd_recordings(shared_data):
    data = load_audio("fsdd/recordings", data_root=shared_data, class_names=["3", "7"],
                      validation_split=0.1)
    assert data.info.class_names == ["3", "7"]
    assert data.info.num_examples == {"train": 486, "validation": 54, "test": 60}
    labels = [int(label) for _, label in data.splits["test"].as_numpy_iterator()]
    assert sorted(set(labels)) == [0, 1] and labels.count(0) == 30


def test_label_folders_and_long_clips_are_centre_cropped(tmp_path):
    for name, frequency in (("yes", 300), ("no", 900)):
        for i in range(4):
            write_wav(tmp_path / "cmds" / name / f"{i}.wav", tone(frequency, 0.5 + 0.5 * (i == 0)))
    data = load_audio(tmp_path / "cmds", max_seconds=0.5)
    assert data.info.class_names == ["no", "yes"]
    assert data.info.num_examples == {"train": 6, "test": 2}
    waves = [w for split in data.splits.values() for w, _ in examples(split)]
    assert all(w.shape == (4000,) and np.abs(w[-10:]).max() > 0.01 for w in waves)   # none padded


def test_stereo_and_44100_files_in_a_folder_are_converted(tmp_path):
    for i in range(3):
        stereo = np.stack([tone(300, 0.5, 44100)] * 2, 1)
        write_wav(tmp_path / "a" / f"{i}.wav", stereo, rate=44100, channels=2)
        write_wav(tmp_path / "b" / f"{i}.wav", tone(900, 0.5))
    data = load_audio(tmp_path, max_seconds=0.5, sample_rate=8000)
    assert {w.shape for w, _ in examples(data.splits["train"])} == {(4000,)}


def test_bad_files_in_a_folder_name_the_file(tmp_path):
    fsdd_folder(tmp_path / "fsdd", digits=2, indices=range(0, 6))
    (tmp_path / "fsdd" / "1_bob_3.wav").write_bytes(b"RIFFgarbage")
    with pytest.raises(DataError, match=r"1_bob_3\.wav"):
        load_audio(tmp_path / "fsdd")
    write_wav(tmp_path / "odd" / "clip.wav", tone(300, 0.1))
    with pytest.raises(DataError, match=r"clip\.wav: a folder of WAV files must name them"):
        load_audio(tmp_path / "odd")


def test_arrays_of_waveforms():
    waves = [np.full(n, 0.1) for n in (100, 200, 300)] * 4
    data = load_audio({"train": (waves, [0, 1, 1] * 4), "test": (waves[:2], [0, 1])}, sample_rate=1000,
                      max_seconds=0.25, class_names=["off", "on"])
    assert data.info.num_examples == {"train": 12, "test": 2} and data.info.class_names == ["off", "on"]
    with pytest.raises(DataError, match=r"train waveforms\[1\] has shape \(2, 2\)"):
        load_audio(([np.ones(5), np.ones((2, 2))], [0, 1]))
    with pytest.raises(DataError, match="3 waveforms but 2 labels"):
        load_audio(([np.ones(5)] * 3, [0, 1]))


def test_tfds_spoken_digit_and_speech_commands_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=10):
        digits = load_audio("tfds:spoken_digit", max_seconds=0.5)
        waveform, label = next(iter(digits.splits["train"]))
        commands = load_audio("tfds:speech_commands", sample_rate=8000, max_seconds=1.0, validation_split=0.2)
        command, _ = next(iter(commands.splits["test"]))
    assert digits.info.class_names == [str(d) for d in range(10)]
    assert waveform.shape == (4000,) and waveform.dtype.name == "float32" and label.dtype.name == "int32"
    assert len(commands.info.class_names) == 12 and command.shape == (8000,)
    assert set(commands.info.num_examples) == {"train", "validation", "test"}


# --- transcripts -------------------------------------------------------------------------------------


def test_ljspeech_layout(tmp_path):
    rows = ["LJ001-0001|Printing, in the only sense|printing, in the only sense",
            "LJ001-0002|in being comparatively modern.|In being comparatively modern."]
    (tmp_path / "lj").mkdir()
    (tmp_path / "lj" / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for i in (1, 2):
        write_wav(tmp_path / "lj" / "wavs" / f"LJ001-000{i}.wav", tone(300, 0.5, 22050), rate=22050)
    data = load_transcripts(tmp_path / "lj", max_seconds=1.0, limit=None)
    texts = sorted(text.decode() for split in data.splits.values() for _, text in split.as_numpy_iterator())
    assert texts == ["in being comparatively modern.", "printing, in the only sense"]
    assert data.info.num_examples == {"train": 1, "test": 1}
    assert data.transcripts["train"][0][1].startswith(str(tmp_path / "lj" / "metadata.csv") + ", line ")


def test_ljspeech_bad_rows_and_long_clips_name_the_line_or_file(tmp_path):
    (tmp_path / "metadata.csv").write_text("LJ1|text|text\nLJ2\n", encoding="utf-8")
    write_wav(tmp_path / "wavs" / "LJ1.wav", tone(300, 0.5))
    with pytest.raises(DataError, match=r"metadata\.csv, line 2: expected 'id\|transcript"):
        load_transcripts(tmp_path)
    (tmp_path / "metadata.csv").write_text("LJ1|text|text\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"LJ1\.wav: the clip has 4000 samples, more than the maximum 2000"):
        load_transcripts(tmp_path, max_seconds=0.25)


def test_digit_strings_are_deterministic_and_use_the_official_split(tmp_path):
    folder = fsdd_folder(tmp_path / "fsdd", digits=10, speakers=("ann",), indices=range(0, 7))
    rows = digit_strings(folder, (20, 5), num_samples=12000, seed=3)
    again = digit_strings(folder, (20, 5), num_samples=12000, seed=3)
    other = digit_strings(folder, (20, 5), num_samples=12000, seed=4)
    waves, texts, _ = rows["train"]
    assert texts == again["train"][1] and texts != other["train"][1]
    np.testing.assert_array_equal(np.stack(waves), np.stack(again["train"][0]))
    assert all(1 <= len(t.split()) <= 5 and set(t.split()) <= set(DIGIT_WORDS) for t in texts)
    assert {w.shape for w in waves} == {(12000,)} and len(rows["test"][1]) == 5
    data = load_transcripts(f"fsdd_digit_strings:{folder}", utterances=(20, 5), max_seconds=1.5)
    assert data.info.num_examples == {"train": 20, "test": 5}
    assert data.info.source.startswith("fsdd_digit_strings:")


def test_digit_strings_test_utterances_use_only_test_recordings(tmp_path):
    # digit 0 is recorded loud in test files (index 0-4) and quiet in train files (5-9)
    for index in range(10):
        for digit in range(10):
            amplitude = 0.9 if index < 5 else 0.2
            write_wav(tmp_path / f"{digit}_ann_{index}.wav", tone(300, 0.1, amplitude=amplitude))
    rows = digit_strings(tmp_path, (10, 10), num_samples=8000)
    assert max(np.abs(w).max() for w in rows["test"][0]) > 0.85
    assert max(np.abs(w).max() for w in rows["train"][0]) < 0.25


def test_transcript_arrays_and_tfds_librispeech_with_mock_data():
    data = load_transcripts(([np.ones(100)] * 5, ["One", "two", "three", "four", "five"]),
                            sample_rate=1000, max_seconds=0.2)
    assert sorted(text for rows in data.transcripts.values() for text, _ in rows) == [
        "five", "four", "one", "three", "two"]
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        speech = load_transcripts("tfds:librispeech", sample_rate=8000, max_seconds=1.0, validation_split=0.5)
        waveform, text = next(iter(speech.splits["train"]))
    assert set(speech.splits) == {"train", "validation", "test"}
    assert waveform.shape == (8000,) and text.dtype.name == "string"
    assert len(speech.transcripts["train"]) == speech.info.num_examples["train"] == 6
