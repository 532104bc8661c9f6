"""Speech data from one call: `load_audio(source)` (spoken commands, one label per clip) and
`load_transcripts(source)` (speech with its text) -> `Dataset`.

Every source gives the same thing: `info` (sample rate, clip length, class names or transcripts,
split sizes) and `splits`, each a `tf.data.Dataset` of unbatched `(waveform, target)` pairs: a
float32 mono waveform of exactly `info.num_samples` samples in [-1, 1], and an int32 label
(`load_audio`) or a UTF-8 transcript (`load_transcripts`).

Classification sources (`load_audio`):

- a folder in the FSDD layout: `{label}_{speaker}_{index}.wav` files, with the official split
  (index 0-4 is "test", 5-49 "train"), e.g. `../shared/data/fsdd/recordings`;
- a folder with one sub-folder of `.wav` files per label, directly or under `train/` and `test/`;
- `"tfds:speech_commands"`, `"tfds:spoken_digit"` (TensorFlow Datasets);
- arrays: `(waveforms, labels)` or `{"train": ..., "test": ...}`; waveforms a list of 1-D arrays
  (any lengths) or an (N, samples) array, at `sample_rate`.

Transcript sources (`load_transcripts`):

- a folder in the LJSpeech layout: `metadata.csv` (`id|transcript|normalized transcript`,
  the last column is used) and `wavs/{id}.wav`;
- `"fsdd_digit_strings:FOLDER"`: spoken digit strings of 1-5 digits ("three one four") made by
  joining FSDD clips of FOLDER with short random pauses; test utterances use only test-split
  recordings; the same for the same seed (see `digit_strings`);
- `"tfds:librispeech"` (train_clean100 / dev_clean / test_clean);
- arrays: `(waveforms, transcripts)` or `{"train": ..., "test": ...}`.

Speaker-held-out splits (`split="speaker"`, `test_speakers=[...]`, the rule is
`kdl.data.splits.speaker_split`): every clip of the named speakers is "test", every other clip
"train". An FSDD folder names the speaker in every file name; a folder of label sub-folders or an
LJSpeech folder takes a `speakers` file, one `NAME SPEAKER` line per clip (NAME: the WAV file's
name, its path under the folder, or its LJSpeech id; separated by a tab, a comma or spaces).

WAV files are read by `kdl.data.io.read_wav` (the standard library `wave` module, 8/16/24/32-bit
PCM at 1 to 768 kHz), mixed down to mono (the mean of the channels) and resampled to `sample_rate`
(`scipy.signal.resample_poly`).

The pad/crop rule: every clip becomes exactly `num_samples = round(max_seconds * sample_rate)`
samples. A shorter clip is padded with silence (zeros) at its end. A longer clip is, for
classification, cropped to its centre `num_samples` (the middle of a short command holds the
word); for transcripts it is an error naming the file (cutting audio would cut words from its
transcript), except from TFDS, where such clips are left out.

>>> import numpy as np
>>> clips = [np.full(n, 0.1, "float32") for n in (500, 1000, 3000)] * 4
>>> data = load_audio((clips, [0, 1, 2] * 4), sample_rate=1000, max_seconds=2.0)
>>> data.info.num_samples, data.info.class_names, data.info.num_examples
(2000, ['0', '1', '2'], {'train': 9, 'test': 3})
>>> waveform, label = next(iter(data.splits["train"]))
>>> waveform.dtype.name, waveform.shape.as_list(), label.dtype.name
('float32', [2000], 'int32')
>>> fit_length(np.arange(6, dtype="float32"), 4).tolist()     # centre crop
[1.0, 2.0, 3.0, 4.0]
"""

import os
import pathlib
import re

import numpy as np
import tensorflow as tf

from kdl import progress
from kdl.data.dataset import Dataset, class_names_for
from kdl.data.io import (
    read_lines,
    read_wav,
    resample,
    resolve_path,
    subfolders,
    unsupported_source,
    walk_folder,
)
from kdl.data.splits import (
    SPEAKER_SPLITS,
    array_splits,
    check_class_options,
    check_split_options,
    source_class_names,
    speaker_split,
    split_arrays,
    tfds_slices,
    tfds_splits,
)
from kdl.data.tfds_builder import prepared_tfds_builder
from kdl.errors import DataError

