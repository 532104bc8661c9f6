"""Text classification data from one call: `load_texts(source)` -> `Dataset`.

Every source gives the same thing: `info` (class names, split sizes) and `splits`, each a
`tf.data.Dataset` of unbatched `(text, label)` pairs: a raw UTF-8 string and an int32 label.
Sources:

- a folder in the GLUE layout: `train.tsv` and `dev.tsv` (and `test.tsv` when it is labelled),
  each with a header naming the text and label columns (e.g. `../shared/data/sst2`);
- a `.csv` or `.tsv` file with a header naming the text and label columns;
- a folder with one sub-folder of `.txt` files per class, one example a file, directly or
  under `train/` and `test/` (the `aclImdb` layout; pass `class_names=["neg", "pos"]` to skip `unsup/`);
- `"tfds:NAME"`: `"tfds:imdb_reviews"`, `"tfds:ag_news_subset"`, `"tfds:glue/sst2"`, ...;
- arrays: `(texts, labels)` or `{"train": (texts, labels), "test": (texts, labels)}`.

Labels are integer class indices or class names (sorted to give indices). A GLUE folder's
`dev.tsv` is the "test" split, unless a labelled `test.tsv` is there: then `dev.tsv` is
"validation". Any other source without a test split gets a fixed, stratified 20% test split.

>>> data = load_texts((["a fine film", "dull", "great fun", "a mess"] * 5, ["pos", "neg", "pos", "neg"] * 5))
>>> data.info.class_names, data.info.num_examples
(['neg', 'pos'], {'train': 16, 'test': 4})
>>> text, label = next(iter(data.splits["train"]))
>>> text.dtype.name, label.dtype.name
('string', 'int32')
"""

import math
import os
import re

import numpy as np
import tensorflow as tf

from kdl import progress
from kdl.data.dataset import Dataset, class_names_for
from kdl.data.io import (
    read_lines,
    read_table,
    read_text,
    resolve_path,
    subfolders,
    unsupported_source,
    walk_folder,
)
from kdl.data.splits import (
    array_splits,
    check_class_options,
    check_split_options,
    source_class_names,
    split_arrays,
    tfds_slices,
    tfds_splits,
)
from kdl.data.tfds_builder import prepared_tfds_builder
from kdl.errors import DataError

INTEGER = re.compile(r"-?[0-9]+")    # a class index label (ASCII digits: "²".isdigit() is True too)
MAX_CLASSES = 2**31 - 1              # labels are int32
GLUE_FILES = {"train": "train.tsv", "test": "test.tsv", "dev": "dev.tsv"}
TFDS_TEXT_FEATURES = ("text", "sentence", "description")  # tried in order when text_column is absent
ACCEPTED_SOURCES = (
    "a GLUE folder (train.tsv, dev.tsv[, test.tsv] with a header), a .csv or .tsv file with a header, "
    "a folder with one sub-folder of .txt files per class (directly or under train/ and test/), "
    '"tfds:NAME" (e.g. "tfds:imdb_reviews"), a (texts, labels) tuple, or '
    '{"train": (texts, labels), "test": (texts, labels)}'
)


