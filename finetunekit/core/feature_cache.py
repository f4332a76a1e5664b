"""The feature cache: a frozen base computes each image's features once.

When a stage trains only the head (the whole base frozen, called with
``training=False``) and nothing random runs before the base, every epoch would push the
same images through the same base. The engine then computes the base's features once
and trains the head on them, as the seed's own ``fit(train_features, ...)`` does.

The input is read once, in index order and in batches, so an :class:`Examples` that
decodes files on demand never needs to fit in memory. Features up to ``memory_limit``
bytes stay in memory; larger ones go to shards on disk
(:mod:`finetunekit.core.feature_store`), read back by index without a full copy, and the
folder is kept under ``disk_limit`` by evicting the least recently used entries. The key
covers everything that changes the features (:meth:`FeatureCache.key`). Each
:class:`FeatureCache` belongs to one engine; the folder on disk is shared by design.
"""

from __future__ import annotations

import collections
import hashlib
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.core import feature_folder, feature_store
from finetunekit.core.errors import DataError, PersistenceError, printable
from finetunekit.core.examples import ArrayExamples, Examples
from finetunekit.core.feature_store import default_disk_limit, default_folder
from finetunekit.core.training import fresh_metric

DEFAULT_MEMORY_LIMIT = 1 << 30
SHARD_BYTES = 256 << 20  # one descriptor each while read: 150 for a 38 GiB entry
READ_BYTES = 16 << 20  # input read (and predicted) per step of the computation