FSDD_NAME = re.compile(r"^(?P<label>[^_/]+)_(?P<speaker>[^_/]+)_(?P<index>\d+)\.wav$", re.IGNORECASE)
FSDD_TEST_INDICES = range(0, 5)     # the official split: index 0-4 test, 5-49 train
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_STRINGS_PREFIX = "fsdd_digit_strings:"
TFDS_AUDIO_FEATURES = ("audio", "speech")
TFDS_OWN_VALIDATION = {"validation": "validation"}     # a TFDS audio dataset's validation split is used
TFDS_TRANSCRIPT_SPLITS = {"librispeech": {"train": "train_clean100", "validation": "dev_clean",
                                          "test": "test_clean"}}
CLASSIFICATION_SOURCES = (
    "a folder of FSDD-named WAVs ({label}_{speaker}_{index}.wav), a folder with one sub-folder of "
    '.wav files per label (directly or under train/ and test/), "tfds:speech_commands", '
    '"tfds:spoken_digit", a (waveforms, labels) tuple, or {"train": (waveforms, labels), "test": ...}'
)
TRANSCRIPT_SOURCES = (
    'an LJSpeech folder (metadata.csv "id|transcript|normalized" + wavs/), '
    '"fsdd_digit_strings:FOLDER" (an FSDD recordings folder), "tfds:librispeech", a '
    '(waveforms, transcripts) tuple, or {"train": (waveforms, transcripts), "test": ...}'
)


# --- fitting waveforms: the pad/crop rule ----------------------------------------------------------


def fit_length(waveform, num_samples, where=None):
    """The pad/crop rule: pad with zeros at the end, or keep the centre `num_samples`.

    With `where` (a file name or an example index), a too-long clip is a DataError instead.
    """
    waveform = np.asarray(waveform, np.float32)
    if len(waveform) > num_samples:
        if where is not None:
            raise DataError(f"{where}: the clip has {len(waveform)} samples, more than the maximum "
                            f"{num_samples} (max_seconds); raise data.max_seconds, or shorten the clip")
        start = (len(waveform) - num_samples) // 2
        return waveform[start:start + num_samples]
    return np.pad(waveform, (0, num_samples - len(waveform)))


def waveform_batch(inputs, num_samples, sample_rate, crop=True):
    """A (N, num_samples) float32 batch from what a user passes to predict/transcribe: WAV paths
    (read, mixed down, resampled to `sample_rate`) and 1-D waveforms at `sample_rate`, alone or in
    a list, or an (N, samples) array. Each is fitted by the pad/crop rule (`crop=False`: a clip
    longer than num_samples is a DataError naming it)."""
    if isinstance(inputs, (str, os.PathLike)) or (isinstance(inputs, np.ndarray) and inputs.ndim == 1):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple, np.ndarray)) or len(inputs) == 0:
        raise DataError(f"expected WAV file paths or waveforms (1-D arrays), alone or in a non-empty "
                        f"list; got {type(inputs).__name__} {str(inputs)[:80]!r}")
    batch = []
    for i, item in enumerate(inputs):
        if isinstance(item, (str, os.PathLike)):
            waveform, where = read_wav(item, sample_rate)[0], os.fspath(item)
        else:
            waveform, where = np.asarray(item), f"input {i}"
            if waveform.ndim != 1 or waveform.size == 0 or not np.issubdtype(waveform.dtype, np.number):
                raise DataError(f"input {i} has shape {waveform.shape} and dtype {waveform.dtype}; expected "
                                f"a WAV file path or a non-empty 1-D waveform at {sample_rate} Hz")
        batch.append(fit_length(waveform, num_samples, None if crop else where))
    return np.stack(batch).astype(np.float32)


def trim_silence(waveform, threshold=0.05, margin=0.02, sample_rate=8000):
    """`waveform` without its leading and trailing samples quieter than `threshold` x its peak
    (keeping `margin` seconds either side)."""
    loud = np.flatnonzero(np.abs(waveform) >= threshold * np.abs(waveform).max())
    if loud.size == 0:
        return waveform
    keep = int(margin * sample_rate)
    return waveform[max(loud[0] - keep, 0):loud[-1] + 1 + keep]


# --- classification: load_audio ------------------------------------------------------------------


