"""Translation data from one call: `load_parallel(source, source_language, target_language)`.

Every source gives the same thing: `info` (languages, split sizes) and `splits`, each a
`tf.data.Dataset` of unbatched `(source_text, target_text)` raw UTF-8 string pairs. Sources:

- a folder of aligned line files `{split}.{language}`, gzip'd (`.gz`) or not: line i of
  `train.en` translates line i of `train.de` (the Multi30k `task1_raw` layout). `splits` maps
  our split names to the file names' split part, e.g. `{"validation": "val", "test": "test_2016_flickr"}`;
  a folder holding only `train.en` and `train.de` has no test split;
- a `.tsv` or `.txt` file of tab-separated pairs, one a line, no header: source text, target
  text, then anything (the Tatoeba/Anki `spa.txt` layout: `english<TAB>spanish<TAB>attribution`);
  `reverse=True` reads the second column as the source;
- `"tfds:NAME"`: a TFDS translation dataset, e.g. `"tfds:ted_hrlr_translate/pt_to_en"`,
  `"tfds:wmt14_translate/de-en"`; its features are named by language;
- arrays: `(source_texts, target_texts)` or `{"train": (...), "test": (...)}`.

A source without a test split gets a fixed 20% test hold-out of train; `validation_split`
holds out a fraction of train as "validation" when the source has none: both plain seeded
samples of ceil(N x fraction) pairs (`kdl.data.splits`). Empty lines, files of different
lengths and missing splits are a `DataError` naming the file and line.

>>> data = load_parallel((["a cat", "a dog", "two cats", "one dog", "a bird"] * 4,
...                       ["eine Katze", "ein Hund", "zwei Katzen", "ein Hund", "ein Vogel"] * 4),
...                      source_language="en", target_language="de")
>>> data.info.num_examples
{'train': 16, 'test': 4}
>>> [text.numpy().decode() for text in next(iter(data.splits["train"]))]
['a cat', 'eine Katze']
"""

import os

import numpy as np
import tensorflow as tf

from kdl.data.dataset import Dataset
from kdl.data.io import (
    decode_text,
    read_gzip,
    read_lines,
    read_text,
    resolve_path,
    split_lines,
    unsupported_source,
    walk_folder,
)
from kdl.data.splits import SPLITS, array_splits, check_split_options, split_arrays
from kdl.data.tfds_builder import prepared_tfds_builder
from kdl.errors import DataError

ACCEPTED_SOURCES = (
    "a folder of aligned line files {split}.{language}[.gz] (e.g. train.en, train.de), a .tsv/.txt file "
    "of tab-separated pairs (source<TAB>target[<TAB>...]), \"tfds:NAME\" (e.g. "
    "\"tfds:ted_hrlr_translate/pt_to_en\"), a (source_texts, target_texts) tuple, or "
    "{\"train\": (sources, targets), \"test\": (sources, targets)}"
)


def load_parallel(source, *, source_language="en", target_language="de", splits=None, data_root=None,
                  validation_split=0.0, limit=None, reverse=False, seed=0):
    """Load a translation dataset as "train", ["validation",] "test" splits of string pairs.

    source: see the module docstring. A relative path is looked up in the current directory,
        then under `data_root`, then under the `KDL_DATA` environment variable.
    splits: our split name -> the source's split name (line files and TFDS), e.g.
        `{"validation": "val", "test": "test_2016_flickr"}`; unnamed splits keep their name.
    validation_split: fraction of train held out as "validation" when the source has none.
    limit: keep at most this many pairs of each split: a seeded sample in the source's order
        (`kdl.data.splits.limited`), taken after the test hold-out; TFDS: the first `limit`.
    reverse: a TSV file's second column is the source text.
    """
    check_split_options(validation_split, limit)
    names = _split_names(splits)
    if isinstance(source, (tuple, dict)):
        pairs, where = _array_pairs(source), "arrays"
    elif isinstance(source, str) and source.startswith("tfds:"):
        pairs, where = _tfds_pairs(source, data_root, source_language, target_language, names, limit), source
    elif isinstance(source, (str, os.PathLike)):
        path, where = resolve_path(source, data_root, ACCEPTED_SOURCES), os.fspath(source)
        if path.is_dir():
            pairs = _line_file_pairs(path, source_language, target_language, names, splits)
        elif path.suffix.lower() in (".tsv", ".txt"):
            pairs = {"train": _tsv_pairs(path, reverse)}
        else:
            raise DataError(f"{path} is a {path.suffix or 'suffix-less'} file; expected {ACCEPTED_SOURCES}")
    else:
        raise unsupported_source(source, ACCEPTED_SOURCES)
    arrays = {split: (np.array(s, dtype=object), np.array(t, dtype=object))
              for split, (s, t) in pairs.items()}
    arrays = split_arrays(arrays, validation_split, limit, seed, stratify=False)
    datasets = {split: tf.data.Dataset.from_tensor_slices((_strings(s), _strings(t)))
                for split, (s, t) in arrays.items()}
    return Dataset.of(where, datasets, source_language=source_language, target_language=target_language)