class FeatureCache:
    """Base features by content key, in memory or as shards on disk.

    Args:
        memory_limit: int. Bytes of features this cache keeps in memory, all entries
            together (the least recently used leave first); a larger array goes to
            disk. Defaults to 1 GiB.
        folder: Path or None. Where entries on disk go; None: :func:`default_folder`.
        disk_limit: int or None. Bytes the folder may hold before the least recently
            used entries are removed; None: :func:`default_disk_limit`.
        shard_bytes: int. About how large each shard file is. Defaults to 256 MiB.

    Attributes:
        computed: int. How many feature arrays were computed rather than found.
    """

    def __init__(self, memory_limit: int = DEFAULT_MEMORY_LIMIT, folder: Path | None = None,
                 disk_limit: int | None = None, shard_bytes: int = SHARD_BYTES):
        self.memory_limit = memory_limit
        self.folder = folder
        self.disk_limit = default_disk_limit() if disk_limit is None else disk_limit
        self.shard_bytes = shard_bytes
        self._memory: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        # entries this cache has handed out and that are still alive: never evicted (the
        # entry's lock already says so where flock exists; this covers Windows)
        self._open: weakref.WeakValueDictionary[str, Examples] = weakref.WeakValueDictionary()
        self._dropped: dict[str, list[int]] = {}  # key -> rows that could not be read
        self.computed = 0

    @staticmethod
    def key(run: Any, images: np.ndarray | Examples) -> str:
        """The key of `images`' features under `run`'s base.

        It hashes what can change them: the examples' :meth:`~Examples.fingerprint`
        (array content; for files, path, size, mtime and decoding settings), their
        shape and dtype, every weight of the base (name, shape and values), the
        ``[backbone]`` section, the preprocessing layer's config, ``train.precision``,
        the Keras backend and version, and the cache's format version.
        """
        if not isinstance(images, Examples):
            images = ArrayExamples(images, np.zeros(len(images), np.int8))
        digest = hashlib.sha256()
        digest.update(repr((feature_store.FORMAT, images.shape, str(images.dtype),
                            sorted(run.recipe["backbone"].items()),
                            run.preprocess.get_config(), run.recipe["train"]["precision"],
                            keras.backend.backend(), keras.__version__)).encode())
        digest.update(images.fingerprint())
        for weight in run.base.weights:
            digest.update(repr((weight.path, tuple(weight.shape), str(weight.dtype))).encode())
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).data)
        return digest.hexdigest()[:32]

    def features(self, run: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
        """The frozen base's features of `images` (computed once per key), as one array
        in memory, even when the entry is on disk; :meth:`examples` reads large ones by
        index without that copy."""
        found = self.examples(run, ArrayExamples(images, np.zeros(len(images), np.int8)),
                              batch_size)
        if isinstance(found, ArrayExamples):
            return found.x
        return found.read(np.arange(len(found)))

    def examples(self, run: Any, examples: Examples, batch_size: int) -> Examples:
        """The frozen base's features of every example, read by index.

        Found in memory or on disk by :meth:`key`, else computed by reading `examples`
        once in index order, `batch_size` at a time through the base. Features within
        :attr:`memory_limit` come back as an :class:`ArrayExamples`; larger ones are
        written as shards and come back as
        :class:`~finetunekit.core.feature_store.ShardedExamples`, whose reads fetch just
        the rows asked for from the files. The labels are `examples`' own.

        Args:
            run: the :class:`~finetunekit.core.training.Run` (its base frozen).
            examples: :class:`~finetunekit.core.examples.Examples` of uint8 images of the
                backbone's input shape.
            batch_size: int. Images per forward pass.
        """
        expected = tuple(run.recipe["backbone"]["input_shape"])
        if tuple(examples.shape) != expected:
            raise DataError(f"The feature cache needs examples of shape {expected} "
                            f"(backbone.input_shape). Received: {tuple(examples.shape)}.")
        key = self.key(run, examples)
        if key in self._memory:
            self._memory.move_to_end(key)
            return _readable(ArrayExamples(self._memory[key], examples.labels),
                             self._dropped.get(key, []), examples)
        folder = self.folder or default_folder()
        found = feature_store.open_entry(folder, key, examples.labels) if folder.is_dir() else None
        if found is not None:
            self._open[key] = found
            return _readable(found, found.dropped, examples)
        extractor = _extractor(run)
        shape = tuple(int(d) for d in extractor.output_shape[1:])
        nbytes = len(examples) * int(np.prod(shape)) * 4
        dropped: list[int] = []
        chunks = _predicted(extractor, examples, batch_size, int(np.prod(shape)) * 4, dropped)
        self.computed += 1
        if nbytes <= self.memory_limit:
            features, start = np.empty((len(examples), *shape), np.float32), 0
            for chunk in chunks:
                features[start:start + len(chunk)] = chunk
                start += len(chunk)
            self._keep_in_memory(key, features)
            if dropped:
                self._dropped[key] = list(dropped)
            return _readable(ArrayExamples(features, examples.labels), dropped, None)
        info = {"backbone": run.recipe["backbone"]["name"],
                "input_shape": list(expected), "precision": run.recipe["train"]["precision"],
                "backend": keras.backend.backend(), "examples": type(examples).__name__,
                "dropped": dropped}  # filled while `chunks` is written, before the manifest
        try:
            feature_store.write_entry(folder, key, len(examples), shape, chunks, info,
                                      self.shard_bytes)
        except OSError as exc:
            raise PersistenceError(
                f"The feature cache could not write {nbytes >> 20} MiB of features to "
                f"{printable(folder)}: {type(exc).__name__}: {printable(exc.strerror or exc)}. "
                "Set FINETUNEKIT_CACHE_DIR to a writable folder with room, or "
                'train.feature_cache = "off".') from exc
        found = feature_store.open_entry(folder, key, examples.labels)
        if found is None:  # removed between the rename and the open: a very busy folder
            raise DataError(f"The feature cache entry {key} in {folder} was removed as "
                            "soon as it was written. Give this process its own "
                            "FINETUNEKIT_CACHE_DIR or a larger FINETUNEKIT_CACHE_LIMIT.")
        self._open[key] = found
        feature_folder.evict(folder, self.disk_limit, keep=list(self._open.keys()))
        return _readable(found, found.dropped, None)

    def _keep_in_memory(self, key: str, features: np.ndarray) -> None:
        self._memory[key] = features
        total = sum(array.nbytes for array in self._memory.values())
        while total > self.memory_limit and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            total -= dropped.nbytes


def _predicted(extractor: Any, examples: Examples, batch_size: int, feature_bytes: int,
               dropped: list[int]):
    """The features of `examples`, chunk by chunk in index order. A chunk is about
    :data:`READ_BYTES` of images or of features, whichever is larger (features can
    outweigh their images), in whole batches; the next one is read (decoded) in a thread
    while the base predicts the current one. ``predict`` rather than a loop of
    ``predict_on_batch``: under a distribution strategy it splits the batches across the
    replicas, where ``predict_on_batch`` would give each replica the whole batch."""
    row_bytes = max(1, examples.nbytes // max(len(examples), 1), feature_bytes)
    step = max(1, READ_BYTES // row_bytes // batch_size) * batch_size
    starts = range(0, len(examples), step)

    def read(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indices = np.arange(start, min(start + step, len(examples)))
        images, kept = examples.read_available(indices)
        return indices, images, kept

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, 0) if len(starts) else None
        for start in starts:
            indices, images, kept = pending.result()
            pending = pool.submit(read, start + step) if start + step < len(examples) else None
            mask = np.zeros(len(indices), bool)
            mask[kept] = True
            features = (np.asarray(extractor.predict(images, batch_size=batch_size, verbose=0),
                                   dtype=np.float32) if len(images) else None)
            if mask.all():
                yield features
                continue
            # an example that cannot be read (a file that fails to decode) keeps a row of
            # zeros, so rows stay aligned with indices, and is left out of what is returned
            chunk = np.zeros((len(indices), *extractor.output_shape[1:]), np.float32)
            if features is not None:
                chunk[mask] = features
            dropped.extend(int(i) for i in indices[~mask])
            yield chunk


def _readable(features: Examples, dropped: list[int], source: Examples | None) -> Examples:
    """`features` without the rows of examples that could not be read. `source`, when the
    features were found rather than computed, is told about those examples again, so its
    report (or strict mode) sees them as on the first run."""
    if not dropped:
        return features
    if source is not None:
        source.unreadable(np.asarray(dropped))
    return Subset(features, np.setdiff1d(np.arange(len(features)), dropped))


class Subset(Examples):
    """Some of another :class:`Examples`' rows, by their indices."""

    def __init__(self, examples: Examples, rows: np.ndarray):
        self.examples, self.rows = examples, np.asarray(rows)
        self.labels = examples.labels[self.rows]
        self.shape, self.dtype = examples.shape, examples.dtype

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.examples.read(self.rows[np.asarray(indices)])

    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.examples.fingerprint() + self.rows.tobytes()).digest()


def _extractor(run: Any) -> Any:
    inputs = keras.Input(shape=tuple(run.recipe["backbone"]["input_shape"]), dtype="uint8")
    return keras.Model(inputs, run.base(run.preprocess(inputs), training=False))


def head_model(run: Any) -> Any:
    """A model from base features to predictions, sharing the run's head layer."""
    features = keras.Input(shape=tuple(run.base.output_shape[1:]), name="features")
    return keras.Model(features, run.head.layer(features), name="finetunekit_head")


def _split_ok(split: Any) -> bool:
    return isinstance(split, (tuple, Examples))


def uses_cache(run: Any, stage: Any, data: Any) -> bool:
    """Whether a stage can train on cached features: the base fully frozen, no random
    augmentation before it (nor label mixing), arrays or :class:`Examples` (not a
    pipeline) in, and the cache not switched off."""
    return (not stage.trainable and run.augment is None and run.mix is None
            and run.recipe["train"]["feature_cache"] == "auto"
            and _split_ok(data.train)
            and (data.validation is None or _split_ok(data.validation)))


def head_stage(cache: FeatureCache, run: Any, data: Any, batch_size: int) -> tuple[Any, Any]:
    """The head alone, compiled with the stage's optimizer, and the data as the frozen
    base's features from `cache`, for a stage that trains the head only.

    A split given as :class:`Examples` comes back as Examples of features (read by
    index, from disk when large); one given as ``(images, labels)`` arrays comes back as
    ``(features, labels)`` arrays.
    """
    def features(split):
        if split is None:
            return None
        if isinstance(split, Examples):
            return cache.examples(run, split, batch_size)
        return cache.features(run, split[0], batch_size), split[1]

    trainer = head_model(run)
    trainer.compile(optimizer=run.model.optimizer, loss=run.head.loss,
                    metrics=[fresh_metric(m) for m in run.head.metrics])
    return trainer, replace(data, train=features(data.train),
                            validation=features(data.validation), report=None)
