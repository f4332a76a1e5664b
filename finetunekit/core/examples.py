"""Examples: a split read by index, so that no more than a batch need be in memory.

Every split the engine trains on can be an :class:`Examples`: arrays in memory
(:class:`ArrayExamples`), image files decoded on demand (the ``folder`` and ``csv``
sources when they stream), a frozen base's features stored as shards on disk (the
feature cache). The engine orders each epoch from (seed, epoch) and reads it in batches of
indices, so the order never depends on the pipeline that reads it, and a resumed run sees
the same batches.

The labels are always in memory (an int per example); the examples themselves need not be.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Examples(ABC):
    """A split of labelled examples that can be read by index.

    Subclasses set :attr:`labels` (a 1-D numpy array, one label per example),
    :attr:`shape` (the shape of one example, e.g. ``(224, 224, 3)``) and :attr:`dtype`
    (``"uint8"`` for images, ``"float32"`` for features), and implement :meth:`read`.
    """

    labels: np.ndarray
    shape: tuple[int, ...]
    dtype: str
    can_fail: bool = False
    """True when :meth:`read_available` may leave examples out (files that passed the
    header check and fail to decode): an epoch's number of batches is then not known in
    advance, since a batch whose every example fails is left out."""

    def __len__(self) -> int:
        return int(len(self.labels))

    @property
    def nbytes(self) -> int:
        """Bytes the examples take decoded, all of them at once."""
        return len(self) * int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @abstractmethod
    def read(self, indices: np.ndarray) -> np.ndarray:
        """The examples at `indices` (any order, repeats allowed), stacked into one array
        of shape ``(len(indices), *shape)`` and dtype :attr:`dtype`."""

    def read_available(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The examples at `indices` that can be read, and the positions in `indices` of
        those read (a bool mask or int array), for a source where one can fail (a file
        that passed the header check but does not decode). The default reads them all."""
        return self.read(indices), np.arange(len(indices))

    def unreadable(self, indices: np.ndarray) -> None:
        """Told by a pipeline that the examples at `indices` could not be read (and were
        dropped from their batch). A source that can fail records and reports them, or
        raises (a :class:`~finetunekit.DataError` in strict mode)."""
        raise ValueError(f"{type(self).__name__} could not read examples {list(indices)[:10]}.")

    def tf_decoder(self) -> Any:
        """None, or a function of one index (a ``tf.int64`` scalar tensor) to its example
        as a tensor of :attr:`shape` and :attr:`dtype`, traceable by ``tf.data`` (e.g.
        TensorFlow's own image decoders). None (the default): read through :meth:`read`."""
        return None

    def read_workers(self) -> int:
        """Threads worth reading batches with when read from Python (1 for memory;
        one per core for files, whose decoders release the GIL)."""
        return 1

    @abstractmethod
    def fingerprint(self) -> bytes:
        """Bytes that change whenever any example or label could read differently (for
        arrays, their content; for files, each file's path, size and modification time
        and the decoding settings): the feature cache's key is built from them."""


class ArrayExamples(Examples):
    """Examples held in a numpy array (or a memory-mapped one), read without a copy of
    the whole array.

    Args:
        x: numpy array ``(n, *shape)``.
        y: numpy array ``(n,)`` (or ``(n, k)`` soft labels).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        if len(x) != len(y):
            raise ValueError(f"ArrayExamples needs as many labels as examples. "
                             f"Received: {len(x)} examples, {len(y)} labels.")
        self.x = x
        self.labels = y
        self.shape = tuple(x.shape[1:])
        self.dtype = str(x.dtype)

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(indices)]

    def fingerprint(self) -> bytes:
        digest = hashlib.sha256(repr((self.x.shape, self.dtype)).encode())
        for start in range(0, len(self.x), 4096):  # chunks: a memory-mapped x stays on disk
            digest.update(np.ascontiguousarray(self.x[start:start + 4096]).data)
        digest.update(np.ascontiguousarray(self.labels).data)
        return digest.digest()


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of an epoch's examples: a permutation of ``range(n)`` that depends on
    nothing but (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def is_examples(value: Any) -> bool:
    return isinstance(value, Examples)
