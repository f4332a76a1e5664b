"""Feeding: a split read by index (:class:`~finetunekit.core.examples.Examples`) turned
into one epoch of batches that Keras's ``fit`` takes.

One order definition serves every pipeline: an epoch is :func:`epoch_order` (seed,
epoch) cut into batches of ``batch_size`` positions (:class:`Feed`). Whatever reads the
batches, the batches are the same, so a resumed run sees what an uninterrupted one saw.

Two ways to read them, chosen per split:

* a ``tf.data`` pipeline, on the TensorFlow backend, when the examples offer a TensorFlow
  decoder (:meth:`Examples.tf_decoder`, e.g. image files: TensorFlow's C++ decoders in
  parallel, prefetched). A file that fails to decode is dropped from its batch, and the
  examples are told (:meth:`Examples.unreadable`).
* batches read from Python otherwise (arrays, features, files under JAX without
  TensorFlow, or a batch transform such as label mixing): read ahead by the feed's own
  threads and handed over in order, each through :meth:`Examples.read_available` (a
  ``keras.utils.PyDataset``, or a generator for examples that can fail).

Neither holds more than a few batches: no shuffled copy of the split, no copy through
Keras's array adapter. A batch whose every example fails to be read is left out of the
epoch (it never reaches a train step, where an empty batch would make the loss NaN), and
its examples are reported as any other that fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from finetunekit.core.errors import DataError
from finetunekit.core.examples import ArrayExamples, Examples, epoch_order, is_examples

Transform = Callable[[int, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``transform(batch, positions, x, y) -> (x, y)``: a change to each batch (label mixing);
`positions` are the batch's positions in the epoch's order (after dropped examples)."""


class Feed:
    """One epoch of a split: which examples, in which order, in which batches.

    Args:
        examples: :class:`Examples`.
        order: 1-D int array. Example indices in epoch order.
        batches: list of 1-D int arrays. Positions into `order`, one array per batch.
        transform: :data:`Transform` or None.
    """

    def __init__(self, examples: Examples, order: np.ndarray, batches: list[np.ndarray],
                 transform: Transform | None = None,
                 labels: tuple[tuple[int, ...], str] | None = None):
        self.examples, self.order, self.batches = examples, order, batches
        self.transform = transform
        given = np.asarray(examples.labels)
        self.labels = labels or (tuple(given.shape[1:]), str(given.dtype))  # one label's
        self.error: Exception | None = None  # a refusal raised inside a pipeline
        self.observing = False  # read by a tf.data pipeline, which notes what it delivers
        self.observed: set[int] = set()  # the batches it delivered
        self._seen_lock = threading.Lock()

    @classmethod
    def epoch(cls, examples: Examples, batch_size: int, epoch: int, seed: int, *,
              shuffle: bool = True) -> "Feed":
        """The epoch (from 0) of `examples`: :func:`epoch_order` (or index order if not
        `shuffle`) cut into batches of `batch_size`."""
        n = len(examples)
        order = epoch_order(n, seed, epoch) if shuffle else np.arange(n)
        positions = np.arange(n)
        return cls(examples, order, [positions[i:i + batch_size] for i in range(0, n, batch_size)])

    def __len__(self) -> int:
        return len(self.batches)

    def with_transform(self, transform: Transform | None,
                       labels: tuple[tuple[int, ...], str] | None = None) -> "Feed":
        """This feed with each batch changed by `transform`, whose labels have the shape
        and dtype `labels` (``((classes,), "float32")`` for soft labels; None: unchanged)."""
        return Feed(self.examples, self.order, self.batches, transform, labels or self.labels)

    def shard(self, parts: int, which: int) -> "Feed":
        """This worker's share: part `which` of `parts` (contiguous) of every batch, so
        that each worker reads only its slice of each global batch."""
        if parts == 1:
            return self
        return Feed(self.examples, self.order,
                    [np.array_split(b, parts)[which] for b in self.batches], self.transform,
                    self.labels)

    def read(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `batch`: ``(x, y)``, examples that cannot be read dropped, transformed."""
        positions = self.batches[batch]
        try:
            x, kept = self.examples.read_available(self.order[positions])
        except Exception as exc:  # a refusal (strict): kept to raise as itself after fit,
            self.error = exc      # where a tf.data generator would have wrapped it
            raise
        positions = positions[kept]
        y = self.examples.labels[self.order[positions]]
        if self.transform is not None:
            x, y = self.transform(batch, positions, x, y)
        return x, y


    def report_missing(self, *, complete: bool) -> None:
        """Tell the examples about the batches a ``tf.data`` pipeline never delivered: a
        batch whose every file failed to decode has no element left to batch. Call it
        after the pipeline ran; `complete`: it ran to its end (else only the batches
        before the last one delivered are known to be missing)."""
        if not self.observing or (not self.observed and not complete):
            return
        end = len(self.batches) if complete else max(self.observed)
        missing = [self.order[self.batches[n]] for n in range(end) if n not in self.observed
                   and len(self.batches[n])]
        delivered, self.observed = len(self.observed), set()
        if missing:
            self.examples.unreadable(np.concatenate(missing))
        if not delivered:
            raise nothing_read(self)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every batch, read and concatenated: the whole epoch in memory (for tests and
        small splits, never for training)."""
        parts = [self.read(i) for i in range(len(self))]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class _Batches(keras.utils.PyDataset):
    """A :class:`Feed` as a PyDataset: batch ``i`` is ``feed.read(i)``.

    Keras's own workers (``workers > 1``) were found to change the batches a JAX run
    trains on (weights differed from one worker's); the batches are read ahead here
    instead, by a thread pool of the feed's own, and handed to Keras strictly by index.
    """

    def __init__(self, feed: Feed, workers: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.feed, self.threads = feed, max(1, workers)
        self._pool: Any = None
        self._pending: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.feed)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self.feed):
            raise IndexError(f"batch {index} of {len(self.feed)}")  # ends a for loop
        if self.threads == 1:
            return self.feed.read(index)
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="finetunekit-read")
            for ahead in range(index, min(index + 2 * self.threads, len(self.feed))):
                if ahead not in self._pending:
                    self._pending[ahead] = self._pool.submit(self.feed.read, ahead)
            future = self._pending.pop(index)
        try:
            return future.result()
        finally:
            if index == len(self.feed) - 1:
                self.close()

    def close(self) -> None:
        """Stop the read-ahead threads (at the last batch, or when the epoch is left)."""
        with self._lock:
            pool, self._pool = self._pool, None
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        if pool is not None:
            pool.shutdown(wait=False)


