"""Label-mixing augmentation (MixUp, CutMix): images and labels mixed together.

An augmentation layer inside the model sees images only. MixUp and CutMix also blend
the labels, so they run outside the model, on each epoch's training batches, in numpy
(every backend). An :class:`~finetunekit.Augmentation` with a ``mix`` function is
label-mixing; this module applies it:

* labels become soft: one-hot rows for a softmax head (whose sparse loss and accuracy
  are swapped for their categorical forms), a float in [0, 1] for a sigmoid head;
* every epoch pairs each training image with a partner drawn by a generator seeded with
  (seed, epoch), so a resumed run sees the same mixing (arrays and the built-in sources,
  streamed or not: partners from the whole epoch, read by index; a ``tf.data.Dataset``
  or ``PyDataset``: from the same batch);
* validation data is never mixed (its labels only take the soft format).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import keras
import numpy as np

from finetunekit.core.components import BuiltHead, Data
from finetunekit.core.errors import DataError, PluginError, RecipeError
from finetunekit.core.feeding import Feed, as_feed

MIX_STREAM = 0x6D6978
"""Third word of the mixing generator's seed, apart from the shuffle's (seed, epoch)."""


@keras.saving.register_keras_serializable(package="finetunekit")
class DominantBinaryAccuracy(keras.metrics.BinaryAccuracy):
    """Binary accuracy against the dominant class of a soft label (``y_true > 0.5``).

    Keras's ``BinaryAccuracy`` compares a soft label such as 0.7 with a 0/1 prediction
    and never counts it right; against the label's larger share the figure keeps its
    meaning. Hard labels (validation) give plain binary accuracy.
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(keras.ops.greater(y_true, 0.5), "float32")
        return super().update_state(y_true, y_pred, sample_weight=sample_weight)


