"""Data-parallel training on TensorFlow's and Keras's own distribution engines.

``train.distribution`` names one:

* ``none``: one device, as Keras places it.
* ``mirrored`` (TensorFlow): ``tf.distribute.MirroredStrategy`` over this machine's GPUs,
  or over its logical CPU devices when it has no GPU (how the tests split a CPU in two).
* ``multi_worker`` (TensorFlow): ``tf.distribute.MultiWorkerMirroredStrategy``, which
  Keras 3 cannot yet fit under: refused with a RecipeError that says so (see
  :func:`_multi_worker`); the recipe value is reserved for when Keras can.
* ``data_parallel`` (JAX): ``keras.distribution.DataParallel`` over every JAX device,
  after ``keras.distribution.initialize()`` when ``KERAS_DISTRIBUTION_NUM_PROCESSES``
  says there are several processes.

The engine enters :meth:`Distributions.scope` around building, compiling and fitting:
variables are then created mirrored or replicated, and ``fit`` splits each global batch
(``data.batch_size``) across the replicas and averages the gradients. A strategy object
is created once per engine and name (TensorFlow refuses to mix two in one model) and
only when a recipe asks for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import keras

from finetunekit.core.errors import DataError, RecipeError

BACKEND = {"mirrored": "tensorflow", "multi_worker": "tensorflow", "data_parallel": "jax"}
"""The Keras backend each distribution runs on; ``none`` runs on any."""

_INSTEAD = {"tensorflow": "mirrored", "jax": "data_parallel"}


def _mirrored() -> Any:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _multi_worker() -> Any:
    # Keras 3 (3.15 here) cannot fit under MultiWorkerMirroredStrategy: its pre-fit
    # symbolic build reduces the distributed input batch, and each step reduces the
    # scalar logs along axis 0, both of which the collective strategy refuses
    # (keras-team/keras#20585, tensorflow/tensorflow#72388). Refuse it clearly rather
    # than fail inside fit.
    raise RecipeError(
        f'train.distribution = "multi_worker" is not available: Keras {keras.__version__} '
        "cannot train under tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras"
        "#20585). For several machines run on JAX: KERAS_BACKEND=jax with "
        'train.distribution = "data_parallel" (docs/scaling.md); on one machine use '
        '"mirrored".'
    )


def _data_parallel() -> Any:
    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
        keras.distribution.initialize()  # addresses and process id from the environment
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())


_FACTORIES = {"mirrored": _mirrored, "multi_worker": _multi_worker,
              "data_parallel": _data_parallel}


def check_distribution(name: str, backend: str | None = None) -> None:
    """Raise RecipeError if distribution `name` cannot run on the Keras `backend`."""
    backend = backend or keras.backend.backend()
    wanted = BACKEND.get(name)
    if wanted is not None and wanted != backend:
        raise RecipeError(
            f'train.distribution = "{name}" runs on the {wanted} backend, but Keras runs on '
            f"{backend}. Received: train.distribution={name!r}, KERAS_BACKEND={backend!r}. "
            f"Use {_INSTEAD.get(backend, 'none')} on {backend}, or KERAS_BACKEND={wanted}."
        )
    if name == "multi_worker":
        _multi_worker()


class Distributions:
    """One engine's distribution strategies, created on first use, by name."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        """The strategy (TensorFlow) or distribution (Keras) for `name`; None for none."""
        if name == "none":
            return None
        check_distribution(name)
        if name not in self._made:
            self._made[name] = _FACTORIES[name]()
        return self._made[name]

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Build, compile and fit under distribution `name` inside the block."""
        made = self.get(name)
        if made is None:
            yield
            return
        with made.scope():
            yield

    def check_data(self, name: str, train: Any) -> None:
        """Refuse array data under several JAX processes (DataError).

        Keras shards a ``tf.data.Dataset`` across processes but not arrays: each process
        would feed the whole arrays, and Keras refuses them.
        """
        if name != "data_parallel" or not isinstance(train, tuple):
            return
        self.get(name)
        import jax

        if jax.process_count() > 1:
            raise DataError(
                f"train.distribution = \"data_parallel\" over {jax.process_count()} "
                "processes needs the training data as a tf.data.Dataset, which Keras shards "
                "across the processes. Received arrays (every built-in data source gives "
                "arrays). Pass a dataset from Python (Engine.run(recipe, data=Data(train="
                "dataset, ...))), or train on one machine (docs/scaling.md)."
            )

    def replicas(self, name: str) -> int:
        """How many replicas share each global batch."""
        made = self.get(name)
        if made is None:
            return 1
        if hasattr(made, "num_replicas_in_sync"):
            return int(made.num_replicas_in_sync)
        return int(made.device_mesh.devices.size)

    def writes(self, name: str) -> bool:
        """Whether this process writes the run folder: the first of several JAX
        processes, or the only process."""
        if name == "data_parallel":
            self.get(name)  # initialises JAX's processes first
            import jax

            return jax.process_index() == 0
        return True