def _tf_dataset(feed: Feed, decode: Callable[[Any], Any]) -> Any:
    """A :class:`Feed` as a ``tf.data.Dataset``: TensorFlow decodes, in parallel."""
    import tensorflow as tf

    examples = feed.examples
    feed.observing = True
    flat = np.concatenate(feed.batches) if feed.batches else np.zeros(0, np.int64)
    bounds = np.cumsum([0] + [len(b) for b in feed.batches]).astype(np.int64)
    indices = tf.constant(feed.order[flat].astype(np.int64))
    labels = tf.constant(np.asarray(examples.labels)[feed.order[flat]])
    starts, ends = tf.constant(bounds[:-1]), tf.constant(bounds[1:])
    widest = max((len(b) for b in feed.batches), default=1)
    cores = _cores()

    # no Python control flow on tensors below: traced as written, without autograph's
    # source conversion, which cost about 0.3 s of CPU before each epoch's first batch
    plain = tf.autograph.experimental.do_not_convert

    @plain
    def one(position):
        index = indices[position]
        return decode(index), labels[position], index

    @plain
    def batch(number):
        # each batch is its own small dataset, so a file that fails is dropped from its
        # batch and the batches after it keep their examples
        members = tf.data.Dataset.range(starts[number], ends[number]).map(one)
        members = members.ignore_errors()
        return members.batch(widest).map(plain(lambda x, y, i: (x, y, i, number)))

    @plain
    def observe(x, y, got, number):
        got = tf.numpy_function(lambda g, b: _observe(feed, g, int(b)), [got, number],
                                tf.int64, stateful=True)
        with tf.control_dependencies([got]):
            return tf.identity(x), y

    dataset = tf.data.Dataset.range(len(feed.batches)).interleave(
        batch, cycle_length=max(cores, 2), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.map(observe).prefetch(2)
    options = tf.data.Options()
    options.threading.private_threadpool_size = max(cores, 2)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def _observe(feed: Feed, got: np.ndarray, number: int) -> np.int64:
    feed.observed.add(number)
    expected = feed.order[feed.batches[number]]
    if len(got) != len(expected):
        missing = np.setdiff1d(expected, got)
        try:
            feed.examples.unreadable(missing)
        except Exception as exc:  # a refusal (strict): kept to raise as itself after fit
            feed.error = exc
            raise
    return np.int64(len(got))


def _read_in_threads(feed: Feed) -> Any:
    """Batches of `feed` in order, read ahead by :meth:`Examples.read_workers` threads;
    a batch with no readable example is left out (its examples were reported).

    Raises:
        DataError: not one example of the epoch could be read.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, feed.examples.read_workers())
    yielded = 0
    with ThreadPoolExecutor(workers, thread_name_prefix="finetunekit-read") as pool:
        ahead = 2 * workers  # bounded look-ahead: a few batches in memory, not the split
        pending = [pool.submit(feed.read, i) for i in range(min(ahead, len(feed)))]
        try:
            for i in range(len(feed)):
                x, y = pending.pop(0).result()
                if i + ahead < len(feed):
                    pending.append(pool.submit(feed.read, i + ahead))
                if len(x):
                    yielded += 1
                    yield x, y
        finally:  # left early (fit stopped, an error): read nothing more
            for future in pending:
                future.cancel()
    if not yielded and len(feed):
        raise nothing_read(feed)


def nothing_read(feed: Feed) -> DataError:
    """The error for an epoch of which not one example could be read."""
    return DataError(
        f"None of the {sum(len(b) for b in feed.batches)} examples of this epoch could be "
        "read: every one failed to decode (the log names each file). Re-export or remove "
        "them, or set data.in_memory = true to have them checked and skipped before training.")


def _cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def keras_input(feed: Feed) -> Any:
    """What ``fit`` takes for `feed`: a ``tf.data.Dataset`` on the TensorFlow backend when
    the examples have a TensorFlow decoder and no transform applies, else batches read
    ahead by :meth:`Examples.read_workers` threads: through ``tf.data`` with a declared
    signature on TensorFlow; on other backends a ``PyDataset`` (a known number of
    batches), or a generator when the examples can fail (:attr:`Examples.can_fail`),
    since a batch whose every example fails is then left out.
    """
    if keras.backend.backend() != "tensorflow":
        # a PyDataset has a fixed number of batches; examples that can fail may lose one
        return (_read_in_threads(feed) if feed.examples.can_fail
                else _Batches(feed, feed.examples.read_workers()))
    decode = feed.examples.tf_decoder()
    if decode is not None and feed.transform is None:
        return _tf_dataset(feed, decode)
    return _generated(feed)


def _generated(feed: Feed) -> Any:
    """A :class:`Feed` read from Python (:func:`iterate`) as a ``tf.data.Dataset`` with
    a declared signature: a PyDataset would have Keras read two batches twice to learn it."""
    import tensorflow as tf

    shape, dtype = feed.labels
    dataset = tf.data.Dataset.from_generator(
        lambda: _read_in_threads(feed), output_signature=(
            tf.TensorSpec((None, *feed.examples.shape), feed.examples.dtype),
            tf.TensorSpec((None, *shape), dtype)))
    if not feed.examples.can_fail:  # else a batch with no readable example is left out
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(feed)))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(1)


def as_feed(split: Any, batch_size: int, epoch: int, seed: int, *, shuffle: bool) -> Any:
    """`split` as the :class:`~finetunekit.core.feeding.Feed` of an epoch when it is
    arrays or :class:`~finetunekit.core.examples.Examples`; anything else unchanged."""
    if isinstance(split, tuple) and len(split) == 2:
        split = ArrayExamples(*split)
    if is_examples(split):
        return Feed.epoch(split, batch_size, epoch, seed, shuffle=shuffle)
    return split


def iterate(feed: Feed) -> Any:
    """The ``(x, y)`` numpy batches of `feed`, in order, read as :func:`keras_input`
    reads them (the same decoder, so the same pixels), for code outside ``fit``."""
    decode = feed.examples.tf_decoder() if keras.backend.backend() == "tensorflow" else None
    if decode is None or feed.transform is not None:
        yield from _read_in_threads(feed)
        return
    source = _tf_dataset(feed, decode)
    try:
        for x, y in source.as_numpy_iterator():
            yield x, y
    except Exception as exc:
        if feed.error is not None:
            raise feed.error from exc
        raise
    feed.report_missing(complete=True)
