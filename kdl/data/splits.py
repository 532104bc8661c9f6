"""Every rule that decides which examples land in which split, one implementation each.

- A source without a test split of its own gets a fixed hold-out of `TEST_FRACTION` (20%) of train,
  seeded with 0, so the test set does not move with `seed`.
- `limit` keeps the first `limit` examples of each split, after that test hold-out.
- `validation_split` holds a seeded fraction of the (limited) train split out as "validation",
  unless the source has a validation split of its own.
- How many are held out: `held_count(n, fraction) = ceil(n * fraction)`, for every rule
  (scikit-learn's stratified split and the TFDS slices count the same way), so a non-zero
  fraction of a non-empty split always holds out at least one example.
- Classification hold-outs are stratified (each class keeps its share), falling back to a plain
  seeded sample when a class is too small; other hold-outs (transcripts, translation pairs) are a
  plain seeded sample, returned in the source's order.

>>> import numpy as np
>>> items, labels = np.arange(10), np.arange(10) % 2
>>> (kept, _), (held, held_labels) = stratified_hold_out(items, labels, 0.2, seed=0)
>>> len(kept), sorted(held_labels.tolist())
(8, [0, 1])
>>> (kept, _), (held, _) = plain_hold_out(items, labels, 0.25, seed=0)   # ceil(10 * 0.25) = 3
>>> kept.tolist(), held.tolist()
([0, 1, 3, 5, 7, 8, 9], [2, 4, 6])
>>> {name: len(x) for name, (x, _) in split_arrays({"train": (items, labels)}, 0.25, None, 0).items()}
{'train': 6, 'validation': 2, 'test': 2}
"""

import math

import numpy as np

from kdl.errors import DataError

TEST_FRACTION = 0.2  # of train, held out as "test" when a source has no test split of its own
SPLITS = ("train", "validation", "test")


def check_split_options(validation_split, limit):
    if not 0 <= validation_split < 1:
        raise DataError(f"validation_split must be in [0, 1); got {validation_split}")
    if limit is not None and not (isinstance(limit, int) and limit > 0):
        raise DataError(f"limit must be a positive int or None; got {limit!r}")


def held_count(size, fraction):
    """How many of `size` examples a hold-out of `fraction` takes: ceil(size * fraction)."""
    return math.ceil(size * fraction)


def stratified_hold_out(items, labels, fraction, seed):
    """((items, labels) kept, (items, labels) held out), holding out a seeded `fraction` of each class."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    try:
        kept, held = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError:  # a class too small to stratify: hold out a plain seeded sample
        kept, held = train_test_split(indices, test_size=fraction, random_state=seed)
    return (items[kept], labels[kept]), (items[held], labels[held])


def plain_hold_out(items, targets, fraction, seed):
    """((items, targets) kept, (items, targets) held out): a seeded sample of `held_count` examples,
    both parts in their original order."""
    order = np.random.default_rng(seed).permutation(len(items))
    held = held_count(len(items), fraction)
    kept, out = np.sort(order[held:]), np.sort(order[:held])
    return (items[kept], targets[kept]), (items[out], targets[out])


def split_arrays(splits, validation_split, limit, seed, stratify=True):
    """Split name -> (items, targets) arrays: a missing "test" is a fixed hold-out of train (seed 0);
    then `limit` per split; then "validation" held out of train (unless the source has one).

    stratify: hold out a share of each class (targets are class indices), else a plain sample.
    """
    hold_out = stratified_hold_out if stratify else plain_hold_out
    if "test" not in splits:
        kept, test = hold_out(*splits["train"], TEST_FRACTION, seed=0)
        splits = {**splits, "train": kept, "test": test}
    limited = {name: (items[:limit], targets[:limit]) for name, (items, targets) in splits.items()}
    arrays = {"train": limited["train"]}
    if "validation" in limited:
        arrays["validation"] = limited["validation"]
    elif validation_split:
        arrays["train"], arrays["validation"] = hold_out(*arrays["train"], validation_split, seed)
    arrays["test"] = limited["test"]
    return arrays


def array_splits(source, pair="(x, y)", validation=False):
    """{"train": pair[, "validation": pair][, "test": pair]} from a pair (train only) or a dict of
    split pairs; "validation" is accepted only when `validation`."""
    splits = source if isinstance(source, dict) else {"train": source}
    allowed = set(SPLITS) if validation else {"train", "test"}
    if "train" not in splits or not set(splits) <= allowed:
        optional = ' ("validation" optional)' if validation else ""
        raise DataError(
            f'array splits {sorted(splits)}: expected {{"train": {pair}, "test": {pair}}}{optional}'
        )
    return dict(splits)


def tfds_slices(builder, validation_split, limit, names=None):
    """Our split -> a TFDS split slice ("train[:900]"), `limit` examples at most of each.

    names: our split -> the dataset's split name ("train" and "test" unless named). "test" is the
    last TEST_FRACTION of train when the dataset has no such split. "validation" (only with a
    `validation_split`) is the dataset's split `names["validation"]` when it has one, else the
    last `validation_split` of what is left of train. Under tfds.testing.mock_data (no split
    information), the named splits and "train" are taken to exist.
    """
    names = dict(names or {})
    available = set(builder.info.splits) or {"train", *names.values()}
    train, test = names.get("train", "train"), names.get("test", "test")

    def size(split):
        return min(int(builder.as_dataset(split=split).cardinality()), limit or math.inf)

    train_size = size(train)
    slices, end = {}, train_size
    if test in available:
        slices["test"] = f"{test}[:{size(test)}]"
    else:
        end = train_size - held_count(train_size, TEST_FRACTION)
        slices["test"] = f"{train}[{end}:{train_size}]"
    validation = names.get("validation")
    if validation_split and validation in available and validation != test:
        slices["validation"] = f"{validation}[:{size(validation)}]"
    elif validation_split:
        held = held_count(end, validation_split)
        slices["validation"] = f"{train}[{end - held}:{end}]"
        end -= held
    slices["train"] = f"{train}[:{end}]"
    return {name: slices[name] for name in SPLITS if name in slices}
