"""Turn a split of raw examples into what `model.fit` reads: encoded, batched, cached, prefetched.

- `batches`: cache -> seeded shuffle -> batch -> prefetch, for any split;
- `tokenized`: (text, label) -> (token ids, label), by a `Tokenizer` (text classification);
- `pad_ids`, `bucketed_batches`: token id lists -> 0-padded arrays -> length-bucketed batches of
  ({"source_ids", "target_ids"}, next-token labels) (translation);
- `ctc_labels`: (waveform, transcript) -> (waveform, 0-padded character ids) (speech recognition).

>>> import numpy as np, tensorflow as tf
>>> ds = tf.data.Dataset.from_tensor_slices((np.zeros((10, 8, 8, 1), "uint8"), np.arange(10)))
>>> [x.shape[0] for x, _ in batches(ds, batch_size=4)]
[4, 4, 2]
>>> pad_ids([[5, 6], [7]], 5, start_id=1, end_id=2).tolist()
[[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]]
>>> speech = tf.data.Dataset.from_tensor_slices((np.zeros((2, 4), "float32"), ["ab", "ba a"]))
>>> [ids.tolist() for _, ids in ctc_labels(speech, " ab", 5).as_numpy_iterator()]
[[2, 3, 0, 0, 0], [3, 2, 1, 2, 0]]
"""

import math

import keras
import numpy as np
import tensorflow as tf

from kdl.errors import DataError


def batches(dataset, batch_size, shuffle=False, seed=0, cache=True, drop_remainder=False, augment=None):
    """cache -> seeded shuffle (reshuffled each epoch, same order per seed) -> batch -> [augment]
    -> prefetch. `augment`: a numpy function of the batch's inputs (B, ...) float32 -> the same
    shape (`kdl.data.augment.Augmenter`), applied anew to every batch of every epoch, after the
    cache; only for training batches."""
    if cache:
        dataset = dataset.cache()
    if shuffle:
        size = int(dataset.cardinality())
        buffer = size if 0 < size <= 50_000 else 10_000
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if augment is not None:
        def apply(x, y):
            augmented = tf.numpy_function(augment, [x], tf.float32, stateful=True)
            return tf.ensure_shape(augmented, x.shape), y

        dataset = dataset.map(apply, num_parallel_calls=1, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def tokenized(split, tokenizer):
    """A split of (text, label) as (token ids (max_length,) int32, label), its cardinality kept;
    texts are tokenized 1,024 at a time."""
    tokens = split.batch(1024).map(lambda text, label: (tokenizer(text), label)).unbatch()
    return tokens.apply(tf.data.experimental.assert_cardinality(split.cardinality()))


def pad_ids(lists, width, start_id=None, end_id=None):
    """An int32 (N, width) array of the token id lists, 0-padded at the end, each list framed by
    `start_id` and `end_id` when given."""
    ids = np.zeros((len(lists), width), "int32")
    start, end = [start_id] if start_id is not None else [], [end_id] if end_id is not None else []
    for i, (row, tokens) in enumerate(zip(ids, lists)):
        tokens = [*start, *tokens, *end]
        if len(tokens) > width:
            raise DataError(f"token list {i} has {len(tokens)} ids (start and end included) but the "
                            f"width is {width}; cut the lists to {width - len(start) - len(end)} first")
        row[:len(tokens)] = tokens
    return ids


def bucketed_batches(source_ids, target_ids, batch_size, seed, shuffle=False, bucket=8):
    """Batches of ({"source_ids": (B, W), "target_ids": (B, W)}, next-token labels (B, W)).

    source_ids: (N, L) int32, 0-padded; target_ids: (N, L + 2), each framed by start and end ids
    (`pad_ids`). Pairs of similar length (the longer of source and target) share a batch, ties in
    a seeded random order; a batch is padded to W, the next multiple of `bucket` tokens, at most
    L + 1, so little compute goes to padding and the compiled step sees a handful of shapes. The
    decoder reads target tokens 0..W-1 and predicts tokens 1..W. Batch order is reshuffled every
    epoch (seeded) when `shuffle`.
    """
    sources, targets = source_ids, target_ids
    if not len(sources):
        raise DataError("bucketed_batches: no sentence pairs to batch (the split is empty)")
    lengths = np.maximum((sources > 0).sum(1), (targets > 0).sum(1) - 1)            # (N,)
    jitter = np.random.default_rng(seed).random(len(lengths))
    order = np.lexsort((jitter, lengths))
    cap = sources.shape[1] + 1
    groups = {}
    for first in range(0, len(order), batch_size):
        rows = order[first:first + batch_size]
        width = min(cap, bucket * math.ceil(lengths[rows].max() / bucket))
        groups.setdefault((width, len(rows)), []).append(rows)
    datasets, sources = [], np.pad(sources, ((0, 0), (0, cap - sources.shape[1])))  # (N, cap)
    for (width, _), group in sorted(groups.items()):
        rows = np.stack(group)                                                     # (n, B)
        source = sources[rows, :width]                                             # (n, B, width)
        decoder_in, labels = targets[rows, :width], targets[rows, 1:width + 1]
        datasets.append(tf.data.Dataset.from_tensor_slices(
            ({"source_ids": source, "target_ids": decoder_in}, labels)))
    dataset = datasets[0]
    for more in datasets[1:]:
        dataset = dataset.concatenate(more)
    if shuffle:
        dataset = dataset.shuffle(len(order), seed=seed, reshuffle_each_iteration=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def ctc_labels(split, characters, length):
    """A split of (waveform, transcript) as (waveform, character ids (length,) int32): the i-th of
    `characters` is id i + 1, any other character 0, and 0 pads the ids to `length`."""
    lookup = keras.layers.StringLookup(vocabulary=list(characters), num_oov_indices=1)

    def encode(waveform, text):
        ids = tf.cast(lookup(tf.strings.unicode_split(text, "UTF-8")), tf.int32)   # (len,), 1..
        return waveform, tf.ensure_shape(tf.pad(ids, [[0, length - tf.shape(ids)[0]]]), [length])

    return split.map(encode, num_parallel_calls=tf.data.AUTOTUNE)
