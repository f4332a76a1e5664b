"""Peak resident memory of the feature cache when its entry is larger than the memory
limit: compute the features of a streamed source once, then read them back by shuffled
index batches for a few epochs (and train the head one epoch on them).

Run alone (one process per measurement, since ``ru_maxrss`` only grows)::

    python benchmarks/feature_cache_rss.py --images 3000 --memory-limit 32MiB

It prints one JSON line: the features' size on disk, the memory limit, and the peak RSS
(``VmHWM``, else ``resource.getrusage``) after building the model, after computing the features, and
after reading and training. ``benchmarks/test_feature_cache.py`` runs it in a
subprocess. The base is a one-layer stem (64x64 in, 32x32x32 features out: 128 KiB per
image, cheap to compute) registered as an outside plugin would, so that the features
are large against the computation; the input images are made from their index on each
read, so that nothing but a batch of them is ever in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from finetunekit import Backbone, Data, Engine  # noqa: E402
from finetunekit.core.examples import Examples, epoch_order  # noqa: E402
from finetunekit.core.feature_cache import FeatureCache  # noqa: E402
from finetunekit.core.feature_store import parse_size  # noqa: E402
from finetunekit.core.manager import hookimpl  # noqa: E402
from finetunekit.testing import tiny_recipe  # noqa: E402

SIZE = 64


class Stem:
    """A one-layer base: 32x32x32 float32 features (128 KiB) per 64x64 image."""

    @hookimpl
    def finetunekit_register_backbones(self, register):
        def build(input_shape, weights):
            inputs = keras.Input(input_shape)
            return keras.Model(inputs, keras.layers.Conv2D(32, 3, strides=2, padding="same",
                                                           name="stem")(inputs))
        register(Backbone(name="stem", build=build))


class MadeImages(Examples):
    """uint8 images made from their index on each read: a stream that holds nothing."""

    def __init__(self, n: int):
        self.labels = (np.arange(n) % 2).astype("int32")
        self.shape, self.dtype = (SIZE, SIZE, 3), "uint8"

    def read(self, indices):
        return np.stack([np.random.default_rng(int(i)).integers(0, 256, self.shape, np.uint8)
                         for i in indices])

    def fingerprint(self):
        return f"made-{len(self)}".encode()


class Batches(keras.utils.PyDataset):
    """An epoch of `examples` in (seed, epoch) order, one batch of indices at a time."""

    def __init__(self, examples: Examples, batch_size: int, epoch: int):
        super().__init__()
        self.examples, self.batch_size = examples, batch_size
        self.order = epoch_order(len(examples), 0, epoch)

    def __len__(self):
        return -(-len(self.examples) // self.batch_size)

    def __getitem__(self, i):
        indices = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.examples.read(indices), self.examples.labels[indices]


def peak_mib() -> float:
    """This process's peak resident memory: ``VmHWM`` where there is ``/proc`` (Linux
    keeps ``ru_maxrss`` across fork and exec, so a process started from a large one, as
    pytest, would report its parent's peak), else ``getrusage``."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--memory-limit", default="32MiB")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    engine = Engine(plugins=[Stem()], entry_points=False)
    run = engine.build(tiny_recipe({"name": "stem", "input_shape": [SIZE, SIZE, 3]},
                                   head={"pooling": "avg"}))
    engine.compile_stage(run, 0)
    images = MadeImages(args.images)
    figures = {"images": args.images, "peak_after_build_mib": round(peak_mib(), 1)}
    with tempfile.TemporaryDirectory() as folder:
        engine.feature_cache = FeatureCache(memory_limit=parse_size(args.memory_limit),
                                            folder=Path(folder))

        trainer, data = engine.cached_head(run, Data(train=images), args.batch_size)
        features = data.train
        figures.update(features_on_disk_mib=round(sum(
            p.stat().st_size for p in Path(folder).rglob("*.npy")) / 2**20, 1),
            memory_limit_mib=round(parse_size(args.memory_limit) / 2**20, 1),
            kind=type(features).__name__,
            peak_after_compute_mib=round(peak_mib(), 1))
        for epoch in range(args.epochs):
            for batch in Batches(features, args.batch_size, epoch):
                pass
        figures["peak_after_reading_mib"] = round(peak_mib(), 1)
        trainer.fit(Batches(features, args.batch_size, 0), epochs=1, verbose=0)
        figures["peak_after_training_mib"] = round(peak_mib(), 1)
        del features, data
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
