"""The seq two-tower's training input: tf.data under TensorFlow, numpy batches under any other backend.

Both read the examples as cut points (`seq_features.Examples`) and cut each batch's windows from
the flat per-user sequences when it is read, so memory grows with events, never with examples x
history length. tf.data is the fast path under TensorFlow (a parallel map, prefetch, sharding for
tf.distribute); the GPU machine runs Keras on JAX without TensorFlow, where a `keras.utils.PyDataset`
cuts the batches with `seq_features.example_batch`, the same numpy code that defines the examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.models.seq_features import Examples, Sequences, example_batch


@dataclass(frozen=True)
class Feed:
    """One fit's examples and how to batch them.

    `examples` are stored in a seeded random order, so a batch mixes users from the start
    without a shuffle buffer (or a permutation) as large as the data. `q` is each item's share of
    the targets (log-Q correction). Histories hold `length` items, the last `aged` with ages.
    """

    sequences: Sequences
    examples: Examples
    q: np.ndarray
    batch_size: int
    length: int
    aged: int
    shuffle_buffer: int
    seed: int

    @property
    def batch(self) -> int:
        """The batch size, at most the number of examples (every batch is full: the last partial one is dropped)."""
        return int(max(min(self.batch_size, len(self.examples.item)), 1))


def pipeline(feed: Feed, tensorflow: bool) -> Any:
    """One epoch of fixed-size batches, reshuffled each epoch: tf.data for TensorFlow, else a PyDataset."""
    return tf_dataset(feed) if tensorflow else numpy_batches(feed)


def tf_dataset(feed: Feed):
    """The tf.data pipeline: example positions through a bounded shuffle buffer, batched, cut, prefetched.

    One vectorised map per batch gathers the cut points and cuts the windows, as
    `seq_features.windows` does (tests/model/test_seq_pipeline.py holds them equal). Memory: the
    sequences, the cut points and the buffer; shuffling scalar positions rather than
    (user, end, item) elements is ~3x faster in tf.data.
    """
    import tensorflow as tf

    ex, seqs = feed.examples, feed.sequences
    users, ends, targets = tf.constant(ex.user), tf.constant(ex.end), tf.constant(ex.item)
    items, days, starts, q = tf.constant(seqs.items), tf.constant(seqs.days), tf.constant(seqs.starts), tf.constant(feed.q)
    offsets = tf.range(feed.length, 0, -1)

    def cut(positions: tf.Tensor) -> dict[str, tf.Tensor]:
        user, end, item = tf.gather(users, positions), tf.gather(ends, positions), tf.gather(targets, positions)
        idx = end[:, None] - offsets[None, :]
        valid = idx >= tf.gather(starts, user)[:, None]
        safe = tf.maximum(idx, 0)
        history = tf.where(valid, tf.gather(items, safe), 0)
        now = tf.gather(days, end - 1)  # the window's last event: ages as at inference
        age = tf.math.log1p(tf.maximum(now[:, None] - tf.gather(days, safe[:, -feed.aged :]), 0.0))
        ages = tf.cast(tf.where(valid[:, -feed.aged :], age, 0.0), tf.float32)
        return {"user": user, "history": history, "ages": ages, "item": item, "q": tf.gather(q, item)}

    data = tf.data.Dataset.range(len(ex.item))
    data = data.shuffle(feed.shuffle_buffer, seed=feed.seed, reshuffle_each_iteration=True)
    data = data.batch(feed.batch, drop_remainder=True).map(cut, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # DATA: every worker runs this pipeline and keeps its replicas' share of each batch (the
    # cut points are in memory, nothing to split by file); FILE sharding applies once the
    # examples are read from files.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.prefetch(tf.data.AUTOTUNE).with_options(options)


def numpy_batches(feed: Feed, workers: int = 2):
    """A `keras.utils.PyDataset` of numpy batches: the backend-neutral input (JAX, on CPU or GPU).

    The first epoch reads the examples in their stored (seeded random) order, each later one in
    a fresh seeded permutation: a full reshuffle, where tf.data's buffer may be bounded (8 bytes
    per example). `workers` threads cut the next batches while the device trains (numpy's gathers
    release the GIL).
    """
    import keras

    n, batch = len(feed.examples.item), feed.batch

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=workers)
            self.rng = np.random.default_rng(feed.seed)
            self.order = np.arange(n)

        def __len__(self) -> int:
            return n // batch

        def __getitem__(self, index: int) -> dict[str, np.ndarray]:
            rows = self.order[index * batch : (index + 1) * batch]
            return example_batch(feed.sequences, feed.examples.take(rows), feed.q, feed.length, feed.aged)

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(n)

    return Batches()
