"""End-to-end epochs: ``Engine.run`` (data order, callbacks, lifecycle hooks, checkpoints)
against plain ``model.fit`` of the same compiled model on the same data, in memory and
streamed (see :mod:`finetunekit.bench.end_to_end` for what each side does).

Run: ``python -m pytest benchmarks/test_end_to_end.py --benchmark-only -s``. Defaults
are small for the CPU (VGG16 at 32x32, batch 16, 8 batches per epoch); set them through
the environment, e.g. on a GPU (benchmarks/gpu.sh)::

    BENCH_IMAGE_SIZE=150 BENCH_BATCH=128 BENCH_STEPS=16 BENCH_PRECISION=mixed_bfloat16 \\
        KERAS_BACKEND=jax python -m pytest benchmarks/test_end_to_end.py --benchmark-only -s

pytest-benchmark times one whole measurement (its alternating repeats, the builds
included) once; the figures that matter, images/s of each side and their ratio with
its spread, are printed and kept in the benchmark's ``extra_info``. The target is a
ratio of at least 0.97 (issue 15).
"""

from __future__ import annotations

import os

import pytest

from finetunekit.bench.end_to_end import SOURCES, EndToEndConfig, measure_end_to_end

SIZE = int(os.environ.get("BENCH_IMAGE_SIZE", "32"))
BATCH = int(os.environ.get("BENCH_BATCH", "16"))
STEPS = int(os.environ.get("BENCH_STEPS", "8"))
EPOCHS = int(os.environ.get("BENCH_EPOCHS", "2"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
PRECISION = os.environ.get("BENCH_PRECISION", "float32")
STRATEGY = os.environ.get("BENCH_STRATEGY", "full")
RUN_FOLDER = os.environ.get("BENCH_RUN_FOLDER", "1") != "0"

CONFIGS = [EndToEndConfig(strategy=STRATEGY, batch_size=BATCH, precision=PRECISION,
                          image_size=SIZE, steps=STEPS, epochs=EPOCHS, repeats=REPEATS,
                          source=source, run_folder=RUN_FOLDER) for source in SOURCES]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_engine_run_epochs_vs_plain_fit(benchmark, config):
    rows = []
    benchmark.pedantic(lambda: rows.append(measure_end_to_end(config)), rounds=1,
                       iterations=1)
    row = rows[-1]
    benchmark.extra_info.update({key: row[key] for key in (
        "engine_images_per_s", "plain_images_per_s", "ratio", "ratio_min", "ratio_max",
        "between_epochs_s", "backend", "device")})
    print(f"\n{row['id']}: Engine.run {row['engine_images_per_s']:,.1f} img/s, plain fit "
          f"{row['plain_images_per_s']:,.1f} img/s, ratio {row['ratio']:.3f} "
          f"({row['ratio_min']:.3f}-{row['ratio_max']:.3f}), "
          f"{row['between_epochs_s']:.2f} s between epochs")
    assert row["engine_images_per_s"] > 0 and row["plain_images_per_s"] > 0
