"""Helpers every kdl data source shares: finding a path, checking options, stratified hold-outs,
and class names for integer labels.

>>> import numpy as np
>>> (kept, _), (held, _) = hold_out(np.arange(10), np.arange(10) % 2, 0.2, seed=0)
>>> len(kept), len(held)
(8, 2)
>>> class_names_for(np.array([0, 2, 1]), None)
['0', '1', '2']
"""

import difflib
import math
import os
import pathlib

import numpy as np
from sklearn.model_selection import train_test_split

from kdl.errors import DataError

TEST_FRACTION = 0.2  # of train, held out as "test" when a source has no test split of its own


def check_split_options(validation_split, limit):
    if not 0 <= validation_split < 1:
        raise DataError(f"validation_split must be in [0, 1); got {validation_split}")
    if limit is not None and not (isinstance(limit, int) and limit > 0):
        raise DataError(f"limit must be a positive int or None; got {limit!r}")


def resolve_path(source, data_root, accepted):
    """The existing path `source` names: as given, or relative to the cwd, data_root, then $KDL_DATA.

    `accepted` describes the sources the caller takes, for the error message.
    """
    path = pathlib.Path(source).expanduser()
    roots = [pathlib.Path.cwd(), data_root, os.environ.get("KDL_DATA")]
    candidates = (
        [path] if path.is_absolute() else [pathlib.Path(root).expanduser() / path for root in roots if root]
    )
    found = next((candidate for candidate in candidates if candidate.exists()), None)
    if found is None:
        raise DataError(
            f"data source {os.fspath(source)!r} not found; tried {', '.join(map(str, candidates))}. "
            "Relative paths are looked up in the current directory, then data_root (--data-root), then "
            f"the KDL_DATA environment variable{'' if os.environ.get('KDL_DATA') else ' (not set)'}. "
            f"Accepted sources: {accepted}"
        )
    return found


def hold_out(items, labels, fraction, seed):
    """((items, labels) kept, (items, labels) held out), holding out a seeded `fraction` of each class."""
    indices = np.arange(len(labels))
    try:
        kept, held = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError:  # a class too small to stratify: hold out a plain seeded sample
        kept, held = train_test_split(indices, test_size=fraction, random_state=seed)
    return (items[kept], labels[kept]), (items[held], labels[held])


def split_arrays(splits, validation_split, limit, seed):
    """Split name -> (items, labels): a missing "test" is a fixed stratified hold-out of train;
    then `limit` per split; then "validation" held out of train (unless the source has one)."""
    if "test" not in splits:
        kept, test = hold_out(*splits["train"], TEST_FRACTION, seed=0)
        splits = {**splits, "train": kept, "test": test}
    limited = {name: (items[:limit], labels[:limit]) for name, (items, labels) in splits.items()}
    arrays = {"train": limited["train"]}
    if "validation" in limited:
        arrays["validation"] = limited["validation"]
    elif validation_split:
        arrays["train"], arrays["validation"] = hold_out(*arrays["train"], validation_split, seed)
    arrays["test"] = limited["test"]
    return arrays


def class_names_for(labels, class_names):
    """`class_names`, or "0".."max label", after checking every label indexes one (and there are 2+)."""
    num_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
    outside = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if outside.size:
        basis = "len(class_names)" if class_names is not None else "max label + 1"
        raise DataError(
            f"labels {outside.tolist()[:10]} are outside [0, {num_classes}) ({num_classes} = {basis})"
        )
    if num_classes < 2:
        raise DataError(f"found {num_classes} class; a classifier needs at least 2")
    return list(class_names) if class_names is not None else [str(label) for label in range(num_classes)]


def array_splits(source, pair="(x, y)"):
    """{"train": pair[, "test": pair]} from a pair (train only) or a dict of split pairs."""
    splits = source if isinstance(source, dict) else {"train": source}
    if "train" not in splits or not set(splits) <= {"train", "test"}:
        raise DataError(f'array splits {sorted(splits)}: expected {{"train": {pair}, "test": {pair}}}')
    return dict(splits)


def prepared_tfds_builder(source, data_root):
    """The TFDS builder of "tfds:NAME", downloaded and prepared (into `data_root` if given)."""
    import tensorflow_datasets as tfds  # slow to import: only TFDS sources need it

    name = source.removeprefix("tfds:")
    try:
        builder = tfds.builder(name, data_dir=data_root and os.fspath(data_root))
    except tfds.core.DatasetNotFoundError as error:
        close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False), n=5)
        raise DataError(f"unknown TFDS dataset {name!r}; close matches: {close or 'none'}") from error
    try:
        builder.download_and_prepare()
    except Exception as error:  # no network, a missing extra, a bad data_dir: each raises its own type
        raise DataError(
            f"TFDS dataset {name!r} could not be downloaded or found in data_dir {builder.data_dir}: {error}"
        ) from error
    return builder


def tfds_slices(builder, test_split, validation_split, limit):
    """Our split -> a TFDS split slice: `limit` examples at most, then "validation" from train's end."""

    def size(split):
        return min(int(builder.as_dataset(split=split).cardinality()), limit or math.inf)

    train_size = size("train")
    held = math.ceil(train_size * validation_split)
    slices = {"train": f"train[:{train_size - held}]"}
    if validation_split:
        slices["validation"] = f"train[{train_size - held}:{train_size}]"
    slices["test"] = f"{test_split}[:{size(test_split)}]"
    return slices