def _strings(texts):
    return tf.constant([str(text) for text in texts], tf.string)


def _split_names(splits):
    splits = dict(splits or {})
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise DataError(f"splits: unknown split {unknown[0]!r}; the keys must be among {list(SPLITS)} "
                        "(e.g. {validation = \"val\", test = \"test_2016_flickr\"})")
    return {split: splits.get(split, split) for split in SPLITS}


# --- aligned line files ---------------------------------------------------------------------------


def _line_file_pairs(folder, source_language, target_language, names, asked):
    """{split: (sources, targets)} from {name}.{language}[.gz] files; train and test must exist,
    validation too when `asked` names it. A folder that holds only the train pair has no test
    split (20% of train is held out as "test")."""
    languages = (source_language, target_language)
    suffixes = [f".{language}{gz}".lower() for language in languages for gz in ("", ".gz")]
    present = {path.name: path for path in walk_folder(folder, suffixes)[1]}   # links checked
    train_files = {_line_file(present, names["train"], language) for language in languages}
    only_train = None not in train_files and set(present.values()) == train_files
    pairs = {}
    for split, name in names.items():
        files = [_line_file(present, name, language) for language in languages]
        if None in files:
            if split == "validation" and "validation" not in (asked or {}):
                continue
            if split == "test" and only_train and "test" not in (asked or {}):
                continue
            missing = f"{name}.{(source_language, target_language)[files.index(None)]}"
            found = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
            raise DataError(f"{folder}: no {split} split: {missing}[.gz] is missing (found {found[:12]}); "
                            f"name the files' split with splits = {{{split} = \"...\"}}")
        sources, targets = (_read_sentences(path) for path in files)
        if len(sources) != len(targets):
            raise DataError(f"{files[0]} has {len(sources)} lines but {files[1]} has {len(targets)}; "
                            "aligned files need one translation per line")
        pairs[split] = sources, targets
    return pairs


def _line_file(present, name, language):
    """The file {name}.{language}, or {name}.{language}.gz, among `present` (name -> path); or None."""
    return present.get(f"{name}.{language}", present.get(f"{name}.{language}.gz"))


def _read_sentences(path):
    """The lines of a (gzip'd) UTF-8 file; an empty line is a DataError naming file and line. A
    gzip'd file that decompresses past `kdl.data.io.GZIP_MAX_BYTES` is refused (`read_gzip`)."""
    text = decode_text(read_gzip(path), path) if path.suffix == ".gz" else read_text(path)
    lines = split_lines(text)
    empty = next((i for i, line in enumerate(lines) if not line.strip()), None)
    if empty is not None:
        raise DataError(f"{path}, line {empty + 1}: empty line; every line must hold one sentence")
    return lines


# --- TSV pairs --------------------------------------------------------------------------------------


def _tsv_pairs(path, reverse):
    sources, targets = [], []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(f"{path}, line {number}: expected source<TAB>target[<TAB>...], got {line[:80]!r}")
        source, target = (fields[1], fields[0]) if reverse else (fields[0], fields[1])
        sources.append(source)
        targets.append(target)
    if not sources:
        raise DataError(f"{path} holds no sentence pairs; expected lines source<TAB>target")
    return sources, targets


# --- arrays and TFDS --------------------------------------------------------------------------------


def _array_pairs(source):
    pairs = {}
    for split, pair in array_splits(source, "(sources, targets)", validation=True).items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise DataError(f"{split} data must be a (source_texts, target_texts) pair; "
                            f"got {type(pair).__name__}")
        sources, targets = list(pair[0]), list(pair[1])
        if len(sources) != len(targets):
            raise DataError(f"{split} has {len(sources)} source texts but {len(targets)} target texts")
        for name, texts in (("source", sources), ("target", targets)):
            bad = next((i for i, text in enumerate(texts)
                        if not isinstance(text, str) or not text.strip()), None)
            if bad is not None:
                raise DataError(f"{split} {name} text [{bad}] is {texts[bad]!r}; expected a non-empty str")
        pairs[split] = sources, targets
    return pairs


def _tfds_pairs(source, data_root, source_language, target_language, names, limit):
    builder = prepared_tfds_builder(source, data_root)
    features = list(builder.info.features.keys())
    missing = [lang for lang in (source_language, target_language) if lang not in features]
    if missing:
        raise DataError(f"{source} has languages {features}; no {missing[0]!r} "
                        "(set source/target to two of them)")
    pairs = {}
    for split, name in names.items():
        known = builder.info.splits    # empty under tfds.testing.mock_data: every split is there
        if known and name not in known:
            if split == "validation":
                continue
            raise DataError(f"{source} has no split {name!r}; it has {sorted(builder.info.splits)}")
        sources, targets = [], []
        for example in builder.as_dataset(split=f"{name}[:{limit}]" if limit else name).as_numpy_iterator():
            sources.append(example[source_language].decode("utf-8"))
            targets.append(example[target_language].decode("utf-8"))
        pairs[split] = sources, targets
    return pairs
