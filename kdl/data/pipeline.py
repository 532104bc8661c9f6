"""Turn a split of raw examples into the batched, cached, prefetched pipeline `model.fit` reads.

>>> import numpy as np, tensorflow as tf
>>> ds = tf.data.Dataset.from_tensor_slices((np.zeros((10, 8, 8, 1), "uint8"), np.arange(10)))
>>> [x.shape[0] for x, _ in batches(ds, batch_size=4)]
[4, 4, 2]
"""

import tensorflow as tf


def batches(dataset, batch_size, shuffle=False, seed=0, cache=True, drop_remainder=False):
    """cache -> seeded shuffle (reshuffled each epoch, same order per seed) -> batch -> prefetch."""
    if cache:
        dataset = dataset.cache()
    if shuffle:
        size = int(dataset.cardinality())
        buffer = size if 0 < size <= 50_000 else 10_000
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