@dataclass(frozen=True)
class LabelMixing:
    """A recipe's label-mixing augmentation, ready to apply.

    Attributes:
        name: str. The augmentation's recipe name.
        mix: callable. ``mix(images, labels, other_images, other_labels, rng)`` with the
            augmentation's keys bound (see :class:`~finetunekit.Augmentation`).
        classes: int. Width of the soft labels: the head's outputs (1 for a sigmoid head).
        head: :class:`~finetunekit.BuiltHead`. The head with a loss and metrics that
            accept soft labels.
    """

    name: str
    mix: Callable[..., tuple[np.ndarray, np.ndarray]]
    classes: int
    head: BuiltHead

    @classmethod
    def of(cls, name: str, mix: Callable[..., Any], head: BuiltHead,
           classes: int) -> "LabelMixing":
        """The mixing done by augmentation `name`'s `mix` (its keys already bound)."""
        return cls(name=name, mix=mix, classes=classes, head=soft_head(head, name))

    def soft(self, labels: np.ndarray) -> np.ndarray:
        """Integer class labels as float32 soft labels of shape ``(n, classes)``."""
        labels = np.asarray(labels)
        self.check_labels(labels.shape)
        labels = labels.reshape(len(labels), -1)
        if self.classes == 1:
            return labels.astype(np.float32)
        return np.eye(self.classes, dtype=np.float32)[labels[:, 0].astype(np.int64)]

    def check_labels(self, shape: tuple[int, ...]) -> None:
        """Refuse labels of `shape` that are not class indices (DataError)."""
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise DataError(
                f"augment.name = \"{self.name}\" makes its own soft labels from class "
                f"indices, shape (n,) or (n, 1). Received labels of shape {shape} "
                "(one-hot or soft already?). Pass the class index of each image, e.g. "
                "labels.argmax(axis=1)."
            )

    def epoch(self, data: Data, batch_size: int, epoch: int, seed: int) -> Data:
        """The data of one epoch (from 0), training batches mixed, validation only soft.

        Arrays and :class:`~finetunekit.core.examples.Examples` (read by index): every
        example gets a partner from a permutation of the whole epoch, read by index with
        its batch; each batch is mixed by a generator seeded with (seed, epoch, batch), so
        batches can be read in parallel. A ``tf.data.Dataset`` or ``PyDataset``: each
        batch as it comes, paired within itself. Either way the same recipe mixes the
        same way.
        """
        train = as_feed(data.train, batch_size, epoch, seed, shuffle=True)
        validation = as_feed(data.validation, batch_size, epoch, seed, shuffle=False)
        if isinstance(validation, Feed):
            validation = validation.with_transform(lambda b, p, x, y: (x, self.soft(y)),
                                                     ((self.classes,), "float32"))
        elif validation is not None:
            validation = self._stream(validation, epoch, seed, mix=False)
        if not isinstance(train, Feed):
            return replace(data, train=self._stream(train, epoch, seed, mix=True),
                           validation=validation)
        self.check_labels(np.shape(train.examples.labels))  # refused before training
        partner = np.random.default_rng([seed, epoch, MIX_STREAM]).permutation(len(train.order))
        feed = train

        def mix(batch: int, positions: np.ndarray, x: np.ndarray, y: np.ndarray):
            y = self.soft(y)
            others = feed.order[partner[positions]]
            other_x, read = feed.examples.read_available(others)
            if len(np.arange(len(others))[read]) != len(others):  # a partner that failed:
                full = x.copy()  # the image is its own partner (mixing changes nothing)
                full[np.arange(len(others))[read]] = other_x
                other_x = full
            other_y = self.soft(feed.examples.labels[others])
            rng = np.random.default_rng([seed, epoch, MIX_STREAM, batch])
            return self._mix(x, y, other_x, other_y, rng)

        return replace(data, train=train.with_transform(mix, ((self.classes,), "float32")),
                       validation=validation)

    def _mix(self, x, y, other_x, other_y, rng):
        mixed_x, mixed_y = self.mix(x, y, other_x, other_y, rng)
        if np.shape(mixed_x) != x.shape or np.shape(mixed_y) != y.shape:
            raise PluginError(
                f"Augmentation '{self.name}' mix() must return images and labels shaped "
                f"like its inputs {x.shape}, {y.shape}. Received {np.shape(mixed_x)}, "
                f"{np.shape(mixed_y)}."
            )
        return mixed_x, mixed_y

    def _stream(self, batches: Any, epoch: int, seed: int, *, mix: bool) -> Any:
        """`batches` (a ``tf.data.Dataset`` or ``PyDataset`` of ``(images, labels)``) with
        labels made soft and, if `mix`, each batch mixed with a permutation of itself;
        of the same kind and length, so that Keras knows the epoch's end."""
        if isinstance(batches, keras.utils.PyDataset):
            return _SoftBatches(self, batches, epoch, seed, mix)
        if type(batches).__module__.startswith("tensorflow"):
            import tensorflow as tf

            spec = batches.element_spec
            if not (isinstance(spec, tuple) and len(spec) == 2):
                raise DataError(self._pair_message(f"elements of {spec}"))
            shape = spec[0].shape
            if spec[0].dtype != tf.uint8:
                raise DataError(self._uint8_message(spec[0].dtype.name))

            def generate():
                for index, pair in enumerate(batches):
                    yield self.batch(pair, index, epoch, seed, mix=mix)

            dataset = tf.data.Dataset.from_generator(generate, output_signature=(
                tf.TensorSpec(shape, tf.uint8),
                tf.TensorSpec((None, self.classes), tf.float32)))
            length = int(batches.cardinality())  # negative: infinite or unknown
            if length >= 0:
                dataset = dataset.apply(tf.data.experimental.assert_cardinality(length))
            return dataset
        raise DataError(
            f"augment.name = \"{self.name}\" mixes images and labels, which needs the "
            "training data as (images, labels) arrays, a tf.data.Dataset or a PyDataset. "
            f"Received {type(batches).__name__}."
        )

    def batch(self, pair: Any, index: int, epoch: int, seed: int, *, mix: bool):
        """One ``(images, labels)`` batch, labels soft and, if `mix`, mixed within the batch
        by a generator seeded with (seed, epoch, index)."""
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            count = f" with {len(pair)} items" if isinstance(pair, (tuple, list)) else ""
            raise DataError(self._pair_message(f"a batch of {type(pair).__name__}{count}"))
        x = np.asarray(pair[0])
        if x.dtype != np.uint8:
            raise DataError(self._uint8_message(str(x.dtype)))
        y = self.soft(np.asarray(pair[1]))
        if mix:
            rng = np.random.default_rng([seed, epoch, MIX_STREAM, index])
            partner = rng.permutation(len(x))
            x, y = self._mix(x, y, x[partner], y[partner], rng)
        return x, y

    def _uint8_message(self, dtype: str) -> str:
        return (f"augment.name = \"{self.name}\" mixes uint8 pixels in [0, 255], as the "
                f"model takes them. Received a batch of {dtype} images. Cast them in the "
                "pipeline (0-255 values: tf.cast(x, tf.uint8)); the model normalises them.")

    def _pair_message(self, received: str) -> str:
        return (f"augment.name = \"{self.name}\" needs batches of (images, labels). "
                f"Received {received}. Drop sample weights, or pass numpy arrays.")