def load_audio(source, *, data_root=None, sample_rate=8000, max_seconds=1.0, class_names=None,
               validation_split=0.0, limit=None, seed=0, split="default", test_speakers=(), speakers=None,
               classes=None, per_class=None):
    """Load a spoken-command dataset as "train", ["validation",] "test" splits of (waveform, label).

    source: see the module docstring. A relative path is looked up in the current directory,
        then under `data_root`, then under the `KDL_DATA` environment variable.
    sample_rate: Hz to resample every clip to; max_seconds: the clip length (see the pad/crop rule).
    class_names: names for integer labels (arrays, TFDS), or which labels to keep (folders).
    validation_split: fraction of train held out as "validation", stratified and seeded by `seed`.
    limit: keep at most this many examples of each split.
    split, test_speakers, speakers: "default" (the source's own test split) or "speaker" (the
        clips of `test_speakers` are the test split; see the module docstring).
    classes: only these classes (by name), in every split, their labels renumbered in this order.
    per_class: train (and the validation held out of it) on at most this many examples of each
        class, a seeded stratified sample; the test split is not cut (`kdl.data.splits`).
    """
    num_samples = _check_options(sample_rate, max_seconds, validation_split, limit)
    check_class_options(classes, per_class)
    class_names = source_class_names(class_names, classes)
    options = dict(validation_split=validation_split, limit=limit, seed=seed, classes=classes,
                   per_class=per_class)
    by_speaker = _check_speaker_options(source, split, test_speakers, speakers)
    if isinstance(source, (tuple, dict)):
        splits = {name: _array_clips(name, pair, "labels") for name, pair in array_splits(
            source, "(waveforms, labels)").items()}
        labels = {name: np.asarray(targets) for name, (_, targets) in splits.items()}
        bad = next((name for name, y in labels.items() if not np.issubdtype(y.dtype, np.integer)), None)
        if bad:
            raise DataError(f"{bad} labels have dtype {labels[bad].dtype}; expected integer class indices")
        names = class_names_for(np.concatenate(list(labels.values())), class_names)
        clips = {name: ([fit_length(c, num_samples) for c in waves], labels[name].astype(np.int32))
                 for name, (waves, _) in splits.items()}
        return _classification_dataset("arrays", clips, names, sample_rate, num_samples, **options)
    if isinstance(source, str) and source.startswith("tfds:"):
        return _classification_from_tfds(source, data_root, class_names, sample_rate, num_samples, **options)
    if not isinstance(source, (str, os.PathLike)):
        raise unsupported_source(source, CLASSIFICATION_SOURCES)
    folder = resolve_path(source, data_root, CLASSIFICATION_SOURCES)
    files = _labelled_files(folder, class_names, by_speaker and (test_speakers, speakers, data_root))
    names = list(class_names or sorted({label for pairs in files.values() for _, label in pairs},
                                       key=_natural))
    clips = {}
    with progress.bar(what=f"reading {folder}", total=sum(map(len, files.values())), unit="files") as shown:
        for split, pairs in files.items():
            waves = []
            for path, _ in pairs:
                waves.append(fit_length(read_wav(path, sample_rate)[0], num_samples))
                shown.update(1)
            clips[split] = waves, np.array([names.index(label) for _, label in pairs], np.int32)
    class_names_for(np.concatenate([y for _, y in clips.values()]), names)   # at least 2 classes
    return _classification_dataset(os.fspath(source), clips, names, sample_rate, num_samples, **options)


def _check_options(sample_rate, max_seconds, validation_split, limit):
    check_split_options(validation_split, limit)
    if not (isinstance(sample_rate, int) and sample_rate > 0):
        raise DataError(f"sample_rate must be a positive int (Hz); got {sample_rate!r}")
    if not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise DataError(f"max_seconds must be a positive number; got {max_seconds!r}")
    return int(round(max_seconds * sample_rate))


def _check_speaker_options(source, split, test_speakers, speakers):
    """True for a speaker-held-out split, after checking the split options fit the source."""
    if split not in SPEAKER_SPLITS:
        raise DataError(f"split must be one of {', '.join(map(repr, SPEAKER_SPLITS))}; got {split!r}")
    if split == "default":
        if test_speakers or speakers:
            raise DataError(f'test_speakers and speakers are for split = "speaker"; got split = {split!r} '
                            f"with test_speakers={list(test_speakers)!r}, speakers={speakers!r}")
        return False
    if not isinstance(source, (str, os.PathLike)) or str(source).startswith("tfds:"):
        raise DataError(f'split = "speaker" needs a folder whose clips name their speakers (FSDD file names, '
                        f"or a speakers file); the source {str(source)[:80]!r} has no speakers")
    return True


