"""The feature cache: a frozen base computes each image's features once.

When a stage trains only the head (the whole base frozen, called with
``training=False``) and nothing random runs before the base, every epoch would push the
same images through the same base. The engine then computes the base's features once
and trains the head on them, as the seed's own ``fit(train_features, ...)`` does.

Features are kept in memory up to ``memory_limit`` bytes, beyond that in a ``.npy`` file
under the cache folder (memory-mapped). The key hashes the images, the base's weights,
the preprocessing, the input shape and the precision, so a change of data, backbone,
weights, input size or precision never reuses stale features. Each
:class:`FeatureCache` belongs to one engine.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from finetunekit.core.examples import ArrayExamples, Examples, is_examples
from finetunekit.core.feeding import Feed, iterate
from finetunekit.core.training import fresh_metric

DEFAULT_MEMORY_LIMIT = 1 << 30


def default_folder() -> Path:
    """``$FINETUNEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/finetunekit/features``."""
    if os.environ.get("FINETUNEKIT_CACHE_DIR"):
        return Path(os.environ["FINETUNEKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "finetunekit" / "features"


class FeatureCache:
    """Base features by content key, in memory or on disk.

    Args:
        memory_limit: int. Largest feature array (bytes) kept in memory.
        folder: Path or None. Where larger arrays go; None: :func:`default_folder`.
    """

    def __init__(self, memory_limit: int = DEFAULT_MEMORY_LIMIT, folder: Path | None = None):
        self.memory_limit = memory_limit
        self.folder = folder
        self._memory: dict[str, np.ndarray] = {}
        self.computed = 0  # how many arrays were computed rather than found

    @staticmethod
    def key(run: Any, images: np.ndarray) -> str:
        digest = hashlib.sha256()
        digest.update(repr((images.shape, str(images.dtype), run.recipe["backbone"]["name"],
                            run.preprocess.get_config(),
                            run.recipe["train"]["precision"])).encode())
        digest.update(np.ascontiguousarray(images).data)
        for weight in run.base.weights:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).data)
        return digest.hexdigest()[:32]

    def features(self, run: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
        """The frozen base's features of `images` (computed once per key)."""
        key = self.key(run, images)
        if key in self._memory:
            return self._memory[key]
        folder = self.folder or default_folder()
        path = folder / f"{key}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r")
        extractor = _extractor(run)
        shape = (len(images), *extractor.output_shape[1:])
        nbytes = int(np.prod(shape)) * 4
        self.computed += 1
        if nbytes <= self.memory_limit:
            features = np.asarray(extractor.predict(images, batch_size=batch_size, verbose=0),
                                  dtype=np.float32)
            self._memory[key] = features
            return features
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp.npy"
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        chunk = max(batch_size, 256)
        for start in range(0, len(images), chunk):
            array[start:start + chunk] = extractor.predict(images[start:start + chunk],
                                                           batch_size=batch_size, verbose=0)
        array.flush()
        del array
        os.replace(tmp, path)
        return np.load(path, mmap_mode="r")


def _extractor(run: Any) -> Any:
    inputs = keras.Input(shape=tuple(run.recipe["backbone"]["input_shape"]), dtype="uint8")
    return keras.Model(inputs, run.base(run.preprocess(inputs), training=False))


def head_model(run: Any) -> Any:
    """A model from base features to predictions, sharing the run's head layer."""
    features = keras.Input(shape=tuple(run.base.output_shape[1:]), name="features")
    return keras.Model(features, run.head.layer(features), name="finetunekit_head")


def _indexed(split: Any) -> bool:
    return isinstance(split, tuple) or is_examples(split)


def uses_cache(run: Any, stage: Any, data: Any) -> bool:
    """Whether a stage can train on cached features: the base fully frozen, no random
    augmentation before it (nor label mixing), arrays or
    :class:`~finetunekit.core.examples.Examples` (not a pipeline) in, and the cache not
    switched off."""
    return (not stage.trainable and run.augment is None and run.mix is None
            and run.recipe["train"]["feature_cache"] == "auto"
            and _indexed(data.train)
            and (data.validation is None or _indexed(data.validation)))


def examples_features(cache: FeatureCache, run: Any, examples: Examples,
                      batch_size: int) -> ArrayExamples:
    """The frozen base's features of `examples` (e.g. image files, streamed), as
    :class:`~finetunekit.core.examples.ArrayExamples` in memory, computed once per key
    (the examples' fingerprint and the base). Examples that cannot be read are left
    out (and reported by their source). Minimal: the features of the whole split are
    kept in memory; shards on disk are the feature cache's own concern."""
    digest = hashlib.sha256(examples.fingerprint())
    digest.update(repr((run.recipe["backbone"]["name"], run.preprocess.get_config(),
                        run.recipe["train"]["precision"])).encode())
    for weight in run.base.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).data)
    key = "examples-" + digest.hexdigest()[:32]
    if key not in cache._memory:
        extractor = _extractor(run)
        cache.computed += 1
        parts, labels = [], []
        for x, y in iterate(Feed.epoch(examples, batch_size, 0, 0, shuffle=False)):
            if len(x):
                parts.append(np.asarray(extractor.predict_on_batch(x), dtype=np.float32))
                labels.append(y)
        shape = (0, *extractor.output_shape[1:])
        cache._memory[key] = (np.concatenate(parts) if parts else np.zeros(shape, np.float32),
                              np.concatenate(labels) if labels else np.zeros(0, np.int32))
    return ArrayExamples(*cache._memory[key])


def head_stage(cache: FeatureCache, run: Any, data: Any, batch_size: int) -> tuple[Any, Any]:
    """The head alone, compiled with the stage's optimizer, and the data as the frozen
    base's features from `cache`, for a stage that trains the head only."""
    def features(pair):
        if is_examples(pair):
            return examples_features(cache, run, pair, batch_size)
        return None if pair is None else (cache.features(run, pair[0], batch_size), pair[1])

    trainer = head_model(run)
    trainer.compile(optimizer=run.model.optimizer, loss=run.head.loss,
                    metrics=[fresh_metric(m) for m in run.head.metrics])
    return trainer, replace(data, train=features(data.train),
                            validation=features(data.validation), report=None)
