"""Data-parallel training on TensorFlow's and Keras's own distribution engines.

``train.distribution`` names one:

* ``none``: one device, as Keras places it.
* ``mirrored`` (TensorFlow): ``tf.distribute.MirroredStrategy`` over this machine's GPUs,
  or over its logical CPU devices when it has no GPU (how the tests split a CPU in two).
* ``multi_worker`` (TensorFlow): ``tf.distribute.MultiWorkerMirroredStrategy`` across
  the workers ``TF_CONFIG`` names. Keras 3 (3.15) cannot ``fit`` under it (its pre-fit
  build reduces a distributed batch, which the collective strategy refuses:
  keras-team/keras#20585), so each epoch runs the model's own ``train_step`` and
  ``test_step`` through ``strategy.run`` (:func:`collective_epoch`): the same step,
  loss scaling and gradient all-reduce as ``fit``, without its loop.
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
import functools
import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

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
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def _data_parallel() -> Any:
    import jax

    # JAX's processes are joined once per process (a second engine reuses the cluster)
    if (int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1
            and not jax.distributed.is_initialized()):
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
    if name == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise RecipeError(
            'train.distribution = "multi_worker" needs TF_CONFIG: the cluster\'s worker '
            "addresses and this worker's index, set in each worker's environment before it "
            "starts. Received no TF_CONFIG. See docs/scaling.md (Several machines); on one "
            'machine use "mirrored".'
        )


class Distributions:
    """One engine's distribution strategies, created on first use, by name."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}
        self._steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

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
        """Refuse training data that cannot be split across several JAX processes
        (DataError): arrays and :class:`~finetunekit.core.examples.Examples` are
        (:meth:`shard`), a ``tf.data.Dataset`` is (by Keras), a ``PyDataset`` is not:
        each process would feed the whole of every batch."""
        if name != "data_parallel" or not isinstance(train, keras.utils.PyDataset):
            return
        self.get(name)
        import jax

        if jax.process_count() > 1:
            raise DataError(
                f"train.distribution = \"data_parallel\" over {jax.process_count()} "
                "processes needs training data each process can read its share of: arrays, "
                "a built-in data source, or a tf.data.Dataset (which Keras shards). Received "
                "a PyDataset. Pass arrays or a dataset, or train on one machine "
                "(docs/scaling.md)."
            )

    def shard(self, name: str) -> tuple[int, int]:
        """``(parts, which)``: this process reads part `which` of `parts` of every global
        batch read by index (several JAX processes under ``data_parallel``; Keras puts
        the parts together into the global batch). ``(1, 0)`` otherwise; ``multi_worker``
        shards in :func:`collective_epoch`."""
        if name != "data_parallel":
            return (1, 0)
        self.get(name)
        import jax

        return (jax.process_count(), jax.process_index())

    def replicas(self, name: str) -> int:
        """How many replicas share each global batch."""
        made = self.get(name)
        if made is None:
            return 1
        if hasattr(made, "num_replicas_in_sync"):
            return int(made.num_replicas_in_sync)
        return int(made.device_mesh.devices.size)

    def epoch_loop(self, name: str) -> Callable[..., None] | None:
        """How one epoch trains under `name`: None for Keras's ``fit``, or a
        :func:`collective_epoch` bound to the strategy (``multi_worker``)."""
        if name != "multi_worker":
            return None
        return functools.partial(collective_epoch, self.get(name), self._steps)

    def writes(self, name: str) -> bool:
        """Whether this process writes the run folder: the first of several JAX
        processes or TensorFlow workers (the chief), or the only process."""
        if name == "multi_worker":
            resolver = self.get(name).cluster_resolver
            return resolver.task_type in ("chief", None) or (
                resolver.task_type == "worker" and resolver.task_id == 0
                and "chief" not in resolver.cluster_spec().as_dict())
        if name == "data_parallel":
            self.get(name)  # initialises JAX's processes first
            import jax

            return jax.process_index() == 0
        return True


def _worker_batches(feed: Any, replicas: int, context: Any) -> Any:
    """This worker's batches of a :class:`~finetunekit.core.feeding.Feed`: for every
    global batch, the slice of each of its replicas (one element per replica, as
    ``distribute_datasets_from_function`` hands them out), read by this worker only."""
    import tensorflow as tf

    local = replicas // context.num_input_pipelines
    parts = [feed.shard(replicas, context.input_pipeline_id * local + j) for j in range(local)]

    def generate():
        for batch in range(len(feed)):
            for part in parts:
                yield part.read(batch)

    x, y = (np.asarray(v) for v in parts[0].read(0))  # the shapes after any transform
    return tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((None, *x.shape[1:]), x.dtype),
        tf.TensorSpec((None, *y.shape[1:]), y.dtype))).prefetch(2)


def collective_epoch(strategy: Any, steps: weakref.WeakKeyDictionary, model: Any,
                     train: Any, validation: Any, batch_size: int, epoch: int,
                     callbacks: list) -> None:
    """One epoch (from 0) of `model` under a ``MultiWorkerMirroredStrategy``.

    Every worker runs this with the same arrays (or the same dataset of global batches);
    TensorFlow splits each global batch of `batch_size` across all the replicas of all
    the workers (``AutoShardPolicy.DATA``), and the model's ``train_step`` (Keras's, or
    the model's own override) runs on each replica, its gradients all-reduced. The
    callbacks see the batch and epoch ends with the logs averaged over the replicas, as
    with ``fit``.

    Args:
        strategy: the ``tf.distribute.MultiWorkerMirroredStrategy``.
        steps: weak mapping model -> its compiled ``(train, test)`` step functions,
            reused across epochs (tracing once per compiled model).
        model: keras.Model, compiled under the strategy's scope.
        train: ``(images, labels)`` arrays in this epoch's order, or a
            ``tf.data.Dataset`` of ``(images, labels)`` global batches.
        validation: the same kinds, or None.
        batch_size: int. The global batch of arrays.
        epoch: int. The epoch, from 0.
        callbacks: list of keras.callbacks.Callback.
    """
    import tensorflow as tf

    def distribute(data: Any) -> Any:
        if hasattr(data, "shard") and hasattr(data, "batches"):  # a Feed: each worker
            return strategy.distribute_datasets_from_function(  # reads its slices
                functools.partial(_worker_batches, data, strategy.num_replicas_in_sync))
        if isinstance(data, tuple):
            data = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return strategy.experimental_distribute_dataset(data.with_options(options))

    def mean(logs: dict[str, Any]) -> dict[str, float]:
        return {key: float(strategy.reduce("MEAN", value, axis=None))
                for key, value in logs.items()}

    compiled = steps.get(model)
    if compiled is None or compiled[0] is not model.optimizer:
        compiled = steps[model] = (model.optimizer,
                                   tf.function(lambda b: strategy.run(model.train_step, args=(b,))),
                                   tf.function(lambda b: strategy.run(model.test_step, args=(b,))))
    _, train_step, test_step = compiled
    hooks = keras.callbacks.CallbackList(callbacks, model=model)
    hooks.on_epoch_begin(epoch)
    model.reset_metrics()
    logs: dict[str, float] = {}
    for index, batch in enumerate(distribute(train)):
        hooks.on_train_batch_begin(index)
        logs = mean(train_step(batch))
        hooks.on_train_batch_end(index, logs)
    if validation is not None:
        model.reset_metrics()
        val = None
        for batch in distribute(validation):
            val = test_step(batch)
        if val is not None:  # an empty validation set gives no val_ logs
            logs.update({f"val_{key}": value for key, value in mean(val).items()})
    hooks.on_epoch_end(epoch, logs)