def load_texts(
    source,
    *,
    data_root=None,
    text_column="sentence",
    label_column="label",
    class_names=None,
    validation_split=0.0,
    limit=None,
    seed=0,
    classes=None,
    per_class=None,
):
    """Load a text classification dataset as "train", ["validation",] "test" splits.

    source: see the module docstring. A relative path is looked up in the current directory,
        then under `data_root`, then under the `KDL_DATA` environment variable.
    text_column, label_column: the header names of the columns to read (CSV/TSV/GLUE; for
        TFDS, the text feature when the dataset has it).
    class_names: the classes, in index order: names for integer labels, the label values
        when they are names, or (class folders) which sub-folders to use.
    validation_split: fraction of train held out as "validation", stratified and seeded by `seed`.
    limit: keep at most this many examples of each split: a seeded sample, each class keeping its
        share (`kdl.data.splits.limited`), taken after the test hold-out.
    classes: only these classes (by name), in every split, their labels renumbered in this order.
    per_class: train (and the validation held out of it) on at most this many examples of each
        class, a seeded stratified sample; the test split is not cut (`kdl.data.splits`).
    """
    check_split_options(validation_split, limit)
    check_class_options(classes, per_class)
    class_names = source_class_names(class_names, classes)
    options = dict(validation_split=validation_split, limit=limit, seed=seed, classes=classes,
                   per_class=per_class)
    if isinstance(source, (tuple, dict)):
        pairs = array_splits(source, "(texts, labels)")
        rows = {name: _array_rows(name, pair) for name, pair in pairs.items()}
        return _from_rows("arrays", rows, class_names, **options)
    if isinstance(source, str) and source.startswith("tfds:"):
        return _from_tfds(source, data_root, text_column, class_names, **options)
    if not isinstance(source, (str, os.PathLike)):
        raise unsupported_source(source, ACCEPTED_SOURCES)
    path = resolve_path(source, data_root, ACCEPTED_SOURCES)
    columns = (text_column, label_column)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        return _from_rows(os.fspath(source), {"train": read_table(path, *columns)}, class_names, **options)
    if path.is_dir() and (path / GLUE_FILES["train"]).is_file():
        return _from_rows(os.fspath(source), _glue_rows(path, columns), class_names, **options)
    if path.is_dir() and subfolders(path):
        rows = _class_folder_rows(path, class_names)
        names = class_names or sorted(set(rows["train"][1]))   # folder names, even "1", "2", are names
        return _from_rows(os.fspath(source), rows, names, **options)
    found = "a file" if path.is_file() else f"a folder holding {sorted(p.name for p in path.iterdir())[:10]}"
    raise DataError(f"{path} is {found}; expected {ACCEPTED_SOURCES}")


# --- files: GLUE folders and class folders of .txt files ------------------------------------------


def _glue_rows(folder, columns):
    """GLUE layout: train.tsv, and dev.tsv as "test" -- or as "validation" next to a labelled test.tsv."""
    rows = {"train": read_table(folder / GLUE_FILES["train"], *columns)}
    dev, test = folder / GLUE_FILES["dev"], folder / GLUE_FILES["test"]
    header = read_lines(test)[:1] if test.is_file() else []
    labelled_test = bool(header) and set(columns) <= set(header[0].split("\t"))
    if labelled_test:
        rows["test"] = read_table(test, *columns)
    if dev.is_file():
        rows["validation" if labelled_test else "test"] = read_table(dev, *columns)
    return rows


def _class_folder_rows(folder, class_names):
    """One example per .txt file, its class the sub-folder name; directly or under train/ and test/."""
    layout = {split: folder / split for split in ("train", "test")}
    if not all(path.is_dir() for path in layout.values()):
        layout = {"train": folder}
    rows = {}
    for split, split_folder in layout.items():
        found = [path.name for path in subfolders(split_folder)]
        unknown = sorted(set(class_names or ()) - set(found))
        if unknown:
            raise DataError(f"class_names {unknown} are not sub-folders of {split_folder}; found {found}")
        labelled = []
        for name in class_names or found:
            files = walk_folder(split_folder / name, (".txt",))[1]
            if not files:
                raise DataError(f"class folder {split_folder / name} holds no .txt files")
            labelled += [(path, name) for path in files]
        with progress.bar(labelled, what=f"reading {split_folder}", unit="files") as shown:
            texts = [read_text(path) for path, _ in shown]
        rows[split] = texts, [name for _, name in labelled], [str(path) for path, _ in labelled]
    return rows


# --- labels: integer indices or class names, checked with where each came from -----------------


def _label_ids(rows, class_names, source):
    """(split -> int32 label array, class names) from raw string labels, checked line by line."""
    values = [(value, at) for _, labels, where in rows.values() for value, at in zip(labels, where)]
    most, names_given = (MAX_CLASSES, "") if class_names is None else (len(class_names), " (class_names)")
    for value, at in values:
        if not value or (_is_number(value) and not _is_integer(value)):
            raise DataError(f"{at}: label {value!r} is neither an integer class index nor a class name")
        if _is_integer(value) and value not in (class_names or ()) and not 0 <= int(value) < most:
            raise DataError(f"{at}: label {value} is not a class index; "
                            f"expected 0 to {most - 1:,}{names_given}")
    integers = [(value, at) for value, at in values if _is_integer(value)]
    names = [(value, at) for value, at in values if not _is_integer(value)]
    if class_names is not None:
        index = {name: i for i, name in enumerate(class_names)}
        bad = next(((value, at) for value, at in names if value not in index), None)
        if bad:
            raise DataError(f"{bad[1]}: label {bad[0]!r} is not one of class_names {list(class_names)}")
        to_id = lambda value: index[value] if value in index else int(value)  # noqa: E731
    elif integers and names:
        raise DataError(
            f"{names[0][1]}: label {names[0][0]!r} is not an integer, but {integers[0][1]} has "
            f"label {integers[0][0]!r}; labels must be all class indices or all class names"
        )
    elif names:
        class_names = sorted({value for value, _ in names})
        index = {name: i for i, name in enumerate(class_names)}
        to_id = index.__getitem__
    else:
        to_id = int
    ids = {split: np.array([to_id(value) for value in labels], np.int32)
           for split, (_, labels, _) in rows.items()}
    _check_two_classes(rows["train"], ids["train"], source)
    return ids, class_names_for(np.concatenate(list(ids.values())), class_names)


