"""The one dataset type every kdl loader returns: `Dataset(info, splits[, transcripts])`.

`splits` maps "train", ["validation",] "test" to unbatched `tf.data.Dataset`s; `info` describes
them: the fields every modality has (source, num_examples, class_names) and the modality's own
(image_shape; sample_rate, num_samples; source_language, target_language), None when not its.

>>> import numpy as np, tensorflow as tf
>>> pairs = tf.data.Dataset.from_tensor_slices((["a cat", "a dog"], ["eine Katze", "ein Hund"]))
>>> data = Dataset.of("arrays", {"train": pairs}, source_language="en", target_language="de")
>>> data.info.num_examples, data.info.class_names, data.info.image_shape
({'train': 2}, [], None)
>>> data.texts("train")
(['a cat', 'a dog'], ['eine Katze', 'ein Hund'])
>>> class_names_for(np.array([0, 2, 1]), None)
['0', '1', '2']
>>> labelled = Dataset.of("x", {"test": tf.data.Dataset.from_tensor_slices(([0., 1.], [0, 1]))},
...                       class_names=["dog", "cat"])
>>> [int(y) for _, y in relabel(labelled, ["cat", "bird", "dog"]).splits["test"]]
[2, 0]
"""

import dataclasses

import numpy as np

from kdl.errors import DataError


@dataclasses.dataclass
class DatasetInfo:
    source: str                 # the source as the user gave it ("digits", a path, "tfds:NAME", "arrays")
    num_examples: dict          # split name -> count
    class_names: list = dataclasses.field(default_factory=list)  # label names; [] when not classification
    image_shape: tuple | None = None    # images: (H, W, C) of the images the splits yield
    sample_rate: int | None = None      # audio: Hz, of every waveform the splits yield
    num_samples: int | None = None      # audio: samples per waveform (max_seconds * sample_rate)
    source_language: str | None = None  # translation: the language of the source texts ...
    target_language: str | None = None  # ... and of the target texts


@dataclasses.dataclass
class Dataset:
    info: DatasetInfo
    splits: dict                # split name -> tf.data.Dataset of unbatched (input, target) pairs
    transcripts: dict = dataclasses.field(default_factory=dict)  # split -> [(text, where)] (speech only)

    @classmethod
    def of(cls, source, splits, *, transcripts=None, class_names=(), **info):
        """A Dataset of `splits`, its info counting each split; `info` are the modality's fields."""
        num_examples = {name: int(split.cardinality()) for name, split in splits.items()}
        info = DatasetInfo(source, num_examples, class_names=list(class_names), **info)
        return cls(info, splits, transcripts or {})

    def texts(self, split):
        """(source texts, target texts) of one split of string pairs as two lists of str."""
        pairs = list(self.splits[split].as_numpy_iterator())
        return [s.decode("utf-8") for s, _ in pairs], [t.decode("utf-8") for _, t in pairs]


def class_names_for(labels, class_names):
    """`class_names`, or "0".."max label", after checking every label indexes one (and there are 2+)."""
    num_classes = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
    outside = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if outside.size:
        basis = "len(class_names)" if class_names is not None else "max label + 1"
        raise DataError(
            f"labels {outside.tolist()[:10]} are outside [0, {num_classes}) ({num_classes} = {basis})"
        )
    if num_classes < 2:
        raise DataError(f"found {num_classes} class; a classifier needs at least 2")
    return list(class_names) if class_names is not None else [str(label) for label in range(num_classes)]


def relabel(dataset, class_names):
    """`dataset` (of (input, label) pairs) with its labels renumbered to `class_names`, matched by
    name: to score a trained run on data whose classes come in another order, or are a subset.
    Labels without names (a source of integer labels, named "0", "1", ...) keep their numbers.
    A class the run does not know is a DataError listing them."""
    import tensorflow as tf

    own, class_names = list(dataset.info.class_names), list(class_names)
    if own == [str(i) for i in range(len(own))] and not set(own) <= set(class_names):
        own = class_names[:len(own)] if len(own) <= len(class_names) else own    # integer labels
    unknown = [name for name in own if name not in class_names]
    if unknown:
        raise DataError(f"{dataset.info.source} has classes {unknown[:10]} that the run does not know; "
                        f"the run's classes are {class_names}")
    table = tf.constant([class_names.index(name) for name in own], tf.int32)
    splits = {name: split.map(lambda x, y: (x, tf.gather(table, tf.cast(y, tf.int32))))
              for name, split in dataset.splits.items()}
    info = dataclasses.replace(dataset.info, class_names=class_names)
    return dataclasses.replace(dataset, info=info, splits=splits)