class _SoftBatches(keras.utils.PyDataset):
    """A PyDataset's batches through :meth:`LabelMixing.batch`, same length and order."""

    def __init__(self, mixing: LabelMixing, batches: Any, epoch: int, seed: int, mix: bool):
        super().__init__()
        self.mixing, self.batches, self.mix = mixing, batches, mix
        self.epoch, self.seed = epoch, seed

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        return self.mixing.batch(self.batches[index], index, self.epoch, self.seed, mix=self.mix)


def soft_head(head: BuiltHead, name: str) -> BuiltHead:
    """`head` with the loss and accuracy that soft labels need.

    Sparse categorical crossentropy becomes categorical crossentropy (labels one-hot, then
    mixed) and its accuracy categorical accuracy (the argmax of a soft label is its
    dominant class); binary crossentropy takes mixed float labels as they are, and its
    accuracy becomes :class:`DominantBinaryAccuracy`. Other metrics are kept unchanged.
    """
    loss = head.loss
    loss_name = loss if isinstance(loss, str) else (
        getattr(loss, "name", None) or getattr(loss, "__name__", type(loss).__name__))
    from_logits = bool(getattr(loss, "get_config", dict)().get("from_logits", False))
    if loss_name == "sparse_categorical_crossentropy":
        loss = keras.losses.CategoricalCrossentropy(from_logits=from_logits)
        sparse = True
    elif loss_name == "binary_crossentropy":
        sparse = False
    else:
        raise RecipeError(
            f"augment.name = \"{name}\" mixes labels, which needs a head trained with "
            "sparse_categorical_crossentropy (softmax) or binary_crossentropy (sigmoid). "
            f"Received a head with loss {loss_name!r}. Use another augmentation or head."
        )
    return replace(head, loss=loss, metrics=[_soft_metric(m, sparse) for m in head.metrics])


def _soft_metric(metric: Any, sparse: bool) -> Any:
    name = metric if isinstance(metric, str) else getattr(metric, "name", "")
    kind = metric if isinstance(metric, str) else type(metric).__name__
    if kind in ("accuracy", "acc", "SparseCategoricalAccuracy", "sparse_categorical_accuracy"):
        if sparse:
            return keras.metrics.CategoricalAccuracy(name=name)
    if kind in ("accuracy", "acc", "BinaryAccuracy", "binary_accuracy") and not sparse:
        threshold = getattr(metric, "threshold", 0.5)
        return DominantBinaryAccuracy(name=name, threshold=threshold)
    return metric
