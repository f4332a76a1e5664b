"""Train tiny recipes in a process of their own and write the final weights to a .npz.

The distribution tests run this script in a subprocess, because the devices must be
set up before the backend starts: TensorFlow's CPU is split into ``--devices`` logical
devices before its first operation, and JAX is told to make ``--devices`` host devices
(``XLA_FLAGS``) before it is imported. ``TF_CONFIG`` (multi-worker) comes from the
environment the test gives.

    python tests/helpers/distributed_worker.py OUT.npz --devices 2 --set train.distribution=mirrored \\
        --strategy full --strategy lora

writes, per strategy, ``<strategy>/<i>`` = the i-th model weight, ``replicas`` and
``scope_left`` (no distribution or dtype policy left set after the runs) and
``cache_computed`` (feature arrays the feature cache computed) and, with ``--folder``,
``rows_read`` (images this process read from files through Python).
With ``--folder`` the same 16 images are written as PNG files (a folder per process)
and streamed by the ``folder`` source (``data.in_memory = false``).
With ``--save DIR`` the (single) strategy's run is saved there (checkpoints each epoch);
``--resume DIR`` continues that run instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--set", action="append", default=[], dest="overrides")
parser.add_argument("--strategy", action="append", default=[])
parser.add_argument("--plugin", action="append", default=[])
parser.add_argument("--save")
parser.add_argument("--resume")
parser.add_argument("--dataset", action="store_true",
                    help="feed training batches as a tf.data.Dataset (data.batch_size each)")
parser.add_argument("--arrays", action="store_true", help="uint8 arrays (the default)")
parser.add_argument("--folder", action="store_true",
                    help="stream the same images from a folder of PNGs (data.in_memory = false)")
args = parser.parse_args()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("KERAS_BACKEND") == "jax":
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
else:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.devices)])

import keras  # noqa: E402
import numpy as np  # noqa: E402

from finetunekit import Data, Engine  # noqa: E402
from finetunekit.testing import tiny_data, tiny_recipe  # noqa: E402


def main() -> None:
    engine = Engine([importlib.import_module(p) for p in args.plugin], entry_points=False)
    data = tiny_data(n=16)
    if args.dataset:
        import tensorflow  # not "as tf": that would shadow the module-level name

        data = Data(train=tensorflow.data.Dataset.from_tensor_slices(data.train).batch(4),
                    validation=None, class_names=None)
    overrides = list(args.overrides)
    read = _count_reads() if args.folder else [0]
    if args.folder:
        overrides += ["data.source=folder", f"data.train={_write_pngs(data)}",
                      "data.in_memory=false"]
        data = None
    arrays = {}
    for strategy in args.strategy or ["full"]:
        if args.resume:
            run = engine.resume(args.resume, data=data)
        else:
            # SGD: its step is proportional to the gradient, so the all-reduce's float
            # reordering stays float-sized (Adam divides a near-zero gradient by its own
            # size and can blow that noise up to a whole learning-rate step)
            recipe = tiny_recipe(strategy=strategy, epochs=args.epochs, head={"hidden": [8]},
                                 optimizer="sgd", learning_rate=0.01)
            recipe = recipe.with_overrides(
                [*overrides, *([f"save.path={args.save}"] if args.save else [])])
            run = engine.run(recipe, data=data, save=bool(args.save))
        arrays.update({f"{strategy}/{i}": np.asarray(w.numpy())
                       for i, w in enumerate(run.model.weights)})
    arrays["replicas"] = np.array(engine.distributions.replicas(
        run.recipe["train"]["distribution"]))
    # nothing of the run's distribution or precision is left set after it
    left = keras.config.dtype_policy().name == "float32"
    if keras.backend.backend() == "jax":
        left = left and keras.distribution.distribution() is None
    else:
        left = left and not tf.distribute.has_strategy()
    arrays["scope_left"] = np.array(left)
    arrays["cache_computed"] = np.array(engine.feature_cache.computed)
    arrays["rows_read"] = np.array(read[0])
    np.savez(args.out, **arrays)


def _count_reads() -> list[int]:
    """Count the images this process reads from files (its share of every batch)."""
    from finetunekit.plugins.data.stream import FileExamples

    read = [0]
    original = FileExamples.read_available

    def counted(self, indices):
        read[0] += len(indices)
        return original(self, indices)

    FileExamples.read_available = counted
    return read


def _write_pngs(data: Data) -> str:
    """The training images of `data` as lossless PNGs in class folders beside ``out``."""
    from pathlib import Path

    from PIL import Image

    folder = Path(args.out).with_suffix(".images")
    x, y = data.train
    for i, (image, label) in enumerate(zip(x, y)):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"class{label}" / f"{i:03d}.png")
    return str(folder)


if __name__ == "__main__":
    sys.exit(main())