def _speaker_table(speakers, data_root):
    """NAME -> speaker from a speakers file (`NAME SPEAKER` lines; tab, comma or spaces between)."""
    path = resolve_path(speakers, data_root, "a speakers file: one 'NAME SPEAKER' line per clip")
    table = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = re.split(r"[\t,]|\s+", line.strip(), maxsplit=1)
        if len(fields) != 2 or not fields[1].strip():
            raise DataError(f"{path}, line {number}: expected 'NAME SPEAKER' (a clip and its speaker), "
                            f"got {line[:80]!r}")
        table[fields[0].strip()] = fields[1].strip()
    if not table:
        raise DataError(f"speakers file {path} lists no clips; expected one 'NAME SPEAKER' line per clip")
    return table, path


def _speaker_of(table, keys, what):
    """The speaker `table` gives the first of `keys` it names; a DataError naming the clip otherwise."""
    table, path = table
    found = next((table[key] for key in keys if key in table), None)
    if found is None:
        raise DataError(f"{what}: not in the speakers file {path} (looked for "
                        f"{' or '.join(map(repr, keys))}); "
                        'split = "speaker" needs the speaker of every clip')
    return found


def _natural(name):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _labelled_files(folder, class_names, by_speaker=None):
    """Split -> [(path, label name)] of an FSDD folder or a folder of label sub-folders.

    by_speaker: None (the folder's own split), or (test_speakers, speakers file or None, data_root):
    the clips of test_speakers are "test", all others "train" (kdl.data.splits.speaker_split)."""
    if not folder.is_dir():
        raise DataError(f"{folder} is a file; expected {CLASSIFICATION_SOURCES}")
    wavs = walk_folder(folder, (".wav",))[1]
    if wavs:
        bad = next((p for p in wavs if not FSDD_NAME.match(p.name)), None)
        if bad is not None:
            raise DataError(f"{bad}: a folder of WAV files must name them "
                            "{label}_{speaker}_{index}.wav (the FSDD layout); put other clips in one "
                            "sub-folder per label")
        files = {"train": [], "test": []}
        for path in wavs:
            match = FSDD_NAME.match(path.name)
            if class_names is None or match["label"] in class_names:
                split = "test" if int(match["index"]) in FSDD_TEST_INDICES else "train"
                files[split].append((path, match["label"]))
        if by_speaker:
            table = _speaker_table(by_speaker[1], by_speaker[2]) if by_speaker[1] else None
            pairs = sorted(files["train"] + files["test"])
            who = [FSDD_NAME.match(path.name)["speaker"] if table is None else
                   _speaker_of(table, [path.name, path.stem], path) for path, _ in pairs]
            return _split_by_speaker(pairs, who, by_speaker[0], folder)
        return {split: pairs for split, pairs in files.items() if pairs or split == "train"}
    layout = {split: folder / split for split in ("train", "test")}
    if not all(path.is_dir() for path in layout.values()):
        layout = {"train": folder}
    files = {}
    for split, split_folder in layout.items():
        found = sorted((path.name for path in subfolders(split_folder)), key=_natural)
        unknown = sorted(set(class_names or ()) - set(found))
        if unknown:
            raise DataError(f"class_names {unknown} are not sub-folders of {split_folder}; found {found}")
        if not found:
            raise DataError(f"{split_folder} holds no .wav files and no label sub-folders; "
                            f"expected {CLASSIFICATION_SOURCES}")
        pairs = []
        for name in class_names or found:
            paths = walk_folder(split_folder / name, (".wav",), recursive=True)[1]
            if not paths:
                raise DataError(f"label folder {split_folder / name} holds no .wav files")
            pairs += [(path, name) for path in paths]
        files[split] = pairs
    if by_speaker:
        if not by_speaker[1]:
            raise DataError(f'{folder}: split = "speaker" needs data.speakers, a file naming the speaker of '
                            "every clip (the file names of a folder of label sub-folders do not)")
        table = _speaker_table(by_speaker[1], by_speaker[2])
        pairs = [pair for split_pairs in files.values() for pair in split_pairs]
        who = [_speaker_of(table, [path.relative_to(folder).as_posix(), path.name, path.stem], path)
               for path, _ in pairs]
        return _split_by_speaker(pairs, who, by_speaker[0], folder)
    return files


