"""Training throughput per backbone x strategy x batch x precision: finetunekit's model
(``Engine.build`` + ``Engine.compile_stage``) against the seed's plain Keras code, timed
in the same run (see :mod:`finetunekit.bench.throughput` for what each side does).

Run: ``python -m pytest benchmarks/test_throughput.py --benchmark-only -s``. Defaults are
small for the CPU (VGG16 at 32x32, batch 8); set them through the environment, e.g. on a
GPU (benchmarks/gpu.sh)::

    BENCH_IMAGE_SIZE=150 BENCH_BATCH=128 BENCH_PRECISION=mixed_bfloat16 BENCH_STEPS=20 \\
        KERAS_BACKEND=jax python -m pytest benchmarks/test_throughput.py --benchmark-only -s

pytest-benchmark times finetunekit's ``fit`` over ``BENCH_STEPS`` batches (model building
and one warm-up ``fit`` outside the timed region); the plain code (as the seed wrote it,
and fed uint8) is then timed in the same test, after finetunekit's rounds rather than
alternating with them as ``finetunekit bench`` does, and the ratios (finetunekit / plain,
in images per second) are printed and kept in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import os
import statistics

import pytest

from finetunekit import Engine
from finetunekit.core.precision import precision_scope
from finetunekit.bench.throughput import (
    SEED_STRATEGIES,
    Config,
    build_baseline,
    build_finetunekit,
    synthetic,
    time_fits,
)


def _list(name: str, default: str) -> list[str]:
    return [v for v in os.environ.get(name, default).split(",") if v]


BACKBONES = _list("BENCH_BACKBONE", "vgg16")
STRATEGIES = _list("BENCH_STRATEGY", ",".join(SEED_STRATEGIES))
BATCHES = [int(v) for v in _list("BENCH_BATCH", "8")]
PRECISIONS = _list("BENCH_PRECISION", "float32")
SIZE = int(os.environ.get("BENCH_IMAGE_SIZE", "32"))
STEPS = int(os.environ.get("BENCH_STEPS", "3"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))

CONFIGS = [Config(backbone=b, strategy=s, batch_size=n, precision=p, image_size=SIZE,
                  steps=STEPS, repeats=REPEATS)
           for b in BACKBONES for s in STRATEGIES for n in BATCHES for p in PRECISIONS]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_training_throughput(benchmark, config):
    model, stage = build_finetunekit(Engine(entry_points=False), config)
    with precision_scope(config.precision):
        baseline = build_baseline(config, stage.trainable)
        fed_uint8 = build_baseline(config, stage.trainable, uint8=True)
    x, y = synthetic(config)
    plain = [(baseline, x.astype("float32") / 255.0), (fed_uint8, x)]

    def fit():
        model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)

    benchmark.pedantic(fit, rounds=config.repeats, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        ours = len(x) / benchmark.stats.stats.median
        seed_code, uint8_code = time_fits(plain, y, config)
    else:  # --benchmark-disable: time all here so the ratios still print
        ours_all, seed_code, uint8_code = time_fits([(model, x), *plain], y, config)
        ours = statistics.median(ours_all)
    theirs, theirs_uint8 = statistics.median(seed_code), statistics.median(uint8_code)
    benchmark.extra_info.update(
        stage=stage.name, images_per_s=round(ours, 2), baseline_images_per_s=round(theirs, 2),
        ratio=round(ours / theirs, 3), plain_uint8_images_per_s=round(theirs_uint8, 2),
        ratio_uint8=round(ours / theirs_uint8, 3))
    print(f"\n{config.id} ({stage.name}): finetunekit {ours:,.1f} img/s, plain seed code "
          f"{theirs:,.1f} img/s, ratio {ours / theirs:.2f}; plain fed uint8 "
          f"{theirs_uint8:,.1f} img/s, ratio {ours / theirs_uint8:.2f}")
    assert ours > 0 and theirs > 0 and theirs_uint8 > 0