def _is_integer(value):
    return INTEGER.fullmatch(value) is not None


def _is_number(value):
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _from_rows(source, rows, class_names, *, validation_split, limit, seed, classes, per_class):
    """A Dataset from split -> (texts, raw labels, where) rows."""
    ids, class_names = _label_ids(rows, class_names, source)
    splits = {split: (np.array(texts, dtype=object), ids[split]) for split, (texts, _, _) in rows.items()}
    arrays = split_arrays(splits, validation_split, limit, seed, class_names=class_names, where=source,
                          classes=classes, per_class=per_class)
    datasets = {
        split: tf.data.Dataset.from_tensor_slices((tf.constant(list(texts), tf.string), labels))
        for split, (texts, labels) in arrays.items()
    }
    return Dataset.of(source, datasets, class_names=class_names if classes is None else classes)


def _check_two_classes(train_rows, labels, source):
    present = np.unique(labels)
    if len(present) < 2:
        _, raw_labels, where = train_rows
        first = where[0] if where else source
        at = first.rsplit(", line ", 1)[0] if ", line " in first else source
        only = f"class {raw_labels[0]!r} only" if len(present) else "no examples"
        raise DataError(
            f"{at}: the training data has {only} ({len(labels)} examples); "
            "a classifier needs at least 2 classes"
        )


def _array_rows(split, pair):
    """(texts, raw labels, where) from a split's (texts, labels) pair, checked."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise DataError(f"{split} data must be a (texts, labels) pair; got {type(pair).__name__}")
    texts, labels = list(pair[0]), list(np.asarray(pair[1]).tolist())
    if len(texts) != len(labels):
        raise DataError(
            f"{split} has {len(texts)} texts but {len(labels)} labels; expected one label per text"
        )
    bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if bad is not None:
        raise DataError(f"{split} texts[{bad}] is {type(texts[bad]).__name__} {texts[bad]!r}; expected str")
    return texts, [str(label) for label in labels], [f"{split} labels[{i}]" for i in range(len(labels))]


# --- TensorFlow Datasets --------------------------------------------------------------------------


def _from_tfds(source, data_root, text_column, class_names, *, validation_split, limit, seed, classes,
               per_class):
    import tensorflow_datasets as tfds  # slow to import: only this source needs it

    builder = prepared_tfds_builder(source, data_root)
    features = builder.info.features
    text_feature = next((key for key in (text_column, *TFDS_TEXT_FEATURES) if key in features), None)
    label = features["label"] if "label" in features else None  # FeaturesDict has no .get
    if text_feature is None or not isinstance(label, tfds.features.ClassLabel):
        raise DataError(
            f"{source} has features {list(features.keys())}; expected a text feature "
            f"({text_column!r} or one of {list(TFDS_TEXT_FEATURES)}) and a ClassLabel 'label'"
        )
    if class_names is not None and len(class_names) != label.num_classes:
        raise DataError(f"{source} has {label.num_classes} classes but {len(class_names)} class_names")
    test_split = "validation" if source.startswith("tfds:glue/") else "test"  # GLUE hides test labels
    pick = lambda example: (example[text_feature], tf.cast(example["label"], tf.int32))  # noqa: E731
    slices = tfds_slices(builder, validation_split, limit, {"test": test_split}, hold_out=per_class is None)
    records, class_names = tfds_splits(builder, slices, class_names or label.names, classes=classes,
                                       per_class=per_class, validation_split=validation_split, seed=seed,
                                       where=source)
    datasets = {split: ds.map(pick) for split, ds in records.items()}
    return Dataset.of(source, datasets, class_names=class_names)
