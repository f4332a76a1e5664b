"""The feature cache: per-epoch time of a frozen-base stage with and without it, and
resident memory when its entry is larger than the memory limit.

Run: ``python -m pytest benchmarks/test_feature_cache.py --benchmark-only -s``.

- The seed's model (VGG16 at 150x150, flatten, Dense 256, Dense 1, RMSprop 2e-5) on
  arrays in memory. The model is built and the features computed before the timed
  region (the cache's first epoch pays that once); the uncached epoch is timed in the
  same run, and the ratio is printed and stored in the benchmark's extra_info.
- A streamed source (JPEG files decoded on read) with a frozen MobileNetV2, features
  on disk, both kinds of epoch fed by shuffled index batches.
- Peak RSS of ``benchmarks/feature_cache_rss.py`` in fresh processes, at two sizes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from finetunekit import Data, Engine, Recipe
from finetunekit.core.examples import Examples
from finetunekit.core.feature_cache import FeatureCache
from finetunekit.core.training import fit_epoch

IMAGES = 100
SEED = {
    "backbone": {"name": "vgg16", "weights": "none", "input_shape": [150, 150, 3]},
    "strategy": {"name": "feature_extraction"},
    "head": {"pooling": "flatten", "hidden": [256], "classes": 1},
    "optimizer": {"name": "rmsprop", "learning_rate": 2e-5},
    "data": {"batch_size": 20},
}


def test_cached_epoch_vs_uncached_epoch(benchmark, tmp_path):
    engine = Engine(entry_points=False)
    engine.feature_cache = FeatureCache(folder=tmp_path)
    run = engine.build(Recipe.from_dict(SEED))
    rng = np.random.default_rng(0)
    data = Data(train=(rng.integers(0, 256, (IMAGES, 150, 150, 3), dtype=np.uint8),
                       np.arange(IMAGES) % 2))
    engine.compile_stage(run, 0, steps_per_epoch=IMAGES // 20)
    trainer, features = engine.cached_head(run, data, 20)

    epoch = iter(range(10**6))
    fit_epoch(trainer, features, 20, next(epoch), 0, [])  # warm-up: tracing
    benchmark.pedantic(lambda: fit_epoch(trainer, features, 20, next(epoch), 0, []),
                       rounds=5, iterations=1)
    if benchmark.stats is not None:
        cached = benchmark.stats.stats.median
    else:  # --benchmark-disable: time it here so the ratio still prints
        started = time.perf_counter()
        fit_epoch(trainer, features, 20, next(epoch), 0, [])
        cached = time.perf_counter() - started

    fit_epoch(run.model, data, 20, next(epoch), 0, [])  # warm-up: tracing
    uncached = []
    for _ in range(2):
        started = time.perf_counter()
        fit_epoch(run.model, data, 20, next(epoch), 0, [])
        uncached.append(time.perf_counter() - started)
    ratio = statistics.median(uncached) / cached
    benchmark.extra_info.update(images=IMAGES, uncached_epoch_s=round(statistics.median(uncached), 3),
                                cached_epoch_s=round(cached, 4), speedup=round(ratio, 1))
    print(f"\nfrozen-base epoch, {IMAGES} images at 150x150: uncached "
          f"{statistics.median(uncached):.2f} s, cached {cached:.4f} s, speed-up {ratio:.0f}x")
    assert ratio > 1


class JpegExamples(Examples):
    """JPEG files decoded on each read (PIL): a streamed source in miniature, until the
    built-in sources stream."""

    def __init__(self, paths, labels, size):
        self.paths, self.labels = list(paths), np.asarray(labels)
        self.shape, self.dtype = (size, size, 3), "uint8"

    def read(self, indices):
        from PIL import Image

        return np.stack([np.asarray(Image.open(self.paths[i]).convert("RGB")
                                    .resize(self.shape[:2])) for i in indices])

    def fingerprint(self):
        stats = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in self.paths]
        return repr((stats, self.shape)).encode() + self.labels.tobytes()


def _jpegs(folder, n, size):
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size)[None, :, None]
    for i in range(n):
        pixels = np.clip(ramp * rng.random(3) + rng.normal(0, 20, (size, size, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return JpegExamples(sorted(folder.glob("*.jpg")), np.arange(n) % 2, size)


def test_cached_epochs_on_a_streamed_source(benchmark, tmp_path):
    """Epochs after the first on cached features against uncached epochs, both read by
    shuffled index batches from a JPEG source (a frozen MobileNetV2 at 224x224, 256
    images, batch 32), alternated in one process."""
    from feature_cache_rss import Batches

    images, batch, size = 256, 32, 224
    (tmp_path / "images").mkdir()
    source = _jpegs(tmp_path / "images", images, size)
    engine = Engine(entry_points=False)
    engine.feature_cache = FeatureCache(memory_limit=0, folder=tmp_path / "cache")
    run = engine.build(Recipe.from_dict({
        "backbone": {"name": "mobilenetv2", "weights": "none", "input_shape": [size, size, 3]},
        "strategy": {"name": "feature_extraction"}, "head": {"classes": 1},
        "data": {"batch_size": batch}}))
    engine.compile_stage(run, 0, steps_per_epoch=images // batch)
    started = time.perf_counter()
    trainer, data = engine.cached_head(run, Data(train=source), batch)
    compute = time.perf_counter() - started
    assert type(data.train).__name__ == "ShardedExamples"

    def epoch(model, examples, number):
        started = time.perf_counter()
        model.fit(Batches(examples, batch, number), epochs=1, verbose=0)
        return time.perf_counter() - started

    epoch(run.model, source, 0), epoch(trainer, data.train, 0)  # warm-up: tracing
    uncached, cached = [], []
    for number in range(1, 4):
        uncached.append(epoch(run.model, source, number))
        cached.append(epoch(trainer, data.train, number))
    benchmark.pedantic(lambda: epoch(trainer, data.train, 9), rounds=1, iterations=1)
    ratio = statistics.median(uncached) / statistics.median(cached)
    benchmark.extra_info.update(images=images, compute_s=round(compute, 2),
                                uncached_epoch_s=round(statistics.median(uncached), 3),
                                cached_epoch_s=round(statistics.median(cached), 4),
                                speedup=round(ratio, 1))
    print(f"\nstreamed JPEGs, MobileNetV2 {size}x{size}, {images} images: features computed "
          f"once in {compute:.2f} s; epoch uncached {statistics.median(uncached):.2f} s, "
          f"cached {statistics.median(cached):.3f} s (medians of 3, alternated): "
          f"{ratio:.0f}x")
    assert ratio > 1


def test_cache_larger_than_memory_keeps_rss_bounded(benchmark):
    """Peak RSS (getrusage, in a fresh process each) while computing and reading back
    features far larger than the memory limit, for two sizes of the same source."""
    script = Path(__file__).with_name("feature_cache_rss.py")
    figures = []

    def measure(images):
        done = subprocess.run([sys.executable, str(script), "--images", str(images),
                               "--memory-limit", "32MiB"], capture_output=True, text=True,
                              check=True)
        figures.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"\n{figures[-1]}")

    measure(1500)
    benchmark.pedantic(measure, args=(6000,), rounds=1, iterations=1)
    small, large = figures
    benchmark.extra_info.update(small=small, large=large)
    growth = (large["peak_after_training_mib"] - small["peak_after_training_mib"])
    print(f"features on disk {small['features_on_disk_mib']} -> "
          f"{large['features_on_disk_mib']} MiB; peak RSS {small['peak_after_training_mib']} "
          f"-> {large['peak_after_training_mib']} MiB ({growth:+.0f} MiB)")
    assert growth < (large["features_on_disk_mib"] - small["features_on_disk_mib"]) / 4
