"""Unlabelled text for self-supervised training (the language model recipe): `load_corpus` reads
text files, CSV/TSV text columns, GLUE or line-file folders and in-memory lists into a Dataset
of texts, with more training text from `extra_sources`.

>>> data = load_corpus(["a first text", "a second one", "and a third"])   # doctest: +SKIP
"""

import os

import numpy as np
import tensorflow as tf

from kdl.data.dataset import Dataset
from kdl.data.io import decode_text, read_gzip, read_lines, read_table, resolve_path, split_lines, walk_folder
from kdl.data.splits import TEST_FRACTION, array_splits, check_split_options, plain_hold_out, split_arrays
from kdl.errors import DataError

ACCEPTED_SOURCES = (
    "a text file of one text a line (.txt, or gzip'd .gz such as multi30k/task1_raw/train.en.gz), a .csv "
    "or .tsv file with a header (its text_column is read; labels and other columns are ignored), a folder "
    "in the GLUE layout (train.tsv, dev.tsv; e.g. sst2) or of line files (train.txt[.gz], and "
    "validation.txt[.gz] / test.txt[.gz] when there), a list of strings, or "
    '{"train": [texts], "test": [texts]} ("validation" optional)'
)
LINE_FILE_SPLITS = {"train": ("train",), "validation": ("validation", "valid", "val"), "test": ("test",)}


def load_corpus(source, *, data_root=None, extra_sources=(), text_column="sentence", validation_split=0.0,
                limit=None, seed=0):
    """Raw text as "train", ["validation",] "test" splits of unbatched strings (no labels).

    source: see ACCEPTED_SOURCES; a relative path is looked up in the current directory, then
        under `data_root`, then under $KDL_DATA. Empty and blank lines are left out. The test split
        is the source's own (a GLUE folder's dev.tsv, a folder's test.txt), else a fixed 20% hold-out
        of its texts (`kdl.data.splits`, seed 0).
    extra_sources: more training text, each a source as above: all of a file, a folder's train
        split; added to the training split (after the test hold-out, before `limit` and the
        validation hold-out), never to validation or test.
    text_column: the column read from CSV/TSV files and GLUE folders.
    validation_split, limit, seed: as every kdl loader (`kdl.data.splits.split_arrays`).
    """
    check_split_options(validation_split, limit)
    if isinstance(source, (str, os.PathLike)):
        splits, where = _source_splits(source, data_root, text_column), os.fspath(source)
    else:
        splits, where = _array_splits(source), "arrays"
    if not splits["train"]:
        raise DataError(f"{where}: no text to learn from (its training texts are all empty); a language "
                        "model needs non-empty texts, one a line")
    splits = {name: np.array(texts, dtype=object) for name, texts in splits.items()}
    if "test" not in splits:          # the data layer's rule, on the source alone (not the extras)
        (kept, _), (held, _) = plain_hold_out(splits["train"], splits["train"], TEST_FRACTION, seed=0)
        splits.update(train=kept, test=held)
    for extra in extra_sources:
        texts = _source_splits(extra, data_root, text_column)["train"]
        if not texts:
            raise DataError(f"extra source {os.fspath(extra)!r} holds no text (its lines are all empty)")
        splits["train"] = np.concatenate([splits["train"], np.array(texts, dtype=object)])
    if not len(splits["train"]):
        raise DataError(f"{where}: too few texts ({len(splits['test'])}): the test hold-out takes them all; "
                        "a language model needs at least 2 texts")
    arrays = split_arrays({name: (texts, texts) for name, texts in splits.items()}, validation_split, limit,
                          seed, stratify=False)
    datasets = {name: tf.data.Dataset.from_tensor_slices(tf.constant([str(t) for t in texts], tf.string))
                for name, (texts, _) in arrays.items()}
    return Dataset.of(where, datasets)


def _source_splits(source, data_root, text_column):
    """{split: [texts]} of one file or folder source."""
    path = resolve_path(source, data_root, ACCEPTED_SOURCES)
    if path.is_dir():
        return _folder_splits(path, text_column)
    return {"train": _file_texts(path, text_column)}


def _file_texts(path, text_column):
    """The non-blank texts of a file: a CSV/TSV's text column, else its lines (gunzipped for .gz)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        texts = read_table(path, text_column, text_column)[0]     # the label column is not needed
    elif suffix == ".gz":
        texts = split_lines(decode_text(read_gzip(path), path))
    else:
        texts = read_lines(path)
    return [text.strip() for text in texts if text.strip()]


def _folder_splits(folder, text_column):
    """A GLUE folder (train.tsv; dev.tsv is "test", or "validation" beside a test.tsv) or a folder
    of line files train.txt[.gz], validation.txt[.gz], test.txt[.gz]."""
    present = {path.name.lower(): path for path in walk_folder(folder)[1]}
    if "train.tsv" in present:
        splits = {"train": _file_texts(present["train.tsv"], text_column)}
        if "test.tsv" in present:
            splits["test"] = _file_texts(present["test.tsv"], text_column)
        if "dev.tsv" in present:
            dev = "validation" if "test" in splits else "test"
            splits[dev] = _file_texts(present["dev.tsv"], text_column)
        return splits
    splits = {}
    for split, names in LINE_FILE_SPLITS.items():
        found = next((present[name + suffix] for name in names for suffix in (".txt", ".txt.gz")
                      if name + suffix in present), None)
        if found is not None:
            splits[split] = _file_texts(found, text_column)
    if "train" not in splits:
        raise DataError(f"{folder} holds neither train.tsv nor train.txt[.gz] (found "
                        f"{sorted(present)[:10]}); expected {ACCEPTED_SOURCES}")
    return splits


def _array_splits(source):
    """{split: [texts]} of in-memory texts: a list (or array) of strings, or a dict of them by split."""
    if isinstance(source, np.ndarray):
        source = source.tolist()
    if not isinstance(source, (list, tuple, dict)):
        raise DataError(f"language model data: got {type(source).__name__}; expected {ACCEPTED_SOURCES}")
    splits = array_splits(source, "[texts]", validation=True)
    checked = {}
    for name, texts in splits.items():
        texts = texts.tolist() if isinstance(texts, np.ndarray) else texts
        if not isinstance(texts, (list, tuple)):
            raise DataError(f"{name} texts: got {type(texts).__name__}; expected a list of strings")
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise DataError(f"{name} texts[{bad}] is {type(texts[bad]).__name__} {repr(texts[bad])[:60]}; "
                            "expected a string (a language model learns from texts alone: pass no labels)")
        checked[name] = [text.strip() for text in texts if text.strip()]
    return checked
