"""Mixed precision for one run, without touching Keras's setting for anyone else.

Keras gives every layer its dtype policy when the layer is created, from the global
policy, and ``keras.applications`` builders take no ``dtype`` argument; so the only way
to build a whole backbone in mixed precision is to set the global policy while it is
built. :func:`precision_scope` sets it for the duration of a ``with`` block and puts the
previous one back, exception or not. Layers keep the policy they were created with, so
a run built under ``mixed_float16`` stays mixed after the block, and another engine's
float32 run built next to it stays float32. Keras's global state is per thread, so two
threads do not see each other's scope either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[None]:
    """Create layers under the dtype policy `precision` inside the block.

    Args:
        precision: str. A Keras dtype policy name: ``"float32"``, ``"mixed_float16"``
            or ``"mixed_bfloat16"`` (``train.precision``).

    Example:

    >>> with precision_scope("mixed_float16"):
    ...     layer = keras.layers.Dense(2)
    >>> layer.compute_dtype, keras.config.dtype_policy().name
    ('float16', 'float32')
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def output_dtype(model: keras.Model) -> str:
    """The dtype of a model's (single) output, as Keras names it."""
    return keras.backend.standardize_dtype(model.outputs[0].dtype)