def _split_by_speaker(items, speakers, test_speakers, where):
    """{"train": [...], "test": [...]} of `items` by their `speakers` (kdl.data.splits.speaker_split)."""
    names = speaker_split(speakers, test_speakers, where)
    return {split: [item for item, name in zip(items, names) if name == split] for split in ("train", "test")}


def _array_clips(split, pair, what):
    """(list of 1-D float32 waveforms, targets) from a split's (waveforms, targets) pair, checked."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise DataError(f"{split} data must be a (waveforms, {what}) pair; got {type(pair).__name__}")
    waves, targets = pair
    waves = list(waves)
    if len(waves) != len(targets):
        raise DataError(f"{split} has {len(waves)} waveforms but {len(targets)} {what}; expected one each")
    checked = []
    for i, clip in enumerate(waves):
        clip = np.asarray(clip)
        if clip.ndim != 1 or clip.size == 0 or not np.issubdtype(clip.dtype, np.number):
            raise DataError(f"{split} waveforms[{i}] has shape {clip.shape} and dtype {clip.dtype}; "
                            "expected a non-empty 1-D array of samples")
        checked.append(clip.astype(np.float32))
    return checked, targets


def _classification_dataset(source, clips, class_names, sample_rate, num_samples, *,
                            validation_split, limit, seed, classes, per_class):
    splits = {name: (np.stack(waves) if waves else np.zeros((0, num_samples), np.float32), labels)
              for name, (waves, labels) in clips.items()}
    arrays = split_arrays(splits, validation_split, limit, seed, class_names=class_names, where=source,
                          classes=classes, per_class=per_class)
    datasets = {name: tf.data.Dataset.from_tensor_slices((x, y)) for name, (x, y) in arrays.items()}
    return _dataset(source, sample_rate, num_samples, class_names if classes is None else classes, datasets)


def _dataset(source, sample_rate, num_samples, class_names, datasets, transcripts=None):
    return Dataset.of(source, datasets, transcripts=transcripts, class_names=class_names,
                      sample_rate=sample_rate, num_samples=num_samples)


# --- transcripts: load_transcripts ------------------------------------------------------------


def load_transcripts(source, *, data_root=None, sample_rate=8000, max_seconds=4.0, lowercase=True,
                     validation_split=0.0, limit=None, seed=0, utterances=(2000, 300), max_digits=5,
                     split="default", test_speakers=(), speakers=None, pauses=(0.05, 0.25), overlap=0.0,
                     loudness=0.0):
    """Load a speech recognition dataset as "train", ["validation",] "test" splits of
    (waveform, transcript). Options as `load_audio`, and:

    lowercase: lower-case every transcript.
    utterances, max_digits: for "fsdd_digit_strings:FOLDER", how many (train, test) utterances to
        make, of 1 to `max_digits` digits each.
    pauses, overlap, loudness: how digit strings join their digits (see `digit_strings`).
    split, test_speakers, speakers: "default" or "speaker" (held-out speakers), as `load_audio`.
    """
    num_samples = _check_options(sample_rate, max_seconds, validation_split, limit)
    options = dict(validation_split=validation_split, limit=limit, seed=seed)
    by_speaker = _check_speaker_options(source, split, test_speakers, speakers)
    speaker_options = (test_speakers, speakers, data_root) if by_speaker else None
    clean = (lambda text: text.lower()) if lowercase else (lambda text: text)
    if isinstance(source, (tuple, dict)):
        rows = {}
        for name, pair in array_splits(source, "(waveforms, transcripts)").items():
            waves, texts = _array_clips(name, pair, "transcripts")
            bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
            if bad is not None:
                raise DataError(f"{name} transcripts[{bad}] is {type(texts[bad]).__name__}; expected str")
            where = [f"{name} example {i}" for i in range(len(waves))]
            rows[name] = ([fit_length(w, num_samples, at) for w, at in zip(waves, where)],
                          [clean(t) for t in texts], where)
        return _transcript_dataset("arrays", rows, sample_rate, num_samples, **options)
    if isinstance(source, str) and source.startswith("tfds:"):
        return _transcripts_from_tfds(source, data_root, clean, sample_rate, num_samples,
                                      validation_split, limit)
    if isinstance(source, str) and source.startswith(DIGIT_STRINGS_PREFIX):
        folder = resolve_path(source.removeprefix(DIGIT_STRINGS_PREFIX), data_root, TRANSCRIPT_SOURCES)
        rows = digit_strings(folder, utterances, sample_rate=sample_rate, num_samples=num_samples,
                             max_digits=max_digits, seed=seed, pause=pauses, overlap=overlap,
                             loudness=loudness, by_speaker=speaker_options)
        return _transcript_dataset(source, rows, sample_rate, num_samples, **options)
    if not isinstance(source, (str, os.PathLike)):
        raise unsupported_source(source, TRANSCRIPT_SOURCES)
    folder = resolve_path(source, data_root, TRANSCRIPT_SOURCES)
    if not (folder.is_dir() and (folder / "metadata.csv").is_file()):
        raise DataError(f"{folder} has no metadata.csv; expected {TRANSCRIPT_SOURCES}")
    waves, texts, where, ids = [], [], [], []
    lines = read_lines(folder / "metadata.csv")
    with progress.bar(lines, what=f"reading {folder}", unit="clips") as shown:
        for number, line in enumerate(shown, start=1):
            if not line.strip():
                continue
            fields = line.split("|")
            at = f"{folder / 'metadata.csv'}, line {number}"
            if len(fields) < 2 or not fields[0].strip() or not fields[-1].strip():
                raise DataError(f"{at}: expected 'id|transcript|normalized transcript', got {line[:80]!r}")
            path = folder / "wavs" / f"{fields[0].strip()}.wav"
            if not path.is_file():
                raise DataError(f"{at}: no audio file {path}")
            waves.append(fit_length(read_wav(path, sample_rate)[0], num_samples, str(path)))
            texts.append(clean(fields[-1].strip()))
            where.append(f"{at} ({path.name})")
            ids.append(fields[0].strip())
    if not waves:
        raise DataError(f"{folder / 'metadata.csv'} lists no clips")
    rows = {"train": (waves, texts, where)}
    if by_speaker:
        if not speakers:
            raise DataError(f'{folder}: split = "speaker" needs data.speakers, a file naming the speaker of '
                            "every clip (metadata.csv does not)")
        table = _speaker_table(speakers, data_root)
        who = [_speaker_of(table, [name, f"{name}.wav"], at) for name, at in zip(ids, where)]
        names = speaker_split(who, test_speakers, folder)
        rows = {split: tuple([item for item, name in zip(column, names) if name == split]
                             for column in (waves, texts, where)) for split in ("train", "test")}
    return _transcript_dataset(os.fspath(source), rows, sample_rate, num_samples, **options)


def digit_strings(folder, utterances=(2000, 300), *, sample_rate=8000, num_samples=32000,
                  max_digits=5, pause=(0.05, 0.25), seed=0, overlap=0.0, loudness=0.0, by_speaker=None):
    """Split -> (waveforms, transcripts, where): spoken digit strings from an FSDD folder.

    Each utterance draws 1 to `max_digits` digits, and for each a random clip of that digit from
    the split's recordings (official FSDD split: "test" uses only index 0-4; `by_speaker`, as
    `_labelled_files` takes it: "test" uses only the test speakers' recordings, "train" only the
    others'), trimmed of its silence; the clips are joined with random pauses of `pause` seconds
    (also before the first and after the last). Digits are dropped from the end until the
    utterance fits `num_samples`. The transcript is the digits as words: "three one four". The same
    seed gives the same data.

    Continuous speech, train utterances only (test utterances keep the pauses above): with
    `overlap` > 0, each join between two digits is drawn from -overlap to pause[1] seconds, a
    negative join overlapping the two clips by that much (cross-faded), 0 none, a positive one a
    pause; with `loudness` > 0, each digit's gain is drawn from -loudness to +loudness dB.
    """
    files = _labelled_files(pathlib.Path(folder), None, by_speaker)
    if "test" not in files or sorted({label for _, label in files["train"]}) != list("0123456789"):
        raise DataError(f"{folder}: digit strings need an FSDD recordings folder (digits 0-9, "
                        "{digit}_{speaker}_{index}.wav with indices 0-4 for test)")
    if not (len(pause) == 2 and 0 <= pause[0] <= pause[1]):
        raise DataError("pauses must be [shortest, longest] seconds, 0 <= shortest <= longest; "
                        f"got {list(pause)}")
    if overlap < 0 or loudness < 0:
        raise DataError(f"overlap and loudness must be at least 0; got overlap={overlap}, "
                        f"loudness={loudness}")
    rows = {}
    with progress.bar(what=f"making digit strings from {folder}", total=sum(utterances),
                      unit="utterances") as shown:
        for offset, (split, count) in enumerate(zip(("train", "test"), utterances)):
            by_digit = {d: [path for path, label in files[split] if label == str(d)] for d in range(10)}
            missing = [d for d, paths in by_digit.items() if not paths]
            if missing:
                raise DataError(f"{folder}: the {split} split has no recording of digits {missing}; digit "
                                "strings need every digit in both splits")
            cache = {}     # path -> trimmed clip: only the clips drawn are read

            def clip(path):
                if path not in cache:
                    cache[path] = trim_silence(read_wav(path, sample_rate)[0], sample_rate=sample_rate)
                return cache[path]

            rng = np.random.default_rng([seed, offset])
            continuous = split == "train" and (overlap > 0 or loudness > 0)
            waves, texts = [], []
            for _ in range(count):
                digits = rng.integers(0, 10, rng.integers(1, max_digits + 1))
                clips = [clip(by_digit[d][rng.integers(len(by_digit[d]))]) for d in digits]
                if continuous:
                    digits, wave = _continuous(digits, clips, rng, sample_rate, num_samples, pause, overlap,
                                               loudness)
                else:
                    gaps = [np.zeros(int(rng.uniform(*pause) * sample_rate), np.float32)
                            for _ in range(len(clips) + 1)]
                    while len(clips) > 1 and sum(map(len, clips + gaps)) > num_samples:
                        digits, clips, gaps = digits[:-1], clips[:-1], gaps[:-1]
                    parts = [gaps[0]] + [part for clip_, gap in zip(clips, gaps[1:]) for part in (clip_, gap)]
                    wave = np.concatenate(parts)
                waves.append(fit_length(wave[:num_samples], num_samples))
                texts.append(" ".join(DIGIT_WORDS[d] for d in digits))
                shown.update(1)
            rows[split] = waves, texts, [f"{split} utterance {i}" for i in range(count)]
    return rows


def _continuous(digits, clips, rng, sample_rate, num_samples, pause, overlap, loudness):
    """(digits kept, waveform): the clips joined as continuous speech (see `digit_strings`)."""
    gains = 10 ** (rng.uniform(-loudness, loudness, len(clips)) / 20) if loudness else np.ones(len(clips))
    clips = [(c * g).astype(np.float32) for c, g in zip(clips, gains)]
    joins = rng.uniform(-overlap, pause[1], max(len(clips) - 1, 0)) if overlap else \
        rng.uniform(*pause, max(len(clips) - 1, 0))
    edges = rng.uniform(*pause, 2)
    while True:
        wave = np.zeros(int(edges[0] * sample_rate), np.float32)
        for i, part in enumerate(clips):
            join = int(joins[i - 1] * sample_rate) if i else 0
            if join >= 0:
                wave = np.concatenate([wave, np.zeros(join, np.float32), part])
                continue
            n = min(-join, len(part) // 3, len(wave) // 3)     # cross-fade, at most a third of a clip
            fade = np.linspace(0.0, 1.0, n, dtype=np.float32)
            mixed = wave[len(wave) - n:] * (1 - fade) + part[:n] * fade
            wave = np.concatenate([wave[:len(wave) - n], mixed, part[n:]])
        wave = np.concatenate([wave, np.zeros(int(edges[1] * sample_rate), np.float32)])
        if len(clips) == 1 or len(wave) <= num_samples:
            peak = np.abs(wave).max()
            return digits, (wave / peak if peak > 1 else wave)      # louder digits stay within [-1, 1]
        digits, clips = digits[:-1], clips[:-1]


def _transcript_dataset(source, rows, sample_rate, num_samples, *, validation_split, limit, seed):
    """A Dataset from split -> (waveforms, transcripts, where); "test" held out of train if missing."""
    arrays = {name: (np.stack(waves) if waves else np.zeros((0, num_samples), np.float32),
                     np.array(list(zip(texts, where)), dtype=object).reshape(-1, 2))
              for name, (waves, texts, where) in rows.items()}
    arrays = split_arrays(arrays, validation_split, limit, seed, stratify=False)
    datasets = {name: tf.data.Dataset.from_tensor_slices(
        (waves, tf.constant([str(text) for text in rows[:, 0]], tf.string)))
        for name, (waves, rows) in arrays.items()}
    transcripts = {name: [(str(text), str(at)) for text, at in rows] for name, (_, rows) in arrays.items()}
    return _dataset(source, sample_rate, num_samples, [], datasets, transcripts)


# --- TensorFlow Datasets ------------------------------------------------------------------------


def _tfds_audio(builder, source):
    features = builder.info.features
    name = next((key for key in TFDS_AUDIO_FEATURES if key in features), None)
    if name is None:
        raise DataError(f"{source} has features {list(features.keys())}; expected an audio feature "
                        f"({' or '.join(TFDS_AUDIO_FEATURES)})")
    return name, int(getattr(features[name], "sample_rate", None) or 16000)


def _tfds_waveform(audio, from_rate, to_rate):
    """An int TFDS audio tensor -> float32 in [-1, 1] at `to_rate` (in the tf.data pipeline)."""
    waveform = tf.cast(audio, tf.float32) / 32768.0
    if from_rate != to_rate:
        waveform = tf.numpy_function(lambda x: resample(x, from_rate, to_rate), [waveform], tf.float32)
    return tf.reshape(waveform, [-1])


def _tf_fit_length(waveform, num_samples):
    """The pad/crop rule in TensorFlow: centre crop, or zeros at the end."""
    length = tf.shape(waveform)[0]
    start = tf.maximum(length - num_samples, 0) // 2
    waveform = waveform[start:start + num_samples]
    return tf.ensure_shape(tf.pad(waveform, [[0, num_samples - tf.shape(waveform)[0]]]), [num_samples])


def _classification_from_tfds(source, data_root, class_names, sample_rate, num_samples, *,
                              validation_split, limit, seed, classes, per_class):
    import tensorflow_datasets as tfds  # slow to import: only this source needs it

    builder = prepared_tfds_builder(source, data_root)
    audio, rate = _tfds_audio(builder, source)
    label = builder.info.features["label"] if "label" in builder.info.features else None
    if not isinstance(label, tfds.features.ClassLabel):
        raise DataError(f"{source} has features {list(builder.info.features.keys())}; "
                        "expected a ClassLabel 'label'")
    if class_names is not None and len(class_names) != label.num_classes:
        raise DataError(f"{source} has {label.num_classes} classes but {len(class_names)} class_names")

    def pick(example):
        waveform = _tf_fit_length(_tfds_waveform(example[audio], rate, sample_rate), num_samples)
        return waveform, tf.cast(example["label"], tf.int32)

    slices = tfds_slices(builder, validation_split, limit, TFDS_OWN_VALIDATION, hold_out=per_class is None)
    records, class_names = tfds_splits(builder, slices, class_names or label.names, classes=classes,
                                       per_class=per_class, validation_split=validation_split, seed=seed,
                                       where=source)
    datasets = {split: ds.map(pick, num_parallel_calls=tf.data.AUTOTUNE) for split, ds in records.items()}
    return _dataset(source, sample_rate, num_samples, class_names, datasets)


def _transcripts_from_tfds(source, data_root, clean, sample_rate, num_samples, validation_split, limit):
    builder = prepared_tfds_builder(source, data_root)
    audio, rate = _tfds_audio(builder, source)
    if "text" not in builder.info.features:
        raise DataError(f"{source} has features {list(builder.info.features.keys())}; "
                        "expected a 'text' transcript")
    names = TFDS_TRANSCRIPT_SPLITS.get(source.removeprefix("tfds:").split("/")[0], TFDS_OWN_VALIDATION)
    max_native = int(num_samples * rate / sample_rate)      # longer clips are left out
    datasets, transcripts = {}, {}
    for split, tfds_split in tfds_slices(builder, validation_split, limit, names).items():
        raw = builder.as_dataset(split=tfds_split)
        kept = [(clean(text.decode("utf-8")), f"{source} {tfds_split} example {i}")
                for i, (length, text) in enumerate(raw.map(
                    lambda ex: (tf.shape(ex[audio])[0], ex["text"])).as_numpy_iterator())
                if length <= max_native]

        def pick(example):
            waveform = _tf_fit_length(_tfds_waveform(example[audio], rate, sample_rate), num_samples)
            text = example["text"]
            return waveform, (tf.strings.lower(text) if clean("A") == "a" else text)

        fits = lambda example: tf.shape(example[audio])[0] <= max_native  # noqa: E731
        datasets[split] = (raw.filter(fits).map(pick, num_parallel_calls=tf.data.AUTOTUNE)
                           .apply(tf.data.experimental.assert_cardinality(len(kept))))
        transcripts[split] = kept
    return _dataset(source, sample_rate, num_samples, [], datasets, transcripts)
