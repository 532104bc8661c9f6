"""Every rule that decides which examples land in which split, one implementation each.

- A source without a test split of its own gets a fixed hold-out of `TEST_FRACTION` (20%) of train,
  seeded with 0, so the test set does not move with `seed`.
- `limit` keeps a seeded sample of `limit` examples of each split (`limited`), after that test
  hold-out, in the source's order: stratified for classification (each class keeps its share, and
  every class at least one example while `limit` allows), a plain sample otherwise; the test split's
  sample is seeded with 0, the others' with `seed`. (TFDS sources take the first `limit` records,
  `tfds_slices`: TFDS stores a dataset's records shuffled.) A training split left without a class
  that the test split has is a warning naming the class (`warn_missing_classes`).
- `classes` (classification; `class_subset`, `keep_classes`): after `limit`, only the examples of
  the named classes are kept, in every split, their labels renumbered 0..k-1 in the order named.
- `validation_split` holds a seeded fraction of the (limited) train split out as "validation",
  unless the source has a validation split of its own.
- `per_class` (classification; `labelled_budget`): instead, train is cut to a seeded sample of at
  most `per_class` examples of each class, and "validation" (unless the source has its own) is
  `held_count(n, validation_split)` of each class's n, so train + validation hold `per_class` of
  each class that has that many (a class with fewer keeps them all). The test split is not cut.
  TFDS sources read each slice's labels once and filter the slices to the same choice (`tfds_splits`).
  A loader given `class_names` equal to `classes` (what a run records) reads the source with its
  own names (`source_class_names`).
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

from kdl.errors import ConfigError, DataError, warn

TEST_FRACTION = 0.2  # of train, held out as "test" when a source has no test split of its own
SPLITS = ("train", "validation", "test")


def check_split_options(validation_split, limit):
    if not 0 <= validation_split < 1:
        raise DataError(f"validation_split must be in [0, 1); got {validation_split}")
    if limit is not None and not (isinstance(limit, int) and limit > 0):
        raise DataError(f"limit must be a positive int or None; got {limit!r}")


def check_class_options(classes, per_class):
    """ConfigError for a `classes` that is not a list of 2+ distinct names or a `per_class` that is
    not a positive int (None: not given)."""
    if classes is not None:
        if not (isinstance(classes, (list, tuple)) and all(isinstance(name, str) for name in classes)):
            raise ConfigError(f"classes must be a list of class names (str); got {classes!r}")
        if len(classes) < 2:
            raise ConfigError(f"classes = {list(classes)} names {len(classes)} class; a classifier "
                              "needs at least 2 (or leave classes unset for all of them)")
        repeated = sorted({name for name in classes if list(classes).count(name) > 1})
        if repeated:
            raise ConfigError(f"classes = {list(classes)} names {repeated} more than once; "
                              "name each class once")
    if per_class is not None and not (isinstance(per_class, int) and not isinstance(per_class, bool)
                                      and per_class > 0):
        raise ConfigError(f"per_class must be a positive int or None; got {per_class!r}")


def source_class_names(class_names, classes):
    """The `class_names` a loader reads the source with: None when they equal `classes` (the
    subset a previous load resolved, which a run's recipe.toml records as its class_names)."""
    if classes is not None and class_names is not None and list(class_names) == list(classes):
        return None
    return class_names


def class_subset(class_names, classes, where="data"):
    """(table, names): `table[old label]` is the label in the subset `classes` (-1: dropped) and
    `names` the subset's class names; (None, class_names) when `classes` is None. A name that is
    not one of `class_names` is a DataError listing them.

    >>> class_subset(["cat", "dog", "bird"], ["bird", "cat"])
    ([1, -1, 0], ['bird', 'cat'])
    """
    if classes is None:
        return None, class_names
    class_names = list(class_names or ())
    unknown = [name for name in classes if name not in class_names]
    if unknown:
        shown = class_names[:50] + ["..."] * (len(class_names) > 50)
        raise DataError(f"{where}: classes {unknown} are not classes of the data; its classes: {shown}")
    table = [-1] * len(class_names)
    for new, name in enumerate(classes):
        table[class_names.index(name)] = new
    return table, list(classes)


def keep_classes(items, labels, table):
    """(items, labels) of the classes `table` keeps (`class_subset`), labels renumbered; all of them
    when `table` is None."""
    if table is None:
        return items, labels
    renumbered = np.asarray(table, np.int32)[np.asarray(labels)]
    kept = renumbered >= 0
    return items[kept], renumbered[kept].astype(np.asarray(labels).dtype)


def labelled_budget(items, labels, per_class, validation_split, seed, class_names=None, where="data"):
    """((items, labels) to train on, (items, labels) held out as validation): a seeded sample of at
    most `per_class` examples of each class (all of a smaller class), `held_count(n, validation_split)`
    of each class's n held out; both parts in their original order. A class left with no training
    example is a ConfigError.

    >>> items, labels = np.arange(12), np.array([0] * 8 + [1] * 4)
    >>> (train, train_labels), (held, held_labels) = labelled_budget(items, labels, 5, 0.2, seed=0)
    >>> np.bincount(train_labels).tolist(), np.bincount(held_labels).tolist()
    ([4, 3], [1, 1])
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in np.unique(labels):
        chosen = rng.permutation(np.flatnonzero(labels == label))[:per_class]
        out = held_count(len(chosen), validation_split)
        if out >= len(chosen) > 0:
            raise _no_training_example(label, len(chosen), per_class, validation_split, class_names, where)
        held.append(chosen[:out])
        train.append(chosen[out:])
    train = np.sort(np.concatenate(train or [np.zeros(0, int)])).astype(int)
    held = np.sort(np.concatenate(held or [np.zeros(0, int)])).astype(int)
    return (items[train], labels[train]), (items[held], labels[held])


def _no_training_example(label, count, per_class, fraction, class_names, where):
    held = held_count(count, fraction)
    if count == per_class:
        least = per_class + 1
        while held_count(least, fraction) >= least:
            least += 1
        return ConfigError(f"{where}: per_class = {per_class} leaves no training example: validation_split = "
                           f"{fraction} holds out ceil({per_class} x {fraction}) = {held} of each class's "
                           f"{per_class}; set per_class to at least {least}, or validation_split = 0")
    name = class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)
    return ConfigError(f"{where}: class {name!r} has only {count} training example(s) (per_class = "
                       f"{per_class}), and validation_split = {fraction} holds out ceil({count} x "
                       f"{fraction}) = {held} of them, leaving none to train on; set validation_split = 0, "
                       "or leave the class out of classes")


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


def split_arrays(splits, validation_split, limit, seed, stratify=True, class_names=None, where="data",
                 classes=None, per_class=None):
    """Split name -> (items, targets) arrays: a missing "test" is a fixed hold-out of train (seed 0);
    then `limit` per split (a seeded sample, `limited`); then only `classes` (`class_subset`: named
    among `class_names`, labels renumbered); then "validation" held out of train (unless the
    source has one), or with `per_class` train cut to that budget (`labelled_budget`).

    stratify: hold out and limit a share of each class (targets are class indices), else a plain
    sample; a training split then left without a class of the test split is a warning naming it
    (by `class_names` when given) and the source (`where`). `classes` and `per_class` need it.
    """
    hold_out = stratified_hold_out if stratify else plain_hold_out
    if "test" not in splits:
        kept, test = hold_out(*splits["train"], TEST_FRACTION, seed=0)
        splits = {**splits, "train": kept, "test": test}
    cut = {name: limited(items, targets, limit, 0 if name == "test" else seed, stratify)
           for name, (items, targets) in splits.items()}
    table, class_names = class_subset(class_names, classes, where)
    return class_rules(cut, hold_out, validation_split, seed, table, per_class, class_names, where,
                       warn_missing=stratify)


def class_rules(splits, hold_out, validation_split, seed, table=None, per_class=None, class_names=None,
                where="data", warn_missing=True):
    """Train, ["validation",] test arrays of `splits` (each already cut to `limit`): the classes of
    `table` kept (`keep_classes`), then "validation" (unless in `splits`) held out of train by
    `hold_out`, or with `per_class` train cut to that budget and validation held out of it."""
    splits = {name: keep_classes(items, targets, table) for name, (items, targets) in splits.items()}
    arrays = {"train": splits["train"]}
    own = "validation" in splits
    if per_class is not None:
        arrays["train"], held = labelled_budget(*arrays["train"], per_class, 0 if own else validation_split,
                                                seed, class_names, where)
        if validation_split and not own:
            arrays["validation"] = held
    elif validation_split and not own:
        arrays["train"], arrays["validation"] = hold_out(*arrays["train"], validation_split, seed)
    if own:
        arrays["validation"] = splits["validation"]
    arrays = {name: arrays[name] for name in ("train", "validation") if name in arrays}
    arrays["test"] = splits["test"]
    if warn_missing:
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


def tfds_slices(builder, validation_split, limit, names=None, hold_out=True):
    """Our split -> a TFDS split slice ("train[:900]"), `limit` examples at most of each.

    names: our split -> the dataset's split name ("train" and "test" unless named). "test" is the
    last TEST_FRACTION of train when the dataset has no such split. "validation" (only with a
    `validation_split`) is the dataset's split `names["validation"]` when it has one, else the
    last `validation_split` of what is left of train. Under tfds.testing.mock_data (no split
    information), the named splits and "train" are taken to exist. hold_out=False: "validation"
    is only the dataset's own split, never carved from train (`per_class` holds it out later).
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
    elif validation_split and hold_out:
        held = held_count(end, validation_split)
        slices["validation"] = f"{train}[{end - held}:{end}]"
        end -= held
    slices["train"] = f"{train}[:{end}]"
    return {name: slices[name] for name in SPLITS if name in slices}


def tfds_splits(builder, slices, class_names, *, classes=None, per_class=None, validation_split=0.0, seed=0,
                where="data"):
    """(our split -> tf.data.Dataset of the TFDS records (dicts) of `slices`, class names): with
    `classes` or `per_class`, the records of each slice are read for their labels ("label") and
    chosen by the rules of every source (`class_rules`: classes kept and renumbered, train cut to
    `per_class` with "validation" held out of it), then the slices are filtered to them. Take
    `slices` from `tfds_slices(..., hold_out=per_class is None)`."""
    if classes is None and per_class is None:
        return {name: builder.as_dataset(split=split) for name, split in slices.items()}, list(class_names)
    table, names = class_subset(class_names, classes, where)
    labels = {name: _tfds_labels(builder, split) for name, split in slices.items()}
    arrays = class_rules({name: (np.arange(len(y)), y) for name, y in labels.items()}, stratified_hold_out,
                         validation_split, seed, table, per_class, names, where)
    datasets = {}
    for name, (positions, _) in arrays.items():
        of = name if name in slices else "train"        # a validation held out of the budget: train's
        records = builder.as_dataset(split=slices[of])
        datasets[name] = _tfds_records(records, positions, len(labels[of]), table)
    return datasets, names


def _tfds_labels(builder, split):
    """The "label" of every record of a TFDS split, images and audio left undecoded."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    features = builder.info.features
    skip = {key: tfds.decode.SkipDecoding() for key in features.keys()
            if key != "label" and isinstance(features[key], (tfds.features.Image, tfds.features.Audio))}
    records = builder.as_dataset(split=split, decoders=skip or None)
    labels = records.map(lambda record: tf.cast(record["label"], tf.int64)).batch(4096)
    return np.concatenate([np.zeros(0, np.int64), *labels.as_numpy_iterator()])


def _tfds_records(records, positions, size, table):
    """The records at `positions` (of `size`) of a TFDS split, their "label" renumbered by `table`."""
    import tensorflow as tf

    mask = np.zeros(size, bool)
    mask[positions] = True
    mask = tf.constant(mask)

    def chosen_one(at, record):
        return tf.gather(mask, at)

    def record_only(at, record):
        return record

    chosen = records.enumerate().filter(chosen_one).map(record_only)
    if table is not None:
        renumber = tf.constant(table, tf.int64)

        def relabel(record):
            label = record["label"]
            return {**record, "label": tf.cast(tf.gather(renumber, tf.cast(label, tf.int64)), label.dtype)}

        chosen = chosen.map(relabel)
    return chosen.apply(tf.data.experimental.assert_cardinality(len(positions)))
