"""Per-epoch time of a frozen-base stage with and without the feature cache, for the
seed's model (VGG16 at 150x150, flatten, Dense 256, Dense 1, RMSprop 2e-5).

Run: ``python -m pytest benchmarks/test_feature_cache.py --benchmark-only -s``. The
model is built and the features computed before the timed region (the cache's first
epoch pays that once); the uncached epoch is timed in the same run, and the ratio is
printed and stored in the benchmark's extra_info.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from finetunekit import Data, Engine, Recipe
from finetunekit.core.training import fit_epoch
from finetunekit.core.feature_cache import FeatureCache

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
