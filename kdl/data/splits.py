"""Every rule that decides which examples land in which split, one implementation each.

- A source without a test split of its own gets a fixed hold-out of `TEST_FRACTION` (20%) of train,
  seeded with 0, so the test set does not move with `seed`.
- `limit` keeps a seeded sample of `limit` examples of each split (`limited`), after that test
  hold-out, in the source's order: stratified for classification (each class keeps its share, and
  every class at least one example while `limit` allows), a plain sample otherwise; the test split's
  sample is seeded with 0, the others' with `seed`. (TFDS sources take the first `limit` records,
  `tfds_slices`: TFDS stores a dataset's records shuffled.) A training split left without a class
  that the test split has is a warning naming the class (`warn_missing_classes`).
- `validation_split` holds a seeded fraction of the (limited) train split out as "validation",
  unless the source has a validation split of its own.
- How many are held out: `held_count(n, fraction) = ceil(n * fraction)`, for every rule
  (scikit-learn's stratified split and the TFDS slices count the same way), so a non-zero
  fraction of a non-empty split always holds out at least one example.
- `split = "speaker"` (`speaker_split`): whole speakers are held out; every example of a speaker in
  `test_speakers` is "test", every other example "train", so no voice is in both.
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

from kdl.errors import DataError, warn

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


SPEAKER_SPLITS = ("default", "speaker")   # data.split: the source's own split, or held-out speakers


def speaker_split(speakers, test_speakers, where="data"):
    """The split name ("train" or "test") of each example, by its speaker: the speakers named in
    `test_speakers` are "test", all others "train". Each test speaker must be among `speakers`, and
    at least one speaker must be left to train on.

    >>> speaker_split(["ann", "bob", "ann", "cy"], ["ann"])
    ['test', 'train', 'test', 'train']
    """
    found = sorted(set(speakers))
    unknown = sorted(set(test_speakers) - set(found))
    if not test_speakers or unknown:
        raise DataError(f'{where}: split = "speaker" needs data.test_speakers naming speakers of the data; '
                        f"got {list(test_speakers)}{f' ({unknown} not found)' if unknown else ''}; "
                        f"its speakers: {found}")
    if set(found) <= set(test_speakers):
        raise DataError(f"{where}: test_speakers {sorted(test_speakers)} are all the speakers; "
                        "leave at least one to train on")
    held = set(test_speakers)
    return ["test" if speaker in held else "train" for speaker in speakers]


def limited(items, targets, limit, seed, stratify):
    """(items, targets) cut to a seeded sample of `limit` examples (all of them when there are no
    more), in their original order. stratify: each class (targets are class indices) keeps its
    share, and every class at least one example when `limit` is at least the number of classes.

    >>> items, labels = np.arange(12), np.array([0] * 8 + [1] * 2 + [2] * 2)
    >>> sorted(limited(items, labels, 4, seed=0, stratify=True)[1].tolist())
    [0, 0, 1, 2]
    """
    if limit is None or len(items) <= limit:
        return items, targets
    rng = np.random.default_rng(seed)
    if stratify and limit >= len(np.unique(targets)):
        chosen = _stratified_sample(np.asarray(targets), limit, rng)
    else:
        chosen = rng.choice(len(items), limit, replace=False)
    chosen = np.sort(chosen)
    return items[chosen], targets[chosen]


def _stratified_sample(labels, count, rng):
    """Indices of `count` examples: one of each class, then the rest shared out in proportion to
    what each class has left (largest remainders first, ties broken at random)."""
    classes, sizes = np.unique(labels, return_counts=True)
    spare, rest = sizes - 1, count - len(classes)       # count < len(labels): some class has spare
    take, remainders = 1 + spare * rest // spare.sum(), spare * rest % spare.sum()   # exact integers
    ties = rng.permutation(len(classes))
    for at in sorted(range(len(classes)), key=lambda i: (-remainders[i], ties[i]))[:count - take.sum()]:
        take[at] += 1
    return np.concatenate([rng.choice(np.flatnonzero(labels == label), n, replace=False)
                           for label, n in zip(classes, take)])


def warn_missing_classes(train_labels, test_labels, class_names=None, where="data"):
    """Warn (KdlWarning) when the test split has classes that the training split has none of: the
    model cannot learn them. `class_names` names class indices in the message."""
    missing = np.setdiff1d(np.unique(test_labels), np.unique(train_labels))
    if missing.size:
        names = [class_names[i] if class_names is not None and 0 <= i < len(class_names) else str(i)
                 for i in missing.tolist()]
        shown = ", ".join(repr(name) for name in names[:20]) + (" ..." if len(names) > 20 else "")
        warn(f"{where}: the training split has no examples of {len(names)} class(es) that the test split "
             f"has: {shown}; the model cannot learn them (raise data.limit, or add examples of them)")


def split_arrays(splits, validation_split, limit, seed, stratify=True, class_names=None, where="data"):
    """Split name -> (items, targets) arrays: a missing "test" is a fixed hold-out of train (seed 0);
    then `limit` per split (a seeded sample, `limited`); then "validation" held out of train
    (unless the source has one).

    stratify: hold out and limit a share of each class (targets are class indices), else a plain
    sample; a training split then left without a class of the test split is a warning naming it
    (by `class_names` when given) and the source (`where`).
    """
    hold_out = stratified_hold_out if stratify else plain_hold_out
    if "test" not in splits:
        kept, test = hold_out(*splits["train"], TEST_FRACTION, seed=0)
        splits = {**splits, "train": kept, "test": test}
    cut = {name: limited(items, targets, limit, 0 if name == "test" else seed, stratify)
           for name, (items, targets) in splits.items()}
    arrays = {"train": cut["train"]}
    if "validation" in cut:
        arrays["validation"] = cut["validation"]
    elif validation_split:
        arrays["train"], arrays["validation"] = hold_out(*arrays["train"], validation_split, seed)
    arrays["test"] = cut["test"]
    if stratify:
        warn_missing_classes(arrays["train"][1], arrays["test"][1], class_names, where)
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
